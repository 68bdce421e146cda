"""In-process streaming classification: events in, one prediction per closed window out.

``StreamClassifier`` is the one place where a live stream is framed and stepped. ``evrt replay`` uses it
directly and ``evrt classify`` uses it behind a socket, so the two give the same predictions by
construction (only ``latency_ms`` differs).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np

from .framing import StreamFramer, Window
from .readout import softmax

__all__ = ["Prediction", "StreamClassifier", "softmax", "stream_framer_for"]


@dataclass
class Prediction:
    step: int              # steps since this classifier (or its last reset) started, 0-based
    start_us: int          # the window's span [start_us, end_us) in sensor time
    end_us: int
    n_events: int
    class_index: int
    class_name: str
    confidence: float      # softmax of the readout at class_index
    logits: list           # the readout (what the prediction is made from)
    latency_ms: float      # wall time of Session.step for this window
    acs: int
    macs: int
    segment_step: int = 0  # Session's step index within its current segment (out.t)
    stream_id: int = 0     # set by the pipeline; 0 in-process
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        # shallow and by hand: dataclasses.asdict deep-copies and cost ~0.5 ms a prediction
        d = {k: getattr(self, k) for k in _FIELDS}
        d["logits"] = list(self.logits)
        if self.extra:
            d["extra"] = dict(self.extra)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict) -> "Prediction":
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})

    def same_as(self, other: "Prediction", atol: float = 0.0) -> bool:
        """Equal apart from timing (latency) and the pipeline's stream id."""
        a, b = self.to_dict(), other.to_dict()
        for d in (a, b):
            for k in ("latency_ms", "stream_id", "extra"):
                d.pop(k, None)
        la, lb = np.asarray(a.pop("logits")), np.asarray(b.pop("logits"))
        return a == b and la.shape == lb.shape and bool(np.all(np.abs(la - lb) <= atol))


_FIELDS = tuple(f for f in Prediction.__dataclass_fields__ if f != "extra")


def stream_framer_for(meta: dict, count: int | None = None, window_us: int | None = None) -> StreamFramer:
    """A StreamFramer from explicit options, else from the model's ``meta['stream']`` suggestion."""
    if count is None and window_us is None:
        stream = meta.get("stream") or {}
        count, window_us = stream.get("count"), stream.get("window_us")
        if count and window_us:  # a model may suggest both; counts do not depend on the sensor's clock
            window_us = None
        if not count and not window_us:
            count = 2000
    try:
        return StreamFramer(count=count, window_us=window_us)
    except ValueError as exc:  # --count 0, --count 10**9, --window-us -1: the user's to fix
        from .errors import EvrtError
        raise EvrtError(f"stream framing: {exc}") from None


class StreamClassifier:
    """Frame a stream and step a Session once per closed window (an empty time window is a step too).

    ``session`` needs ``step(events) -> out`` with ``.logits``, ``.readout``, ``.t`` (and optionally
    ``.acs``, ``.macs``) and ``reset()``. ``framer`` is a ``StreamFramer``; ``classes`` the class names
    in output order (defaults to ``session.classes``).
    """

    def __init__(self, session, framer: StreamFramer, classes=None, clock=time.perf_counter):
        self.session = session
        self.framer = framer
        self.classes = list(classes if classes is not None else getattr(session, "classes", []) or [])
        self.clock = clock
        self.steps = 0
        self.events_in = 0
        self.resyncs = 0          # time jumps past the framer's empty-step bound, since construction
        self.on_resync = None     # optional callback(dict) told about each jump (the pipeline logs it)
        # Converted models (CSDformer-style, meta input_steps < T): their DIF neurons count spikes per
        # sample and fire only once their inputs are complete, so the state cannot run on forever. A
        # stream is cut into segments: `input_steps` windows of events, then T - input_steps steps with
        # no input (the network drains), then a reset; one prediction per segment, its clip readout.
        meta = getattr(session, "meta", None) or {}
        T = int(meta.get("T", 1))
        n_in = int(meta.get("input_steps", T))
        self.segment = (n_in, T) if n_in < T else None
        self._seg = None  # the open segment: [windows stepped, step logits, acs, macs, wall s, first window]

    @classmethod
    def from_model(cls, model, precision: str = "float32", mode: str = "continuous", reset_every=None,
                   count: int | None = None, window_us: int | None = None) -> "StreamClassifier":
        """Load a model (an ``.evrt`` path, a zoo name, or a Graph) into a Session with stream framing from
        its metadata. Live streams default to continuous mode without periodic resets (sliding mean
        over T steps)."""
        from .engine import Session
        from .zoo import resolve_model
        if isinstance(model, str):
            model = resolve_model(model)
        session = Session(model, precision=precision, mode=mode, reset_every=reset_every)
        return cls(session, stream_framer_for(session.meta, count, window_us))

    def warm_up(self) -> None:
        """Compile (or load) every kernel variant before the first real window, so numba's work is not
        a window's latency: a Session steps an empty window and one with an event at every pixel
        (Session.warm_up); another session type steps a tiny synthetic window. Then resets."""
        from .evaluate import pixel_events
        s = self.session
        if hasattr(s, "warm_up"):
            s.warm_up(lambda dense: s.step(pixel_events(s.meta) if dense else pixel_events(s.meta)[:0]))
            return
        s.step(pixel_events(getattr(s, "meta", {}))[:64])
        s.reset()
        if hasattr(s, "reset_counters"):
            s.reset_counters()

    def _class_name(self, i: int) -> str:
        return self.classes[i] if 0 <= i < len(self.classes) else str(i)

    def _step(self, window) -> Prediction:
        t0 = self.clock()
        out = self.session.step(window.events)
        latency = (self.clock() - t0) * 1e3
        readout = np.asarray(out.readout, dtype=np.float64).reshape(-1)
        k = int(np.argmax(readout)) if readout.size else -1
        p = softmax(readout)
        pred = Prediction(step=self.steps, start_us=int(window.start_us), end_us=int(window.end_us),
                          n_events=len(window.events), class_index=k, class_name=self._class_name(k),
                          confidence=float(p[k]) if k >= 0 else 0.0, logits=readout.tolist(),
                          latency_ms=latency, acs=int(getattr(out, "acs", 0)), macs=int(getattr(out, "macs", 0)),
                          segment_step=int(getattr(out, "t", self.steps)))
        self.steps += 1
        return pred

    def _segment_step(self, window) -> Prediction | None:
        """One input window of a converted model's segment; the segment's prediction once it is complete."""
        n_in, T = self.segment
        t0 = self.clock()
        out = self.session.step(window.events)
        seg = self._seg
        if seg is None:
            seg = self._seg = [0, [], 0, 0, 0.0, window, 0]
        seg[0] += 1
        seg[1].append(out.logits)
        seg[2] += int(getattr(out, "acs", 0))
        seg[3] += int(getattr(out, "macs", 0))
        seg[6] += len(window.events)
        if seg[0] < n_in:
            seg[4] += self.clock() - t0
            return None
        empty = window.events[:0]
        for _ in range(T - n_in):
            out = self.session.step(empty)
            seg[1].append(out.logits)
            seg[2] += int(getattr(out, "acs", 0))
            seg[3] += int(getattr(out, "macs", 0))
        self.session.reset()
        seg[4] += self.clock() - t0
        self._seg = None
        readout = np.mean(np.stack([np.asarray(x, np.float64).reshape(-1) for x in seg[1]]), axis=0)
        k = int(np.argmax(readout)) if readout.size else -1
        p = softmax(readout)
        pred = Prediction(step=self.steps, start_us=int(seg[5].start_us), end_us=int(window.end_us),
                          n_events=seg[6], class_index=k, class_name=self._class_name(k),
                          confidence=float(p[k]) if k >= 0 else 0.0, logits=readout.tolist(),
                          latency_ms=seg[4] * 1e3, acs=seg[2], macs=seg[3], segment_step=T - 1)
        self.steps += 1
        return pred

    def _steps(self, windows) -> list:
        if self.segment is None:
            return [self._step(w) for w in windows]
        return [p for p in (self._segment_step(w) for w in windows) if p is not None]

    def push(self, events) -> list:
        """Feed a packet of time-ordered events; returns the predictions of the windows it closed."""
        self.events_in += len(events)
        before = self.framer.resyncs
        windows = self.framer.push_windows(events)
        if self.framer.resyncs != before:
            self.resyncs += self.framer.resyncs - before
            if self.on_resync is not None:
                self.on_resync(dict(self.framer.last_resync))
        return self._steps(windows)

    def end_of_stream(self) -> list:
        """Step the open window (if it holds events) and return its prediction; a converted model's open
        segment is completed with empty input windows."""
        preds = self._steps(self.framer.flush_windows())
        while self._seg is not None:
            last = self._seg[5]
            preds += self._steps([Window(last.events[:0], last.end_us, last.end_us)])
        return preds

    def reset(self) -> None:
        """Fresh neuron state, an empty framer, step numbering and event count from 0 (a new stream:
        nothing of the abandoned one is reported as this one's)."""
        self._seg = None
        self.session.reset()
        self.framer = self.framer.renew()
        self.steps = 0
        self.events_in = 0
