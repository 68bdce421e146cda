"""Events -> per-step input.

Clip framing reproduces the reference rule exactly (docs/SEMANTICS.md "Framing": spikingjelly ``split_by='number'``
integration, then the family's resize and extra channel). Stream framing is for live use: a step
closes every N events or every Δ µs, and an empty time window is still a step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .errors import EventError
from .events import EVENT_DTYPE, as_events

__all__ = ["FrameSpec", "frame_bounds", "event_bins", "clip_frames", "resize_frames", "antialias_taps",
           "StreamFramer", "Window", "time_chunks"]

RESIZES = (None, "avg2", "antialias")


@dataclass(frozen=True)
class FrameSpec:
    """How a model's reference input is built from one sample's events.

    ``sensor_size`` is ``(width, height)``. ``resize``: None, ``'avg2'`` (2×2 average pooling = bilinear
    at exactly half size without antialias, SDT CIFAR10-DVS) or ``'antialias'`` (torchvision
    ``Resize(antialias=True)`` to half size on float32 frames, SpikingResformer). ``sum_channel`` appends
    channel 0 + 1 after resizing.
    """
    T: int
    sensor_size: tuple = (128, 128)
    resize: str | None = None
    sum_channel: bool = False

    def __post_init__(self):
        object.__setattr__(self, "sensor_size", tuple(int(v) for v in self.sensor_size))
        if int(self.T) < 1:
            raise ValueError(f"FrameSpec.T must be >= 1, got {self.T}")
        if self.resize not in RESIZES:
            raise ValueError(f"FrameSpec.resize must be one of {RESIZES}, got {self.resize!r}")
        if len(self.sensor_size) != 2 or min(self.sensor_size) < 1:
            raise ValueError(f"FrameSpec.sensor_size must be (width, height), got {self.sensor_size}")
        if self.resize and any(v % 2 for v in self.sensor_size):
            raise ValueError(f"resize {self.resize!r} halves the frame; sensor size {self.sensor_size} is odd")

    @property
    def channels(self) -> int:
        return 3 if self.sum_channel else 2

    @property
    def frame_shape(self) -> tuple:
        """(C, H, W) of one reference frame."""
        w, h = self.sensor_size
        if self.resize:
            w, h = w // 2, h // 2
        return (self.channels, h, w)

    def to_dict(self) -> dict:
        return {"T": int(self.T), "sensor_size": list(self.sensor_size), "resize": self.resize,
                "sum_channel": bool(self.sum_channel)}

    @classmethod
    def from_dict(cls, d: dict) -> "FrameSpec":
        return cls(T=int(d["T"]), sensor_size=tuple(d.get("sensor_size", (128, 128))),
                   resize=d.get("resize"), sum_channel=bool(d.get("sum_channel", False)))


def frame_bounds(n_events: int, T: int) -> np.ndarray:
    """Event index bounds of spikingjelly's ``split_by='number'``: frame j is ``[b[j], b[j+1])``;
    ``step = n // T`` events per frame, the last frame takes the remainder (all of it when n < T)."""
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    b = np.arange(T + 1, dtype=np.int64) * (int(n_events) // T)
    b[-1] = n_events
    return b


def event_bins(ev, T: int):
    """Yield the T event slices (views) of a clip under ``frame_bounds`` — the per-step input of the
    event-driven path, without building frames."""
    ev = as_events(ev)
    b = frame_bounds(len(ev), T)
    for j in range(T):
        yield ev[b[j]:b[j + 1]]


def antialias_taps(n_in: int, n_out: int) -> tuple:
    """Index and weight tables ``(idx (n_out, K), w (n_out, K))`` of a separable antialiased bilinear
    (triangle) downscale, as torchvision's ``Resize(antialias=True)`` defines it: the triangle is
    stretched by the scale ``s = n_in / n_out``, centred on input coordinate ``s·(i + ½)``, sampled at
    input pixel centres, cut at the border and renormalised to sum 1. At s = 2 the interior taps are
    1/8, 3/8, 3/8, 1/8 on pixels 2i−1…2i+2 and the borders 3/7, 3/7, 1/7 (docs/SEMANTICS.md "Framing"). Unused slots
    have weight 0 and point at a valid pixel."""
    s = n_in / n_out
    support = s if s > 1 else 1.0
    inv = 1.0 / s if s > 1 else 1.0
    centre = s * (np.arange(n_out) + 0.5)
    lo = np.maximum((centre - support + 0.5).astype(np.int64), 0)  # trunc toward 0, then clamp
    hi = np.minimum((centre + support + 0.5).astype(np.int64), n_in)
    k = int((hi - lo).max())
    j = lo[:, None] + np.arange(k)[None, :]
    w = np.maximum(0.0, 1.0 - np.abs((j - centre[:, None] + 0.5) * inv))
    w[j >= hi[:, None]] = 0.0
    w /= w.sum(axis=1, keepdims=True)
    return np.minimum(j, n_in - 1), w


def _apply_taps(x, idx, w, axis):
    """Separable pass along ``axis``: out[..., i] = Σ_k x[..., idx[i, k]] · w[i, k], in tap order.

    float32 input is accumulated as torch's CPU kernel does, one fused multiply-add per tap
    (``acc = fma(x, w, acc)``), emulated exactly here: the float64 product of two float32 values is
    exact and the sum is rounded once to float32. Plain float32 mul+add differs by 1 ulp on ~1 % of
    the border pixels; with the FMA the result matched torch bit for bit in tests/test_framing.py."""
    x = np.moveaxis(x, axis, -1)
    w = w.astype(x.dtype)
    out = x[..., idx[:, 0]] * w[:, 0]
    if x.dtype == np.float32:
        w64 = w.astype(np.float64)
        for k in range(1, idx.shape[1]):
            out = (out + x[..., idx[:, k]].astype(np.float64) * w64[:, k]).astype(np.float32)
    else:
        for k in range(1, idx.shape[1]):
            out += x[..., idx[:, k]] * w[:, k]
    return np.moveaxis(out, -1, axis)


def resize_frames(frames: np.ndarray, mode: str | None) -> np.ndarray:
    """Halve the last two axes of ``(..., H, W)`` frames by ``mode`` (None returns them unchanged)."""
    if mode is None:
        return frames
    h, w = frames.shape[-2:]
    if mode == "avg2":
        # bilinear at exactly half size, align_corners=False, samples midway between pixel pairs; on
        # counts (small integers) every partial sum is exact, so the summation order does not matter
        f = frames.reshape(frames.shape[:-2] + (h // 2, 2, w // 2, 2))
        return (f[..., 0, :, 0] + f[..., 0, :, 1] + f[..., 1, :, 0] + f[..., 1, :, 1]) * frames.dtype.type(0.25)
    if mode == "antialias":
        # width pass first, then height — the order torch's separable antialias kernel uses
        out = _apply_taps(frames, *antialias_taps(w, w // 2), axis=-1)
        return _apply_taps(out, *antialias_taps(h, h // 2), axis=-2)
    raise ValueError(f"unknown resize mode {mode!r}; expected one of {RESIZES}")


def clip_frames(ev, spec: FrameSpec, dtype=np.float64) -> np.ndarray:
    """The reference input tensor ``(T, C, H, W)`` (torch layout) of one sample.

    Counts of events at ``(p, y, x)`` per frame (channel 0 = OFF), frames split by ``frame_bounds``,
    exactly spikingjelly's ``integrate_events_by_fixed_frames_number(..., 'number', T, H, W)``; then
    ``spec.resize`` and the optional sum channel. 'antialias' is computed in float32 as the reference
    (SpikingResformer casts frames to float32 before resizing) and then cast to ``dtype``.
    """
    ev = as_events(ev)
    T = int(spec.T)
    w, h = spec.sensor_size
    x, y = ev["x"].astype(np.int64), ev["y"].astype(np.int64)
    if len(ev) and (int(x.max()) >= w or int(y.max()) >= h):
        i = int(np.argmax((x >= w) | (y >= h)))
        raise EventError(f"event {i}: (x={int(x[i])}, y={int(y[i])}) is outside the sensor {w}x{h}")
    frame = np.repeat(np.arange(T, dtype=np.int64), np.diff(frame_bounds(len(ev), T)))
    flat = ((frame * 2 + ev["on"]) * h + y) * w + x
    frames = np.bincount(flat, minlength=T * 2 * h * w).astype(np.float64).reshape(T, 2, h, w)
    if spec.resize == "antialias":
        frames = resize_frames(frames.astype(np.float32), "antialias")
    else:
        frames = resize_frames(frames, spec.resize)
    if spec.sum_channel:  # summed before the cast: the reference adds in float32 after resizing
        frames = np.concatenate([frames, frames[:, :1] + frames[:, 1:2]], axis=1)
    return frames.astype(dtype, copy=False)


def time_chunks(t: np.ndarray, chunk_us: int, t0: int | None = None):
    """``(lo, hi, end_us)`` of every non-empty chunk ``[t0 + k·chunk_us, t0 + (k+1)·chunk_us)`` of sorted
    timestamps ``t`` (uint64): the packets of a paced replay. Computed from the events, so the number of
    chunks is bounded by the events, never by the timestamps (a 2^62 µs gap is one boundary)."""
    if not len(t):
        return []
    t0 = int(t[0]) if t0 is None else int(t0)
    k = (t - np.uint64(t0)) // np.uint64(chunk_us)
    b = np.concatenate([[0], np.flatnonzero(k[1:] != k[:-1]) + 1, [len(t)]])
    return [(int(lo), int(hi), t0 + (int(k[lo]) + 1) * int(chunk_us)) for lo, hi in zip(b[:-1], b[1:])]


class Window(NamedTuple):
    """One closed stream window: its events and its time span ``[start_us, end_us)``."""
    events: np.ndarray
    start_us: int
    end_us: int


MAX_EMPTY_STEPS = 1000       # empty time windows emitted for one silence before the framer resyncs
MAX_EVENTS_PER_STEP = 1 << 18  # events one step may hold (3.4 MB); the rest of an overfull window is dropped


class StreamFramer:
    """Cut a live event stream into steps.

    ``count=N``: a window closes every N events; its span is ``[t_first, t_last + 1)``.
    ``window_us=D``: windows ``[start + kD, start + (k+1)D)`` aligned to ``start`` (the first event's
    timestamp unless given); a window closes when an event at or after its end arrives, and windows
    with no events are still emitted (a step with empty input). Events must arrive in time order.

    Bounded by construction, whatever the timestamps: a silence (or a clock jump) yields at most
    ``max_empty`` empty windows, then the grid *resyncs* to the window of the next event (the skipped
    windows are counted in ``skipped_windows``, each jump in ``resyncs``, the latest in ``last_resync``);
    a window holds at most ``max_events`` events, the excess is dropped and counted in
    ``dropped_events``. Work and memory per ``push`` are thus bounded by the packet, never by its
    timestamps.

    ``push(ev)`` returns the closed windows' event slices; ``push_windows(ev)`` the same as ``Window``
    tuples with their spans. ``flush()`` / ``flush_windows()`` return the open window (a list of zero
    or one) and start the next one where it ends.
    """

    def __init__(self, count: int | None = None, window_us: int | None = None, start_us: int | None = None,
                 max_empty: int = MAX_EMPTY_STEPS, max_events: int = MAX_EVENTS_PER_STEP):
        if (count is None) == (window_us is None):
            raise ValueError("StreamFramer needs exactly one of count=N or window_us=D")
        if count is not None and not 1 <= int(count) <= int(max_events):
            raise ValueError(f"count must be in 1..{int(max_events)} (events per step), got {count}")
        if window_us is not None and int(window_us) < 1:
            raise ValueError(f"window_us must be >= 1, got {window_us}")
        if int(max_empty) < 0 or int(max_events) < 1:
            raise ValueError("max_empty must be >= 0 and max_events >= 1")
        self.count = None if count is None else int(count)
        self.window_us = None if window_us is None else int(window_us)
        self.start_us = None if start_us is None else int(start_us)  # start of the open window
        self.max_empty, self.max_events = int(max_empty), int(max_events)
        self.resyncs = self.skipped_windows = self.dropped_events = 0
        self.last_resync: dict | None = None
        self._pending = np.zeros(0, EVENT_DTYPE)
        self._last_t = None

    def renew(self) -> "StreamFramer":
        """A fresh framer with the same settings (a new stream)."""
        return StreamFramer(count=self.count, window_us=self.window_us, max_empty=self.max_empty,
                            max_events=self.max_events)

    def _check_order(self, ev):
        t = ev["t"]
        if len(t) > 1 and np.any(t[1:] < t[:-1]):
            i = int(np.argmax(t[1:] < t[:-1])) + 1
            raise EventError(f"event {i} of this packet: t={int(t[i])} after t={int(t[i - 1])} "
                             "(stream framing needs time-ordered events)")
        if len(t) and self._last_t is not None and int(t[0]) < self._last_t:
            raise EventError(f"event 0 of this packet: t={int(t[0])} is before the previous packet's last "
                             f"timestamp {self._last_t}")
        if len(t) and self.window_us is not None and self.start_us is not None and int(t[0]) < self.start_us:
            raise EventError(f"event 0 of this packet: t={int(t[0])} is before the open window's start "
                             f"{self.start_us}")

    def _cap(self, ev):
        if len(ev) > self.max_events:
            self.dropped_events += len(ev) - self.max_events
            return ev[:self.max_events]
        return ev

    def push_windows(self, ev) -> list:
        ev = as_events(ev)
        if not len(ev):
            return []
        if self.window_us is not None:
            self._check_order(ev)
            self._last_t = int(ev["t"][-1])
        buf = np.concatenate([self._pending, ev]) if len(self._pending) else ev
        out = []
        if self.count is not None:
            k = len(buf) // self.count
            for i in range(k):
                w = buf[i * self.count:(i + 1) * self.count]
                out.append(Window(w, int(w["t"][0]), int(w["t"][-1]) + 1))
            self._pending = buf[k * self.count:]
            return out
        if self.start_us is None:
            self.start_us = int(buf["t"][0])
        d, start = self.window_us, self.start_us
        # window index of every buffered event, relative to the open window (t >= start is checked);
        # computed on the events, so the work is bounded by the packet whatever the timestamps say
        if start >= 0:
            k = (buf["t"] - np.uint64(start)) // np.uint64(d)
        else:  # an explicit negative start: exact in Python integers (rare; the packet is small)
            k = np.array([(int(t) - start) // d for t in buf["t"]], dtype=np.uint64)
        closed = int(k[-1])  # windows before the newest event's window are complete
        if closed <= 0:
            self._pending = self._cap(buf)
            return out
        occupied, first = np.unique(k, return_index=True)  # ascending; the last one is `closed`
        bounds = np.concatenate((first, [len(buf)]))
        prev = -1  # the last window emitted, relative to start
        for j, i0, i1 in zip(occupied.tolist(), bounds[:-1].tolist(), bounds[1:].tolist()):
            self._empties(out, start, prev, j)
            if j == closed:
                self._pending = self._cap(buf[i0:i1])
                break
            out.append(Window(self._cap(buf[i0:i1]), start + j * d, start + (j + 1) * d))
            prev = j
        self.start_us = start + closed * d
        return out

    def _empties(self, out: list, start: int, prev: int, j: int) -> None:
        """Append the empty windows between windows ``prev`` and ``j`` (relative to ``start``), at most
        ``max_empty`` of them; past that the grid moves on to window ``j`` and the jump is reported."""
        d = self.window_us
        gap = j - prev - 1
        n = min(gap, self.max_empty)
        out.extend(Window(_EMPTY, start + (prev + 1 + i) * d, start + (prev + 2 + i) * d) for i in range(n))
        if gap > n:
            self.resyncs += 1
            self.skipped_windows += gap - n
            self.last_resync = {"from_us": start + (prev + 1 + n) * d, "to_us": start + j * d,
                                "empty_steps": n, "skipped_windows": gap - n}

    def push(self, ev) -> list:
        return [w.events for w in self.push_windows(ev)]

    def flush_windows(self) -> list:
        buf, self._pending = self._pending, np.zeros(0, EVENT_DTYPE)
        if not len(buf):
            return []
        if self.count is not None:
            return [Window(buf, int(buf["t"][0]), int(buf["t"][-1]) + 1)]
        start = self.start_us
        self.start_us = start + self.window_us
        return [Window(buf, start, start + self.window_us)]

    def flush(self) -> list:
        return [w.events for w in self.flush_windows()]


_EMPTY = np.zeros(0, EVENT_DTYPE)
