"""A tiny dependency-free progress bar for long CLI loops (count, rate, ETA) on stderr.

Silent unless the stream is a terminal, so logs, pipes and `--json` output stay clean.
"""
from __future__ import annotations

import sys
import time


def _fmt_time(s: float) -> str:
    s = int(max(s, 0) + 0.5)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """``with Progress(total, "eval") as bar: ... bar.update()``; or wrap an iterable with ``track``."""

    def __init__(self, total: int | None = None, desc: str = "", enabled: bool | None = None,
                 stream=None, width: int = 24, min_interval: float = 0.1):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.total = total
        self.desc = desc
        self.width = width
        self.min_interval = min_interval   # redraw at most this often: a redraw costs a syscall
        self.n = 0
        self.start = time.perf_counter()
        self._last = 0.0
        self._shown = False
        self._drawn_n = -1

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.perf_counter()
        if self.enabled and (now - self._last >= self.min_interval or self.n == self.total):
            self._last = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        elapsed = (now if now is not None else time.perf_counter()) - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            frac = min(self.n / self.total, 1.0)
            fill = int(frac * self.width)
            bar = "#" * fill + "-" * (self.width - fill)
            eta = _fmt_time((self.total - self.n) / rate) if rate > 0 else "--:--"
            return (f"{head}[{bar}] {self.n}/{self.total} {100 * frac:3.0f}% "
                    f"{rate:.2f}/s elapsed {_fmt_time(elapsed)} eta {eta}")
        return f"{head}{self.n} {rate:.2f}/s elapsed {_fmt_time(elapsed)}"

    def _draw(self, now: float) -> None:
        self.stream.write("\r" + self.line(now) + "\x1b[K")   # \x1b[K clears a longer previous line
        self.stream.flush()
        self._shown = True
        self._drawn_n = self.n

    def close(self) -> None:
        if self.enabled and self._shown:
            if self._drawn_n != self.n:   # show the final count, once
                self._draw(time.perf_counter())
            self.stream.write("\n")
            self.stream.flush()
        self._shown = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def track(iterable, total: int | None = None, desc: str = "", enabled: bool | None = None, stream=None):
    """Yield from ``iterable`` while drawing a bar; ``total`` defaults to ``len(iterable)`` when it has one."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    with Progress(total, desc, enabled, stream) as bar:
        for item in iterable:
            yield item
            bar.update()


__all__ = ["Progress", "track"]
