"""Event geometry: what happens to an event's coordinates between a sensor and a model's input grid.

Small pure functions on ``EVENT_DTYPE`` arrays (they never modify their input and return new arrays,
or the input itself when nothing changes). Functions that can lose events return ``(events, dropped)``
so callers can count and report what was lost. The rules are written down in docs/DATASETS.md
("Sensor size and --fit").

Sizes are ``(width, height)`` throughout; a box is ``(x0, y0, w, h)`` and may start at a negative
offset or reach past the sensor (then it pads: events keep their place relative to the box).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import EvrtError

__all__ = ["FIT_MODES", "DEFAULT_FIT", "outside_mask", "count_outside", "drop_outside", "crop", "center_box",
           "center_crop", "flip", "downsample", "FitPlan", "plan_fit", "fit_to_sensor", "describe_fit",
           "extent", "FitResult", "fit_events", "fit_recording", "model_sensor"]

FIT_MODES = ("downsample", "crop", "none")
# keeps the whole scene: a 320x240 or 346x260 sensor is divided by 3 and centred in 128x128
DEFAULT_FIT = "downsample"


def _size(size) -> tuple:
    w, h = (int(v) for v in size)
    if w < 1 or h < 1:
        raise EvrtError(f"a sensor size needs width and height >= 1, got {w}x{h}")
    return w, h


def _with_xy(ev: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A copy of ``ev`` (an EVENT_DTYPE array) with new coordinates (already checked to fit uint16)."""
    out = np.empty(len(ev), ev.dtype)  # not EVENT_DTYPE by import: evrt.events uses this module
    out["t"], out["on"] = ev["t"], ev["on"]
    out["x"], out["y"] = x, y
    return out


def outside_mask(x, y, size) -> np.ndarray:
    """True where ``(x, y)`` is outside ``0 <= x < W, 0 <= y < H``; any integer arrays (signed too)."""
    w, h = (int(v) for v in size)  # a 0-sized sensor holds nothing: everything is outside
    xi, yi = np.asarray(x).astype(np.int64), np.asarray(y).astype(np.int64)
    return (xi < 0) | (xi >= w) | (yi < 0) | (yi >= h)


def count_outside(ev: np.ndarray, size) -> int:
    """How many events fall outside a ``size`` sensor."""
    return int(np.count_nonzero(outside_mask(ev["x"], ev["y"], size))) if len(ev) else 0


def drop_outside(ev: np.ndarray, size) -> tuple:
    """``(events inside size, dropped count)``; the input is returned as is when nothing is outside."""
    if not len(ev):
        return ev, 0
    out = outside_mask(ev["x"], ev["y"], size)
    n = int(np.count_nonzero(out))
    return (ev[~out], n) if n else (ev, 0)


def crop(ev: np.ndarray, box) -> tuple:
    """Keep the events inside ``box = (x0, y0, w, h)`` and make their coordinates relative to it.
    Returns ``(events, dropped)``. A box reaching outside the sensor pads (coordinates shift)."""
    x0, y0, w, h = (int(v) for v in box)
    _size((w, h))
    x = ev["x"].astype(np.int64) - x0
    y = ev["y"].astype(np.int64) - y0
    keep = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    n = int(len(ev) - np.count_nonzero(keep))
    if n == 0 and x0 == 0 and y0 == 0:
        return ev, 0
    return _with_xy(ev[keep], x[keep], y[keep]), n


def center_box(size, target) -> tuple:
    """The ``target``-sized box centred on a ``size`` sensor; negative offsets when the target is larger
    (then cropping to it centres the sensor inside the target). Odd margins put the extra pixel
    right/bottom, as torchvision's CenterCrop does."""
    (w, h), (tw, th) = _size(size), _size(target)
    return ((w - tw) // 2, (h - th) // 2, tw, th)


def center_crop(ev: np.ndarray, size, target) -> tuple:
    """``crop(ev, center_box(size, target))``: ``(events, dropped)``."""
    return crop(ev, center_box(size, target))


def flip(ev: np.ndarray, size, x: bool = False, y: bool = False) -> np.ndarray:
    """Mirror within a ``size`` sensor (``x -> W-1-x``, ``y -> H-1-y``). Events must be inside it."""
    if not (x or y) or not len(ev):
        return ev
    w, h = _size(size)
    if count_outside(ev, (w, h)):
        raise EvrtError(f"flip: events outside the {w}x{h} sensor; crop or drop them first")
    xs = (w - 1) - ev["x"].astype(np.int64) if x else ev["x"]
    ys = (h - 1) - ev["y"].astype(np.int64) if y else ev["y"]
    return _with_xy(ev, xs, ys)


def downsample(ev: np.ndarray, n: int) -> np.ndarray:
    """Integer downsampling: ``x // n, y // n``. Events landing on one pixel stay separate events, so
    a count frame of the result equals sum-pooling the original count frame by n x n."""
    n = int(n)
    if n < 1:
        raise EvrtError(f"downsample factor must be >= 1, got {n}")
    if n == 1:
        return ev
    return _with_xy(ev, ev["x"] // n, ev["y"] // n)


def extent(ev: np.ndarray) -> tuple | None:
    """``(max x + 1, max y + 1)`` of the events: the smallest sensor that holds them (None if empty)."""
    return (int(ev["x"].max()) + 1, int(ev["y"].max()) + 1) if len(ev) else None


@dataclass(frozen=True)
class FitPlan:
    """How a ``sensor``-sized stream is mapped onto a model's ``target`` grid: divide by ``factor``, then
    crop ``box`` (in divided coordinates). ``identity`` when sensor == target or mode is 'none'."""
    mode: str
    sensor: tuple
    target: tuple
    factor: int = 1
    box: tuple | None = None

    @property
    def identity(self) -> bool:
        return self.factor == 1 and (self.box is None or tuple(self.box) == (0, 0) + tuple(self.target))

    def apply(self, ev: np.ndarray) -> tuple:
        """``(events on the target grid, dropped)``; events outside the target after mapping are dropped."""
        out = downsample(ev, self.factor)
        if self.box is not None and not self.identity:
            return crop(out, self.box)
        return drop_outside(out, self.target)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "sensor": list(self.sensor), "target": list(self.target),
                "factor": self.factor, "box": list(self.box) if self.box is not None else None}


def plan_fit(sensor, target, mode: str = DEFAULT_FIT) -> FitPlan:
    """The mapping of one fit mode:

    * ``none`` — coordinates as they are; what lies outside the target is dropped.
    * ``crop`` — the target-sized box at the centre of the sensor (a smaller sensor is centred in the
      target instead).
    * ``downsample`` — divide by the smallest integer n that makes the whole sensor fit the target
      (n = max(ceil(W/tw), ceil(H/th))), then centre it: nothing is dropped and the scene keeps its
      aspect ratio.

    A sensor that fits inside the target in both dimensions is used as it is in every mode: all its
    events already land on the grid, and moving them would only guess where the model wants them.
    """
    if mode not in FIT_MODES:
        raise EvrtError(f"--fit must be one of {', '.join(FIT_MODES)}, not {mode!r}")
    sensor, target = _size(sensor), _size(target)
    if mode == "none" or (sensor[0] <= target[0] and sensor[1] <= target[1]):
        return FitPlan(mode, sensor, target)
    n = 1
    if mode == "downsample":
        n = max(-(-sensor[0] // target[0]), -(-sensor[1] // target[1]), 1)
    scaled = (-(-sensor[0] // n), -(-sensor[1] // n))
    return FitPlan(mode, sensor, target, n, center_box(scaled, target))


def fit_to_sensor(ev: np.ndarray, sensor, target, mode: str = DEFAULT_FIT) -> tuple:
    """Map events from a ``sensor`` onto a model's ``target`` grid: ``(events, dropped)``."""
    return plan_fit(sensor, target, mode).apply(ev)


def describe_fit(plan: FitPlan, ev: np.ndarray | None = None, dropped: int | None = None) -> str:
    """One line for the user: the mismatch, how much falls outside as is, and what the fit does about it.
    With ``ev`` the fractions are counted on those events (``dropped``: what ``plan.apply(ev)`` dropped,
    if already known), otherwise they are pixel-area fractions."""
    (sw, sh), (tw, th) = plan.sensor, plan.target
    if ev is not None and len(ev):
        as_is = count_outside(ev, plan.target) / len(ev)
        if dropped is None:
            dropped = plan.apply(ev)[1]
        after = dropped / len(ev)
        unit = "of the events"
    else:
        inside = min(sw, tw) * min(sh, th)
        as_is = 1 - inside / (sw * sh)
        n = plan.factor
        scaled = (-(-sw // n), -(-sh // n))
        box = plan.box or (0, 0, tw, th)
        ow = max(0, min(scaled[0], box[0] + box[2]) - max(0, box[0]))
        oh = max(0, min(scaled[1], box[1] + box[3]) - max(0, box[1]))
        after = (1 - ow * oh / (scaled[0] * scaled[1])) if plan.mode != "none" else as_is
        unit = "of the sensor area"
    head = (f"sensor {sw}x{sh} differs from the model's {tw}x{th}: {100 * as_is:.1f} % {unit} would fall "
            f"outside as is")
    if plan.mode == "none" or plan.box is None:
        return f"{head}; --fit {plan.mode}: coordinates kept, events outside dropped ({100 * after:.1f} %)"
    x0, y0 = plan.box[:2]
    if plan.mode == "crop":
        what = f"--fit crop: the {tw}x{th} window centred on the sensor is kept (offset {x0},{y0})"
    else:  # the factor makes the whole sensor fit, so the box only centres it
        n = plan.factor
        what = (f"--fit downsample: coordinates divided by {n} ({-(-sw // n)}x{-(-sh // n)}) and centred "
                f"(shifted by {-x0},{-y0})")
    return f"{head}; {what}; {100 * after:.1f} % dropped"


@dataclass
class FitResult:
    """What ``fit_events`` did: the mapped events, the plan (None when nothing had to change), the
    events dropped and the line to show the user (None when the sizes matched)."""
    events: np.ndarray
    plan: FitPlan | None = None
    dropped: int = 0
    message: str | None = None

    def to_dict(self) -> dict:
        return {**(self.plan.to_dict() if self.plan else {"mode": None}), "dropped": self.dropped,
                "message": self.message}


def model_sensor(meta: dict) -> tuple | None:
    """A model's input grid ``(width, height)`` from its metadata (None when it does not say)."""
    size = (meta.get("frame") or {}).get("sensor_size")
    return tuple(int(v) for v in size) if size else None


def fit_events(ev: np.ndarray, sensor, target, mode: str = DEFAULT_FIT) -> FitResult:
    """Fit one recording's events onto a model's grid and say what was done. ``sensor`` None (the file
    does not state it): the events' extent stands in for it when they do not fit the target as they are.
    ``target`` None: nothing to fit to."""
    if mode not in FIT_MODES:
        raise EvrtError(f"--fit must be one of {', '.join(FIT_MODES)}, not {mode!r}")
    if target is None:
        return FitResult(ev)
    target = _size(target)
    note = ""
    if sensor is None:
        ext = extent(ev)
        if ext is None or (ext[0] <= target[0] and ext[1] <= target[1]):
            return FitResult(ev)
        sensor, note = ext, f"the file states no sensor size and its events span {ext[0]}x{ext[1]}; "
    sensor = _size(sensor)
    if sensor[0] <= target[0] and sensor[1] <= target[1]:
        return FitResult(ev)  # everything lands on the grid as it is
    plan = plan_fit(sensor, target, mode)
    out, dropped = plan.apply(ev)
    return FitResult(out, plan, dropped, note + describe_fit(plan, ev, dropped))


def fit_recording(rec, target, mode: str = DEFAULT_FIT):
    """``(recording with fitted events, FitResult)`` for an ``evrt.formats.Recording``: its events mapped
    by ``fit_events``; labels (times) are unchanged, and the sensor becomes the target when a fit ran."""
    import dataclasses
    fit = fit_events(rec.events, rec.sensor_size, target, mode)
    if fit.plan is None:
        return rec, fit
    return dataclasses.replace(rec, events=fit.events, sensor_size=fit.plan.target), fit
