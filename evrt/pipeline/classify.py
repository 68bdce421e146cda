"""The classifier worker: receive event messages, frame, step, publish predictions.

One stream at a time. A RESET message, a new stream id or a sequence number going back (the source
restarted) resets the Session and the framer; a sequence gap (PUB/SUB dropped messages upstream) is
counted and the stream goes on. Malformed messages are dropped and counted by reason; nothing a peer
sends can stop the worker.
"""
from __future__ import annotations

import threading
import time
from collections import deque

import zmq

from ..errors import EventError
from ..streaming import Prediction, StreamClassifier
from .metrics import Log, Metrics
from .protocol import (END_OF_STREAM, EVENTS, RESET, TOPIC_EOS, TOPIC_PRED, ProtocolError, decode,
                       encode_json)

__all__ = ["StreamTracker", "ClassifyWorker"]


class StreamTracker:
    """Follows (stream id, sequence) and says what a message means for the state."""

    def __init__(self):
        self.stream_id = None
        self.next_seq = None
        self.first_seq = None  # sequence number of the first message of the current stream seen here

    def observe(self, stream_id: int, seq: int) -> tuple:
        """-> (action, lost): action is 'first', 'new_stream', 'restart' or None; lost = messages
        missing before this one."""
        if self.stream_id is None:
            action, lost = "first", 0
        elif stream_id != self.stream_id:
            action, lost = "new_stream", 0
        elif seq < self.next_seq:
            action, lost = "restart", 0
        else:
            action, lost = None, seq - self.next_seq
        if action is not None:
            self.first_seq = seq
        self.stream_id, self.next_seq = stream_id, seq + 1
        return action, lost


class ClassifyWorker:
    """``in_sock``: SUB or PULL carrying event messages. ``out_sock``: PUB or PUSH for predictions (or
    None); ``on_prediction``: optional callbacks (serve's console sink)."""

    def __init__(self, classifier: StreamClassifier, in_sock: zmq.Socket, out_sock: zmq.Socket | None = None,
                 log: Log | None = None, metrics: Metrics | None = None, on_prediction=(), batch: int = 32,
                 stop: threading.Event | None = None):
        self.clf = classifier
        self.in_sock, self.out_sock = in_sock, out_sock
        self.log = log or Log("classify", quiet=True)
        self.metrics = metrics or Metrics(interval_s=0)
        self.on_prediction = list(on_prediction)
        self.batch = int(batch)
        self.stop = stop or threading.Event()
        self.tracker = StreamTracker()
        frame = (getattr(classifier.session, "meta", None) or {}).get("frame") or {}
        self.sensor_size = tuple(int(v) for v in frame.get("sensor_size", ()))  # the model's (W, H)
        self.streams_ended = 0
        self._warned = set()

    # ------------------------------------------------------------------------------------- outputs
    def _send(self, frames) -> None:
        if self.out_sock is None:
            return
        # PUB drops at the HWM; PUSH waits for a consumer, but never forever once we are stopping
        deadline = None
        while True:
            if self.out_sock.poll(100, zmq.POLLOUT):
                self.out_sock.send_multipart(frames)
                return
            if self.stop.is_set():
                deadline = deadline or time.monotonic() + 1.0
                if time.monotonic() > deadline:
                    self.metrics.drops["prediction_unsent"] += 1
                    return

    def _emit(self, preds: list) -> None:
        for p in preds:
            p.stream_id = self.tracker.stream_id or 0
            self.metrics.step_done(p.latency_ms)
            self.metrics.predictions_out += 1
            self._send(encode_json(TOPIC_PRED, p.to_dict()))
            for cb in self.on_prediction:
                cb(p)

    def _reset(self, why: str, **fields) -> None:
        self.clf.reset()
        self.metrics.resets += 1
        self.log.info(f"session reset: {why}", **fields)

    def _warn_once(self, key, msg, **fields):
        if key not in self._warned:
            self._warned.add(key)
            self.log.warn(msg, **fields)

    # ------------------------------------------------------------------------------------ messages
    def handle(self, frames) -> list:
        """Process one received multipart message; returns the predictions it produced."""
        m = self.metrics
        try:
            msg = decode(frames)
        except ProtocolError as exc:
            m.drops[exc.reason] += 1
            self._warn_once(("drop", exc.reason), f"dropping malformed messages ({exc}); counting them by reason")
            return []
        m.messages_in += 1
        if msg.kind not in (EVENTS, RESET, END_OF_STREAM):
            m.drops["unexpected_kind"] += 1
            return []
        action, lost = self.tracker.observe(msg.stream_id, msg.seq)
        if action == "first":
            if msg.seq:
                self.log.info("joined a stream mid-way; starting from a fresh state", stream_id=msg.stream_id,
                              seq=msg.seq)
        elif action == "new_stream":
            self._reset("new stream id (previous stream abandoned, its open window discarded)",
                        stream_id=msg.stream_id, seq=msg.seq)
        elif action == "restart":
            self._reset("sequence restarted (source restarted)", stream_id=msg.stream_id, seq=msg.seq)
        if lost:
            m.lost += lost
            why = ("several consumers connected to one PUSH source? PUSH deals messages out round-robin"
                   if self.in_sock is not None and self.in_sock.type == zmq.PULL
                   else "the consumer is slower than the source (PUB drops at the high-water mark)")
            self._warn_once("gap", f"messages lost upstream (sequence gap): {why}; counting", lost=lost)
        if msg.kind == RESET:
            self._reset("RESET message", stream_id=msg.stream_id, seq=msg.seq)
            return []
        if msg.kind == END_OF_STREAM:
            preds = self.clf.end_of_stream()
            self._emit(preds)
            self._send(encode_json(TOPIC_EOS, {"stream_id": msg.stream_id, "steps": self.clf.steps,
                                               "events": self.clf.events_in, "lost_messages": m.lost}))
            self.log.info("end of stream", stream_id=msg.stream_id, steps=self.clf.steps, events=self.clf.events_in)
            self.streams_ended += 1
            self.clf.reset()
            self.clf.events_in = 0
            return preds
        m.events_in += len(msg.events)
        if self.sensor_size and msg.sensor_size != (0, 0) and tuple(msg.sensor_size) != self.sensor_size:
            self._warn_once("sensor", f"the source sends a {msg.sensor_size[0]}x{msg.sensor_size[1]} sensor, the model "
                            f"expects {self.sensor_size[0]}x{self.sensor_size[1]}; map it at the source with --crop / "
                            "--downsample (events outside the model's sensor are ignored)")
        try:
            preds = self.clf.push(msg.events)
        except EventError as exc:  # e.g. timestamps going backwards in time framing: drop the packet
            m.drops["bad_events"] += 1
            self._warn_once(("drop", "bad_events"), f"dropping packets with invalid events ({exc})")
            return []
        self._emit(preds)
        return preds

    def flush(self) -> list:
        """Step the open window (used when stopping: the in-flight window is finished, not lost)."""
        preds = self.clf.end_of_stream()
        self._emit(preds)
        return preds

    # ---------------------------------------------------------------------------------------- loop
    def run(self, max_streams: int | None = None, idle_exit_s: float | None = None) -> dict:
        """Serve until ``stop`` is set (or ``max_streams`` streams ended, or nothing arrived for
        ``idle_exit_s``); then finish the open window and return the metrics summary."""
        pending: deque = deque()
        last_rx = time.monotonic()
        m = self.metrics
        while not self.stop.is_set():
            if not pending:
                if not self.in_sock.poll(100):
                    if idle_exit_s is not None and time.monotonic() - last_rx > idle_exit_s:
                        self.log.info(f"nothing received for {idle_exit_s:g} s; stopping")
                        break
                    if m.due():
                        m.report(self.log)
                    continue
                # drain what is already queued (bounded) so the queue depth can be reported
                while len(pending) < self.batch:
                    try:
                        pending.append(self.in_sock.recv_multipart(zmq.NOBLOCK, copy=False))
                    except zmq.Again:
                        break
                last_rx = time.monotonic()
            frames = pending.popleft()
            m.queue_depth = len(pending)  # received, not yet processed (ZeroMQ's own queue is not visible)
            self.handle(frames)
            if max_streams is not None and self.streams_ended >= max_streams:
                break
            if m.due():
                m.report(self.log)
        while pending:  # already received: process it rather than lose it
            self.handle(pending.popleft())
        self.flush()
        summary = m.summary()
        dropped = getattr(self.clf.session, "dropped_events", None)
        if dropped is not None:  # events outside the model's sensor, ignored by the Session
            summary["events_outside_sensor"] = int(dropped)
        return summary


def prediction_printer(log_json: bool, stream=None):
    """A console sink: one line per prediction (JSON lines with ``--json``)."""
    import sys
    out = stream or sys.stdout

    def show(p: Prediction):
        if log_json:
            print(p.to_json(), file=out, flush=True)
        else:
            print(f"step {p.step:6d}  [{p.start_us / 1e6:10.3f}s, {p.end_us / 1e6:10.3f}s)  {p.n_events:7d} ev  "
                  f"{p.class_name:>20s}  {p.confidence:6.1%}  {p.latency_ms:7.2f} ms", file=out, flush=True)
    return show
