"""``Recording``: what every reader returns — one event array, its sensor and optional labels."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import FormatError
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
        out["label"], out["start_us"], out["end_us"] = _checked(a[:, 0], a[:, 1], a[:, 2])
        return out
    else:
        raise ValueError(f"labels must be a structured (label, start_us, end_us) array or an integer (K, 3) "
                         f"array; got {a.dtype} {a.shape}")
    _checked(*(a[n] for n in _names(a)))
    return out


def _names(a):
    pick = lambda *ns: next(n for n in ns if n in a.dtype.names)  # noqa: E731 (validated by the caller)
    return pick("label", "class"), pick("start_us", "start"), pick("end_us", "end")


def _checked(label, start, end):
    """The columns, after checking they fit LABELS_DTYPE without wrapping: a negative start read as
    uint64 would become 2^64 - n, silently moving the sample to the end of time."""
    for name, col, lo, hi in (("label", label, 0, 2**31 - 1), ("start_us", start, 0, 2**64 - 1),
                              ("end_us", end, 0, 2**64 - 1)):
        col = np.asarray(col)
        if col.dtype.kind not in "iu" or not len(col):
            if col.dtype.kind not in "iub":
                raise ValueError(f"label column {name} must hold integers, got {col.dtype}")
            continue
        if int(col.min()) < lo or int(col.max()) > hi:
            bad = next(i for i, v in enumerate(col.tolist()) if not lo <= v <= hi)
            raise ValueError(f"label row {bad}: {name}={int(col[bad])} outside {lo}..{hi}")
    s, e = np.asarray(start).astype(np.uint64), np.asarray(end).astype(np.uint64)
    if len(s) and np.any(e <= s):
        i = int(np.argmax(e <= s))
        raise ValueError(f"label row {i}: end_us={int(e[i])} is not after start_us={int(s[i])}")
    return label, start, end


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
    notes: list = field(default_factory=list)  # what the reader changed, for the caller to show as warnings

    def __post_init__(self):
        if self.events.dtype != EVENT_DTYPE:
            raise TypeError(f"Recording.events must be EVENT_DTYPE, got {self.events.dtype}")
        if self.sensor_size is not None:
            self.sensor_size = tuple(int(v) for v in self.sensor_size)
        self.labels = as_labels(self.labels)
        if self.labels is not None and len(self.labels):
            # a labelled span holding no event (outside the recording, or in a gap) is no sample: scoring
            # it would grade a prediction made from nothing. Dropped here, so every user sees the same set.
            n = np.array([len(ev) for _, ev in self.samples()])
            if np.any(n == 0):
                bad = self.labels[n == 0]
                self.notes.append(f"{len(bad)} of {len(self.labels)} labelled spans hold no events (first: label "
                                  f"{int(bad['label'][0])} [{int(bad['start_us'][0])}, {int(bad['end_us'][0])}) µs; "
                                  f"the recording spans {self._span()}); they are not samples and are skipped")
                self.labels = self.labels[n > 0]

    def _span(self) -> str:
        t = self.events["t"]
        return f"[{int(t.min())}, {int(t.max())}] µs" if len(t) else "no events"

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


def read_file_bytes(path, limit: int = -1) -> tuple:
    """``(path as str, the file's bytes)`` (its first ``limit`` bytes if given); a file that cannot be
    opened is a one-line ``FormatError``. Every reader that decodes a whole file in memory starts here."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            return path, f.read(limit)
    except OSError as e:
        raise FormatError(f"{path}: cannot open ({e.strerror or e})") from None
