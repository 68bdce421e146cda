"""Running NIR-imported models on a recording: fixed time windows, one step per window.

`time_window_bounds` reproduces tonic's `ToFrame(time_window=...)` (slice by time, no overlap):
windows start at the first event, [t0 + k·w, t0 + (k+1)·w); there are floor((t_last − t0 − w)/w) + 1
of them (at least one), so the events of a last, incomplete window are dropped unless
include_incomplete (then ceil(...) + 1 windows). Events must be in time order.
"""
from __future__ import annotations

import numpy as np

from ..errors import EventError


def time_window_bounds(t: np.ndarray, window_us: int, include_incomplete: bool = False) -> np.ndarray:
    """-> (starts, ends): int64 event-index arrays, one entry per window."""
    t = np.asarray(t)
    if len(t) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if np.any(np.diff(t.astype(np.int64)) < 0):
        raise EventError("events are not in time order; time-window framing needs sorted timestamps")
    w = int(window_us)
    t0, t1 = int(t[0]), int(t[-1])
    dur = t1 - t0
    n = int(np.ceil((dur - w) / w) + 1) if include_incomplete else int(np.floor((dur - w) / w) + 1)
    n = max(n, 1)
    starts = np.arange(n, dtype=np.int64) * w + t0
    ts = t.astype(np.int64)
    return np.searchsorted(ts, starts), np.searchsorted(ts, starts + w)


def time_window_frames(ev, window_us: int, sensor_size: tuple, include_incomplete: bool = False,
                       dtype=np.float64) -> np.ndarray:
    """(n, 2, H, W) event counts per window (channel 0 = OFF), tonic ToFrame's tensor."""
    width, height = sensor_size
    lo, hi = time_window_bounds(ev["t"], window_us, include_incomplete)
    out = np.zeros((len(lo), 2, height, width), dtype)
    for k, (a, b) in enumerate(zip(lo, hi)):
        e = ev[a:b]
        np.add.at(out[k], (e["on"].astype(np.int64), e["y"].astype(np.int64), e["x"].astype(np.int64)), 1)
    return out


def time_window_steps(events, framing: dict) -> list:
    """One clip's steps under a model's `meta["framing"]` (kind "time_window"): the events of each
    window, in order (`Session.run_clip` runs them from a fresh state and averages the outputs;
    argmax = argmax of the summed output spikes, sinabs' rule)."""
    lo, hi = time_window_bounds(events["t"], framing["time_window_us"], framing.get("include_incomplete", False))
    return [events[a:b] for a, b in zip(lo, hi)]
