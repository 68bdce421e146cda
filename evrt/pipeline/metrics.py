"""Logging and the periodic metrics line of the long-running pipeline commands.

One log line per event, to stderr (stdout stays free for predictions): human text by default, one JSON
object per line with ``--json`` so logs can be piped into anything.
"""
from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections import Counter, deque

import numpy as np

__all__ = ["Log", "Metrics", "stop_on_signals"]


class Log:
    def __init__(self, name: str, json_lines: bool = False, stream=None, quiet: bool = False):
        self.name, self.json, self.quiet = name, json_lines, quiet
        self.stream = stream if stream is not None else sys.stderr
        self._lock = threading.Lock()  # serve logs from several threads

    def _emit(self, level: str, msg: str, fields: dict) -> None:
        if self.quiet and level == "info":
            return
        if self.json:
            line = json.dumps({"ts": round(time.time(), 3), "cmd": self.name, "level": level, "msg": msg, **fields},
                              default=str)
        else:
            extra = " ".join(f"{k}={v}" for k, v in fields.items())
            tag = "" if level == "info" else f"{level}: "
            line = f"evrt {self.name}: {tag}{msg}" + (f" ({extra})" if extra else "")
        with self._lock:
            print(line, file=self.stream, flush=True)

    def info(self, msg: str, **fields) -> None:
        self._emit("info", msg, fields)

    def warn(self, msg: str, **fields) -> None:
        self._emit("warning", msg, fields)

    def error(self, msg: str, **fields) -> None:
        self._emit("error", msg, fields)


class Metrics:
    """Counters since start plus rates over the last reporting interval. Step latencies keep the last
    ``window`` values only, so memory stays flat however long the pipeline runs."""

    def __init__(self, interval_s: float = 5.0, window: int = 2048, clock=time.monotonic):
        self.interval_s = interval_s
        self.clock = clock
        self.t0 = self._last = clock()
        self.events_in = self.messages_in = self.steps = self.predictions_out = 0
        self.lost = 0                 # messages missing from sequence gaps (PUB/SUB drops upstream)
        self.drops: Counter = Counter()  # malformed / unexpected messages by reason
        self.resets = 0
        self.queue_depth = 0
        self.latencies: deque = deque(maxlen=window)
        self._prev = (0, 0)

    def step_done(self, latency_ms: float) -> None:
        self.steps += 1
        self.latencies.append(latency_ms)

    def percentiles(self) -> tuple:
        if not self.latencies:
            return (float("nan"), float("nan"))
        p50, p99 = np.percentile(np.fromiter(self.latencies, float), [50, 99])
        return float(p50), float(p99)

    def snapshot(self, now: float | None = None) -> dict:
        now = self.clock() if now is None else now
        dt = max(now - self._last, 1e-9)
        ev, st = self.events_in - self._prev[0], self.steps - self._prev[1]
        p50, p99 = self.percentiles()
        return {"events_per_s": round(ev / dt, 1), "steps_per_s": round(st / dt, 2),
                "step_p50_ms": round(p50, 3), "step_p99_ms": round(p99, 3), "events_in": self.events_in,
                "messages_in": self.messages_in, "steps": self.steps, "lost_messages": self.lost,
                "dropped": dict(self.drops), "resets": self.resets, "queue_depth": self.queue_depth}

    def due(self, now: float | None = None) -> bool:
        now = self.clock() if now is None else now
        return self.interval_s > 0 and now - self._last >= self.interval_s

    def report(self, log: Log, now: float | None = None) -> dict:
        now = self.clock() if now is None else now
        snap = self.snapshot(now)
        self._last, self._prev = now, (self.events_in, self.steps)
        if log.json:
            log.info("metrics", **snap)
        else:
            drops = ", ".join(f"{k} {v}" for k, v in sorted(snap["dropped"].items())) or "none"
            log.info(f"{snap['events_per_s']:.0f} ev/s in, {snap['steps_per_s']:.1f} steps/s, step p50 "
                     f"{snap['step_p50_ms']:.2f} ms p99 {snap['step_p99_ms']:.2f} ms, lost {self.lost} msgs, "
                     f"dropped [{drops}], queue {self.queue_depth}")
        return snap

    def summary(self) -> dict:
        elapsed = self.clock() - self.t0
        p50, p99 = self.percentiles()
        return {"elapsed_s": round(elapsed, 3), "events_in": self.events_in, "messages_in": self.messages_in,
                "steps": self.steps, "predictions_out": self.predictions_out, "lost_messages": self.lost,
                "dropped": dict(self.drops), "resets": self.resets,
                "events_per_s": round(self.events_in / max(elapsed, 1e-9), 1),
                "step_p50_ms": round(p50, 3), "step_p99_ms": round(p99, 3)}


def stop_on_signals(stop: threading.Event, log: Log | None = None):
    """SIGINT/SIGTERM set ``stop`` (the loops finish their current window and close cleanly); a second
    signal falls back to the default behaviour so a stuck process can still be killed. Returns a function
    restoring the previous handlers. Only possible from the main thread; elsewhere it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}

    def handler(signum, frame):
        if stop.is_set():
            signal.signal(signum, signal.SIG_DFL)
            raise KeyboardInterrupt
        if log:
            log.info(f"{signal.Signals(signum).name}: stopping after the current window")
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)

    def restore():
        for s, h in previous.items():
            signal.signal(s, h)
    return restore
