"""The event array type, conversions at the edges, and validation.

One dtype throughout the runtime: the packed 13-byte record ``t:<u8, x:<u2, y:<u2, on:?`` (µs), what
``aedat``, faery and neuromorphic-drivers emit, so their arrays pass through without a copy. tonic's
``x, y, p, t`` structured arrays and ``t, x, y, p`` mappings (npz files, spikingjelly dicts) are
converted here, at the edge, never in the hot path.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from .errors import EventError

__all__ = ["EVENT_DTYPE", "TONIC_DTYPE", "make_events", "as_events", "to_tonic", "validate",
           "ValidationReport"]

EVENT_DTYPE = np.dtype([("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("on", "?")])
# tonic's own DVSGesture dtype; any field order / int widths are accepted on input
TONIC_DTYPE = np.dtype([("x", "<i2"), ("y", "<i2"), ("p", "?"), ("t", "<i8")])

_U16 = 0xFFFF


def _column(name, values, n=None):
    """A field as a 1-D integer (or bool) array; floats must hold whole numbers (no silent truncation)."""
    a = np.asarray(values)
    if a.ndim != 1:
        raise EventError(f"field {name!r} must be 1-D, got shape {a.shape}")
    if n is not None and len(a) != n:
        raise EventError(f"field {name!r} has {len(a)} values, expected {n}")
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a) | (a != np.floor(a))
        if bad.any():
            i = int(np.argmax(bad))
            raise EventError(f"event {i}: {name}={a[i]!r} is not a whole number")
        a = a.astype(np.int64)
    elif a.dtype.kind not in "biu":
        raise EventError(f"field {name!r} has dtype {a.dtype}; expected integers or bool")
    return a


def _check_range(name, a, hi=None):
    """Raise on the first value outside [0, hi] (hi None: no upper bound)."""
    if not len(a) or a.dtype.kind == "b":
        return
    bad = a < 0 if a.dtype.kind == "i" else np.zeros(len(a), bool)
    if hi is not None:
        bad |= a > hi
    if bad.any():
        i = int(np.argmax(bad))
        raise EventError(f"event {i}: {name}={int(a[i])} does not fit the event type (0 <= {name} <= {hi})")


def make_events(t, x, y, on) -> np.ndarray:
    """Build an ``EVENT_DTYPE`` array from columns. ``on`` may be bool or a polarity (> 0 means ON)."""
    t = _column("t", t)
    n = len(t)
    x, y, p = _column("x", x, n), _column("y", y, n), _column("on", on, n)
    _check_range("t", t)
    _check_range("x", x, _U16)
    _check_range("y", y, _U16)
    ev = np.empty(n, EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"] = t, x, y
    ev["on"] = p > 0  # covers bool, {0, 1} and {-1, 1} polarity conventions
    return ev


def _raw_fields(obj):
    """(t, x, y, polarity) columns of anything ``as_events`` accepts, without range conversion."""
    if isinstance(obj, np.ndarray) and obj.dtype.names is not None:
        names = set(obj.dtype.names)
        if obj.ndim != 1:
            raise EventError(f"events must be a 1-D structured array, got shape {obj.shape}")
        pol = "on" if "on" in names else "p" if "p" in names else None
        if not {"t", "x", "y"} <= names or pol is None:
            raise EventError(f"structured array with fields {obj.dtype.names} is not an event array; "
                             "need t, x, y and on (evrt/aedat) or p (tonic)")
        return obj["t"], obj["x"], obj["y"], obj[pol]
    if isinstance(obj, Mapping) or hasattr(obj, "files"):  # dict or np.load(...npz)
        keys = set(obj.keys()) if isinstance(obj, Mapping) else set(obj.files)
        pol = "on" if "on" in keys else "p" if "p" in keys else None
        if not {"t", "x", "y"} <= keys or pol is None:
            raise EventError(f"mapping with keys {sorted(keys)} is not an event set; need t, x, y and p (or on)")
        return obj["t"], obj["x"], obj["y"], obj[pol]
    if isinstance(obj, np.ndarray):
        raise EventError(f"events must be a structured array (EVENT_DTYPE or tonic's x, y, p, t), "
                         f"got a plain {obj.dtype} array of shape {obj.shape}")
    raise EventError(f"cannot interpret {type(obj).__name__} as events")


def as_events(obj) -> np.ndarray:
    """Return ``obj`` as an ``EVENT_DTYPE`` array: EVENT_DTYPE arrays pass through unchanged (no copy);
    other structured arrays with ``t, x, y`` and ``on`` or ``p`` (tonic's, any order/int widths) and
    mappings with ``t, x, y, p`` (or ``on``) are converted. Values that do not fit raise ``EventError``."""
    if isinstance(obj, np.ndarray) and obj.dtype == EVENT_DTYPE:
        if obj.ndim != 1:
            raise EventError(f"events must be 1-D, got shape {obj.shape}")
        return obj
    return make_events(*_raw_fields(obj))


def to_tonic(ev, dtype=TONIC_DTYPE) -> np.ndarray:
    """Convert events to tonic's structured layout (``x, y, p, t``; tonic's DVSGesture widths by default)."""
    ev = as_events(ev)
    dtype = np.dtype(dtype)
    out = np.empty(len(ev), dtype)
    for src, dst in (("x", "x"), ("y", "y"), ("t", "t")):
        kind = dtype[dst]
        if kind.kind in "iu" and len(ev) and int(ev[src].max()) > np.iinfo(kind).max:
            raise EventError(f"{dst} values up to {int(ev[src].max())} do not fit tonic field type {kind}")
        out[dst] = ev[src]
    out["p"] = ev["on"]
    return out


@dataclass
class ValidationReport:
    """What ``validate`` found. Counts are events; ``kept + dropped == total``."""
    total: int = 0
    kept: int = 0
    dropped_out_of_sensor: int = 0
    dropped_time_backwards: int = 0
    dropped_negative_time: int = 0

    @property
    def dropped(self) -> int:
        return self.dropped_out_of_sensor + self.dropped_time_backwards + self.dropped_negative_time

    @property
    def ok(self) -> bool:
        return self.dropped == 0

    def to_dict(self) -> dict:
        return {**asdict(self), "dropped": self.dropped}

    def __str__(self) -> str:
        return (f"{self.kept}/{self.total} events kept; dropped {self.dropped_out_of_sensor} outside the "
                f"sensor, {self.dropped_time_backwards} with decreasing timestamps, "
                f"{self.dropped_negative_time} with negative timestamps")


def validate(ev, sensor_size=None, policy: str = "raise"):
    """Check events and return ``(EVENT_DTYPE events, ValidationReport)``.

    Rules: the input is a 1-D structured array (or mapping) with t, x, y and on/p (always raises:
    nothing to drop); ``0 <= x < W`` and ``0 <= y < H`` for ``sensor_size=(W, H)`` (skipped when None);
    ``t >= 0``; timestamps never decrease.
    ``policy='raise'`` raises ``EventError`` naming the first bad index, its value and the rule.
    ``policy='drop'`` removes bad events: out-of-sensor and negative-time events first, then every
    event whose timestamp is below the largest timestamp kept before it, so the result is monotone.
    An event breaking several rules is counted once, under the first of those three reasons.
    """
    if policy not in ("raise", "drop"):
        raise ValueError(f"policy must be 'raise' or 'drop', not {policy!r}")
    t, x, y, p = _raw_fields(ev)
    n = len(t)
    t, x, y, p = _column("t", t), _column("x", x, n), _column("y", y, n), _column("on", p, n)
    # unsigned timestamps cannot be negative and stay uint64 (no wrap-around); signed ones go to int64
    if t.dtype.kind == "u":
        t64, neg_t = t, np.zeros(n, bool)
    else:
        t64 = t.astype(np.int64)
        neg_t = t64 < 0
    oos = np.zeros(n, bool)
    if sensor_size is not None:
        from .geometry import outside_mask  # the one definition of "outside the sensor"
        w, h = (int(v) for v in sensor_size)
        oos = outside_mask(x, y, (w, h))

    if policy == "raise":
        back = np.zeros(n, bool)
        if n > 1:
            back[1:] = t64[1:] < t64[:-1]
        bad = oos | neg_t | back
        if bad.any():
            i = int(np.argmax(bad))
            if oos[i]:
                xi, yi = int(x[i]), int(y[i])
                what = (f"x={xi} is outside the sensor width {w} (need 0 <= x < {w})" if not 0 <= xi < w
                        else f"y={yi} is outside the sensor height {h} (need 0 <= y < {h})")
            elif neg_t[i]:
                what = f"t={int(t64[i])} is negative (timestamps are µs >= 0)"
            else:
                what = (f"t={int(t64[i])} is smaller than the previous timestamp {int(t64[i - 1])} "
                        "(timestamps must not decrease)")
            raise EventError(f"event {i}: {what}")
        return as_events(ev), ValidationReport(total=n, kept=n)

    keep = ~(oos | neg_t)
    tk = t64[keep]
    # an event survives when it is not below the running maximum of the events kept before it; the
    # running max over all coordinate-valid events equals that, since every new maximum is itself kept
    mono = np.ones(len(tk), bool)
    if len(tk) > 1:
        mono[1:] = tk[1:] >= np.maximum.accumulate(tk)[:-1]
    idx = np.flatnonzero(keep)[mono]
    report = ValidationReport(total=n, kept=len(idx), dropped_out_of_sensor=int(oos.sum()),
                              dropped_negative_time=int((neg_t & ~oos).sum()),
                              dropped_time_backwards=int((~mono).sum()))
    if len(idx) == n:
        return as_events(ev), report
    return make_events(t[idx], x[idx], y[idx], p[idx]), report
