"""``Recording``: what every reader returns — one event array, its sensor and optional labels."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..events import EVENT_DTYPE

__all__ = ["Recording", "LABELS_DTYPE", "as_labels"]

# one labelled sample: events with start_us <= t < end_us carry `label`
LABELS_DTYPE = np.dtype([("label", "<i4"), ("start_us", "<u8"), ("end_us", "<u8")])


def as_labels(obj) -> np.ndarray | None:
    """``LABELS_DTYPE`` array from a structured array with (label|class, start_us|start, end_us|end)
    fields or an integer ``(K, 3)`` array; None stays None. Raises ``ValueError`` otherwise."""
    if obj is None:
        return None
    a = np.asarray(obj)
    out = np.empty(len(a) if a.ndim else 0, LABELS_DTYPE)
    if a.dtype.names:
        def pick(*names):
            for n in names:
                if n in a.dtype.names:
                    return a[n]
            raise ValueError(f"label array needs one of the fields {names}; has {a.dtype.names}")
        out["label"], out["start_us"], out["end_us"] = (pick("label", "class"), pick("start_us", "start"),
                                                        pick("end_us", "end"))
    elif a.ndim == 2 and a.shape[1] == 3 and a.dtype.kind in "iu":
        out["label"], out["start_us"], out["end_us"] = a[:, 0], a[:, 1], a[:, 2]
    else:
        raise ValueError(f"labels must be a structured (label, start_us, end_us) array or an integer (K, 3) "
                         f"array; got {a.dtype} {a.shape}")
    return out


@dataclass
class Recording:
    """A decoded recording. ``sensor_size`` is ``(width, height)`` or None when the file does not say;
    ``labels`` is a ``LABELS_DTYPE`` array or None; ``format`` names the reader ('aedat3.1', 'aedat4',
    'npz', 'npy', ...); ``camera`` is the camera / sensor model when the file names it."""
    events: np.ndarray
    sensor_size: tuple | None = None
    path: str | None = None
    format: str | None = None
    labels: np.ndarray | None = None
    camera: str | None = None

    def __post_init__(self):
        if self.events.dtype != EVENT_DTYPE:
            raise TypeError(f"Recording.events must be EVENT_DTYPE, got {self.events.dtype}")
        if self.sensor_size is not None:
            self.sensor_size = tuple(int(v) for v in self.sensor_size)
        self.labels = as_labels(self.labels)

    @property
    def duration_us(self) -> int:
        """Last minus first timestamp (0 for fewer than two events)."""
        t = self.events["t"]
        return int(t.max()) - int(t.min()) if len(t) else 0

    def samples(self):
        """Yield ``(label, events)`` for each label row: the events with ``start_us <= t < end_us``
        (slices when the recording is time-sorted). Nothing when there are no labels."""
        if self.labels is None:
            return
        t = self.events["t"]
        ordered = len(t) < 2 or not np.any(t[1:] < t[:-1])
        for r in self.labels:
            a, b = r["start_us"], r["end_us"]
            if ordered:
                i, j = np.searchsorted(t, [a, b], side="left")
                yield int(r["label"]), self.events[i:j]
            else:
                yield int(r["label"]), self.events[(t >= a) & (t < b)]
