"""The classifier worker: receive event messages, frame, step, publish predictions.

Many streams at once: every stream id gets its own ``StreamClassifier`` (Session + framer), created on
its first message, up to ``max_sessions``; when a new stream arrives with every slot taken, the stream
idle the longest is evicted (logged, its open window discarded). Predictions carry their stream id.
A RESET message or a sequence number going back (that source restarted) resets that stream's Session;
a sequence gap (PUB/SUB dropped messages upstream) is counted and the stream goes on. With
``shard=(k, n)`` the worker takes only the streams whose id is k modulo n (the others are counted as
``other_shard``, not as drops), so n classifiers can share one PUB source without double-counting.
Malformed messages are dropped and counted by reason; nothing a peer sends can stop the worker.
"""
from __future__ import annotations

import copy
import threading
import time
from collections import deque

import zmq

from ..errors import EventError
from ..streaming import Prediction, StreamClassifier
from .metrics import Log, Metrics
from .protocol import (END_OF_STREAM, EVENTS, RESET, TOPIC_EOS, TOPIC_PRED, ProtocolError, decode,
                       encode_json)

__all__ = ["StreamTracker", "ClassifyWorker", "DEFAULT_MAX_SESSIONS", "clone_classifier"]

DEFAULT_MAX_SESSIONS = 8     # concurrent streams (cameras) one classifier keeps state for
WAIT_REPORT_S = 30.0         # how often a worker waiting for input / a consumer says so
NO_CONSUMER_GRACE_S = 3.0    # how long predictions wait for a first consumer before being dropped (counted)


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


def clone_classifier(clf: StreamClassifier) -> StreamClassifier:
    """A classifier for another stream: a fresh Session of the same model, the same framing."""
    sess = clf.session
    graph = getattr(sess, "graph", None)
    if graph is not None:
        from ..engine import Session
        new = Session(graph, precision=sess.precision, mode=sess.mode, reset_every=sess.reset_every)
    else:  # a stand-in session (tests): a deep copy, reset
        new = copy.deepcopy(sess)
        new.reset()
    return StreamClassifier(new, clf.framer.renew(), clf.classes, clock=clf.clock)


class _Stream:
    __slots__ = ("clf", "tracker", "last_rx")

    def __init__(self, clf):
        self.clf, self.tracker, self.last_rx = clf, StreamTracker(), time.monotonic()


class ClassifyWorker:
    """``in_sock``: SUB or PULL carrying event messages. ``out_sock``: PUB or PUSH for predictions (or
    None); ``on_prediction``: optional callbacks (serve's console sink). ``classifier`` serves the first
    stream; later streams get ``factory(classifier)`` (default ``clone_classifier``)."""

    def __init__(self, classifier: StreamClassifier, in_sock: zmq.Socket, out_sock: zmq.Socket | None = None,
                 log: Log | None = None, metrics: Metrics | None = None, on_prediction=(), batch: int = 32,
                 stop: threading.Event | None = None, max_sessions: int = DEFAULT_MAX_SESSIONS,
                 shard: tuple = (0, 1), factory=None, peers=None, in_peers=None):
        if int(max_sessions) < 1:
            raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
        k, n = (int(v) for v in shard)
        if not (n >= 1 and 0 <= k < n):
            raise ValueError(f"shard must be (k, n) with 0 <= k < n, got {shard}")
        self.shard = (k, n)
        self.in_sock, self.out_sock = in_sock, out_sock
        self.log = log or Log("classify", quiet=True)
        self.metrics = metrics or Metrics(interval_s=0)
        self.on_prediction = list(on_prediction)
        self.batch = int(batch)
        self.stop = stop or threading.Event()
        self.max_sessions = int(max_sessions)
        self.factory = factory or clone_classifier
        self._spare = classifier          # the first stream's classifier
        self._template = classifier       # what later streams' classifiers are cloned from
        self._dropped_done = 0            # events outside the sensor in streams that ended / were evicted
        self.streams: dict = {}           # stream id -> _Stream, insertion order = least recently created first
        self.current: _Stream | None = None
        self._no_consumer_since = None    # when the PUSH output was first seen with no consumer
        self.peers = peers                # PeerWatch of out_sock: predictions for no consumer are counted, not queued
        self.in_peers = in_peers          # PeerWatch of in_sock: refused peers logged, links cut (oversized) counted
        frame = (getattr(classifier.session, "meta", None) or {}).get("frame") or {}
        self.sensor_size = tuple(int(v) for v in frame.get("sensor_size", ()))  # the model's (W, H)
        self.streams_ended = self.sessions_opened = self.evictions = 0
        self.other_shard = 0
        self._warned = set()
        self._last_wait_report = time.monotonic()

    # ------------------------------------------------------------------------------ compatibility
    @property
    def clf(self) -> StreamClassifier:
        """The classifier of the stream seen last (or the one the worker was given)."""
        return self.current.clf if self.current is not None else self._spare

    @property
    def tracker(self) -> StreamTracker:
        return self.current.tracker if self.current is not None else StreamTracker()

    # ------------------------------------------------------------------------------------- outputs
    def _send(self, frames) -> None:
        if self.out_sock is None:
            return
        # PUB drops at the HWM; PUSH waits for a consumer (back-pressure: nothing lost) but never for an
        # absent one, and never silently, and never forever once we are stopping
        deadline = None
        while True:
            if self.out_sock.poll(100, zmq.POLLOUT):
                self.out_sock.send_multipart(frames)
                self._no_consumer_since = None
                return
            if self.peers is not None and self.peers.peers == 0:
                # a consumer may still be starting (a process launched beside this one): give it a
                # grace period once, then drop at once while none is connected
                now = time.monotonic()
                self._no_consumer_since = self._no_consumer_since or now
                if now - self._no_consumer_since < NO_CONSUMER_GRACE_S and not self.stop.is_set():
                    continue
                self.metrics.drops["prediction_no_consumer"] += 1
                self._warn_once("no_consumer", "no prediction consumer is connected; predictions are dropped and "
                                "counted (connect `evrt watch --pattern pull` or an eval)")
                return
            if self.stop.is_set():
                deadline = deadline or time.monotonic() + 1.0
                if time.monotonic() > deadline:
                    self.metrics.drops["prediction_unsent"] += 1
                    return
            elif time.monotonic() - self._last_wait_report > WAIT_REPORT_S:
                self._last_wait_report = time.monotonic()
                self.log.info("waiting for the prediction consumer to take queued predictions (it is slow or paused)")

    def _emit(self, preds: list, stream_id: int) -> None:
        for p in preds:
            p.stream_id = stream_id
            self.metrics.step_done(p.latency_ms)
            self.metrics.predictions_out += 1
            self._send(encode_json(TOPIC_PRED, p.to_dict()))
            for cb in self.on_prediction:
                cb(p)

    def _reset(self, st: _Stream, why: str, **fields) -> None:
        st.clf.reset()
        self.metrics.resets += 1
        self.log.info(f"session reset: {why}", **fields)

    def _warn_once(self, key, msg, **fields):
        if key not in self._warned:
            self._warned.add(key)
            self.log.warn(msg, **fields)

    # ------------------------------------------------------------------------------------ sessions
    def _stream(self, sid: int) -> _Stream:
        st = self.streams.get(sid)
        if st is not None:
            return st
        if len(self.streams) >= self.max_sessions:
            idle_sid = min(self.streams, key=lambda s: self.streams[s].last_rx)
            idle = self.streams.pop(idle_sid)
            self._dropped_done += int(getattr(idle.clf.session, "dropped_events", 0) or 0)
            self.evictions += 1
            self.log.warn(f"{self.max_sessions} streams already hold a session; evicting the idlest "
                          f"(its open window is discarded)", evicted_stream=idle_sid,
                          idle_s=round(time.monotonic() - idle.last_rx, 3), new_stream=sid)
        clf, self._spare = (self._spare, None) if self._spare is not None else (self.factory(self._template), None)
        st = self.streams[sid] = _Stream(clf)
        st.clf.on_resync = lambda info, sid=sid: self._on_resync(sid, info)
        self.sessions_opened += 1
        if self.sessions_opened > 1:
            self.log.info("new stream: own session", stream_id=sid, sessions=len(self.streams))
        return st

    def _on_resync(self, sid: int, info: dict) -> None:
        self.metrics.drops["time_jump_resync"] += 1
        self.log.warn(f"time jumped {(info['to_us'] - info['from_us']) / 1e6:.6g} s: {info['empty_steps']} empty "
                      f"steps, then resynced ({info['skipped_windows']} windows skipped)", stream_id=sid)

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
        if msg.kind not in (EVENTS, RESET, END_OF_STREAM):
            m.drops["unexpected_kind"] += 1
            return []
        k, n = self.shard
        if msg.stream_id % n != k:
            self.other_shard += 1
            return []
        m.messages_in += 1
        st = self._stream(msg.stream_id)
        self.current = st
        st.last_rx = time.monotonic()
        action, lost = st.tracker.observe(msg.stream_id, msg.seq)
        if action == "first":
            if msg.seq:
                self.log.info("joined a stream mid-way; starting from a fresh state", stream_id=msg.stream_id,
                              seq=msg.seq)
        elif action == "restart":
            self._reset(st, "sequence restarted (source restarted)", stream_id=msg.stream_id, seq=msg.seq)
        if lost:
            m.lost += lost
            why = ("several consumers connected to one PUSH source? PUSH deals messages out round-robin"
                   if self.in_sock is not None and self.in_sock.type == zmq.PULL
                   else "the consumer is slower than the source (PUB drops at the high-water mark)")
            self._warn_once("gap", f"messages lost upstream (sequence gap): {why}; counting", lost=lost)
        clf = st.clf
        if msg.kind == RESET:
            self._reset(st, "RESET message", stream_id=msg.stream_id, seq=msg.seq)
            return []
        if msg.kind == END_OF_STREAM:
            preds = clf.end_of_stream()
            self._emit(preds, msg.stream_id)
            self._send(encode_json(TOPIC_EOS, {"stream_id": msg.stream_id, "steps": clf.steps,
                                               "events": clf.events_in, "lost_messages": m.lost,
                                               "resyncs": clf.resyncs, "dropped": dict(m.drops),
                                               "source_disconnects": self._disconnects()}))
            self.log.info("end of stream", stream_id=msg.stream_id, steps=clf.steps, events=clf.events_in)
            self.streams_ended += 1
            self._dropped_done += int(getattr(clf.session, "dropped_events", 0) or 0)
            del self.streams[msg.stream_id]   # frees the slot; a later message of this id starts afresh
            return preds
        m.events_in += len(msg.events)
        if self.sensor_size and msg.sensor_size != (0, 0) and tuple(msg.sensor_size) != self.sensor_size:
            self._warn_once("sensor", f"the source sends a {msg.sensor_size[0]}x{msg.sensor_size[1]} sensor, the model "
                            f"expects {self.sensor_size[0]}x{self.sensor_size[1]}; map it at the source with --crop / "
                            "--downsample (events outside the model's sensor are ignored)")
        try:
            preds = clf.push(msg.events)
        except EventError as exc:  # e.g. timestamps going backwards in time framing: drop the packet
            m.drops["bad_events"] += 1
            self._warn_once(("drop", "bad_events"), f"dropping packets with invalid events ({exc})")
            return []
        self._emit(preds, msg.stream_id)
        return preds

    def _disconnects(self) -> int | None:
        if self.in_peers is None:
            return None
        self.in_peers.poll()
        return self.in_peers.disconnects

    def flush(self) -> list:
        """Step every stream's open window (used when stopping: in-flight windows are finished, not lost)."""
        preds = []
        for sid, st in list(self.streams.items()):
            p = st.clf.end_of_stream()
            self._emit(p, sid)
            preds += p
        return preds

    # ---------------------------------------------------------------------------------------- loop
    def run(self, max_streams: int | None = None, idle_exit_s: float | None = None) -> dict:
        """Serve until ``stop`` is set (or ``max_streams`` streams ended, or nothing arrived for
        ``idle_exit_s``); then finish the open windows and return the metrics summary. Without
        ``idle_exit_s`` a worker that receives nothing says so every ``WAIT_REPORT_S`` seconds."""
        pending: deque = deque()
        last_rx = time.monotonic()
        m = self.metrics
        while not self.stop.is_set():
            if not pending:
                if not self.in_sock.poll(100):
                    now = time.monotonic()
                    if idle_exit_s is not None and now - last_rx > idle_exit_s:
                        self.log.info(f"nothing received for {idle_exit_s:g} s; stopping (--idle-exit)")
                        break
                    if idle_exit_s is None and now - max(last_rx, self._last_wait_report) > WAIT_REPORT_S:
                        self._last_wait_report = now
                        self.log.info(f"no events for {now - last_rx:.0f} s; waiting for a source "
                                      "(--idle-exit S stops after S idle seconds)")
                    if self.in_peers is not None:
                        self.in_peers.poll()   # logs refused peers even while nothing arrives
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
        summary.update(sessions_opened=self.sessions_opened, sessions_evicted=self.evictions,
                       streams_ended=self.streams_ended)
        if self.in_peers is not None:
            summary["source_disconnects"] = self._disconnects()  # e.g. a peer cut off for an oversized message
        if self.other_shard:
            summary["other_shard_messages"] = self.other_shard
        dropped = self._dropped_done + sum(int(getattr(st.clf.session, "dropped_events", 0) or 0)
                                           for st in self.streams.values())
        if hasattr(self._template.session, "dropped_events"):  # events outside the model's sensor, ignored
            summary["events_outside_sensor"] = dropped
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
