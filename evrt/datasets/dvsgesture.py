"""DVS128 Gesture samples from the original release or from tonic's preprocessed copy.

Layouts (``root`` may be the folder itself or its parent):

* **original** — ``DvsGesture/`` with ``userNN_<lighting>.aedat`` (AEDAT 3.1),
  ``userNN_<lighting>_labels.csv`` and ``trials_to_train.txt`` / ``trials_to_test.txt`` (one
  ``.aedat`` name per line). Samples are cut with ``start <= t < end`` µs timestamps
  (docs/SEMANTICS.md "Events and samples").
* **tonic** — ``ibmGestureTrain/`` / ``ibmGestureTest/`` (optionally under ``DVSGesture/``) with
  ``userNN_<lighting>/<g>.npy``: a float ``(N, 4)`` array, columns ``x, y, p, t`` with ``t`` in
  **milliseconds** (tonic multiplies by 1000 when loading), ``g`` = gesture index 0..10. Read with
  NumPy alone; timestamps are rounded to the nearest µs (tonic truncates, which can lose 1 µs to
  float error) and events are stably sorted by t.

Indices. ``gesture_id`` is the gesture, 0..10 = csv class − 1 = spikingjelly's folder name = tonic's
file name. ``label`` is the model output index under ``label_order``:

* ``'gesture'`` — label = gesture_id.
* ``'spikingjelly'`` — spikingjelly stores samples in folders ``0..10`` read by torchvision's
  ``DatasetFolder``, which sorts folder names as *strings* (``0, 1, 10, 2, …, 9``); so output index k
  is gesture ``SPIKINGJELLY_ORDER[k]`` (k=2 is gesture 10 "other", k=3..10 are gestures 2..9).
  Every checkpoint trained with the reference scripts uses this indexing (docs/SEMANTICS.md "Events and samples").

Sample order:

* ``'recording'`` — recordings in the order of the trials file (original) or sorted folder names
  (tonic), then label rows in file order (original) or gesture id (tonic).
* ``'spikingjelly'`` — the order of spikingjelly's ``DVS128Gesture`` dataset: class folders in string
  order, and inside a folder the files ``<recording>_<k>.npz`` sorted as strings, where k counts the
  samples of that class within the recording (so ``user02_led_0`` < ``user02_led_1`` < … and
  ``…_10`` sorts before ``…_2``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FormatError
from ..formats.aedat31 import EVENT_DTYPE, cut_samples, read_aedat31, read_labels_csv

__all__ = ["CLASS_NAMES", "SPIKINGJELLY_ORDER", "class_names", "Sample", "DVSGesture",
           "read_tonic_npy"]

# gesture_id -> name (csv class id = gesture_id + 1)
CLASS_NAMES = (
    "hand_clap", "right_hand_wave", "left_hand_wave", "right_arm_clockwise",
    "right_arm_counter_clockwise", "left_arm_clockwise", "left_arm_counter_clockwise",
    "arm_roll", "air_drums", "air_guitar", "other",
)
# model output index k -> gesture_id, for checkpoints trained on spikingjelly's DVS128Gesture
SPIKINGJELLY_ORDER = tuple(sorted(range(11), key=str))  # (0, 1, 10, 2, 3, ..., 9)


def _order(label_order: str):
    if label_order == "gesture":
        return tuple(range(11))
    if label_order == "spikingjelly":
        return SPIKINGJELLY_ORDER
    raise ValueError(f"label_order must be 'gesture' or 'spikingjelly', not {label_order!r}")


def class_names(label_order: str = "gesture") -> tuple:
    """Gesture names in model output order."""
    return tuple(CLASS_NAMES[g] for g in _order(label_order))


@dataclass(frozen=True)
class Sample:
    events: np.ndarray  # EVENT_DTYPE, µs
    label: int          # model output index under the dataset's label_order
    gesture_id: int     # 0..10 (csv class - 1)
    name: str           # "<recording>_<k>" (spikingjelly's file stem) or "<recording>/<g>" (tonic)


def read_tonic_npy(path) -> np.ndarray:
    """One sample of tonic's DVSGesture copy: ``(N, 4)`` columns x, y, p, t[ms] -> EVENT_DTYPE."""
    path = os.fspath(path)
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise FormatError(f"{path}: not a readable .npy file ({e})") from None
    if a.ndim != 2 or a.shape[1] != 4 or a.dtype.kind not in "fiu":
        raise FormatError(f"{path}: expected a numeric (N, 4) array x, y, p, t[ms]; got {a.dtype} {a.shape}")
    t = np.rint(a[:, 3].astype(np.float64) * 1000.0)
    if len(a) and (not np.all(np.isfinite(t)) or t.min() < 0):
        raise FormatError(f"{path}: column 3 (t) has negative or non-finite values")
    ev = np.empty(len(a), EVENT_DTYPE)
    ev["t"] = t.astype(np.uint64)
    ev["x"] = a[:, 0]
    ev["y"] = a[:, 1]
    ev["on"] = a[:, 2] > 0
    return ev[np.argsort(ev["t"], kind="stable")]


def _find(root: Path):
    """Return ('original', dir) or ('tonic', dir containing ibmGestureTrain/Test)."""
    for d in (root, root / "DvsGesture"):
        if (d / "trials_to_train.txt").is_file() or (d / "trials_to_test.txt").is_file():
            return "original", d
    for d in (root, root / "DVSGesture"):
        if (d / "ibmGestureTrain").is_dir() or (d / "ibmGestureTest").is_dir():
            return "tonic", d
    raise FormatError(f"{root}: neither a DvsGesture folder (trials_to_train.txt) nor tonic's "
                      f"layout (ibmGestureTrain/, ibmGestureTest/)")


class DVSGesture:
    """Iterate DVS128 Gesture samples. ``DVSGesture(root, split='train'|'test', order=…, label_order=…)``.

    ``len(ds)`` needs only the label files; ``ds[i]`` / iteration read each recording once per run of
    consecutive samples from it (the last recording is cached).
    """

    def __init__(self, root, split: str = "train", order: str = "recording",
                 label_order: str = "gesture"):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', not {split!r}")
        if order not in ("recording", "spikingjelly"):
            raise ValueError(f"order must be 'recording' or 'spikingjelly', not {order!r}")
        self._to_label = {g: k for k, g in enumerate(_order(label_order))}
        self.label_order = label_order
        self.classes = class_names(label_order)
        self.split = split
        self.layout, self.root = _find(Path(root))
        # each entry: (source file, row index or None, gesture_id, name, spikingjelly file name)
        entries = self._index_original() if self.layout == "original" else self._index_tonic()
        if order == "spikingjelly":
            entries.sort(key=lambda e: (str(e[2]), e[4]))
        self._entries = entries
        self._cache = (None, None, None)

    # -- indexing ---------------------------------------------------------------------------
    def _index_original(self):
        trials = self.root / f"trials_to_{self.split}.txt"
        if not trials.is_file():
            raise FormatError(f"{trials}: missing")
        entries = []
        for lineno, line in enumerate(trials.read_text().splitlines(), start=1):
            name = line.strip()
            if not name:
                continue
            aedat = self.root / name
            csv = aedat.with_name(aedat.stem + "_labels.csv")
            if not aedat.is_file() or not csv.is_file():
                raise FormatError(f"{trials}: line {lineno}: {name} or its _labels.csv is missing")
            seen = [0] * 11
            for row, r in enumerate(read_labels_csv(csv)):
                g = int(r["class"]) - 1
                name = f"{aedat.stem}_{seen[g]}"
                entries.append((aedat, row, g, name, name + ".npz"))
                seen[g] += 1
        return entries

    def _index_tonic(self):
        d = self.root / ("ibmGestureTrain" if self.split == "train" else "ibmGestureTest")
        if not d.is_dir():
            raise FormatError(f"{d}: missing")
        entries = []
        for rec in sorted(p for p in d.iterdir() if p.is_dir()):
            files = [f for f in rec.iterdir() if f.suffix == ".npy" and f.stem.isdigit()]
            for f in sorted(files, key=lambda f: int(f.stem)):
                g = int(f.stem)
                if not 0 <= g <= 10:
                    raise FormatError(f"{f}: gesture index {g} outside 0..10")
                # tonic keeps one sample per gesture and recording: spikingjelly's k would be 0
                entries.append((f, None, g, f"{rec.name}/{g}", f"{rec.name}_0.npz"))
        return entries

    # -- access -----------------------------------------------------------------------------
    def __len__(self):
        return len(self._entries)

    def _events(self, src: Path, row):
        if row is None:
            return read_tonic_npy(src)
        if self._cache[0] != src:
            ev = read_aedat31(src)
            labels = read_labels_csv(src.with_name(src.stem + "_labels.csv"))
            self._cache = (src, cut_samples(ev, labels, source=str(src)), labels)
        return self._cache[1][row]

    def __getitem__(self, i) -> Sample:
        src, row, g, name, _ = self._entries[i]
        return Sample(self._events(src, row), self._to_label[g], g, name)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    @property
    def names(self):
        return [e[3] for e in self._entries]

    @property
    def labels(self):
        """Each sample's label (under ``label_order``), from the label files alone."""
        return [self._to_label[e[2]] for e in self._entries]

    def __repr__(self):
        return (f"DVSGesture({str(self.root)!r}, split={self.split!r}, layout={self.layout!r}, "
                f"label_order={self.label_order!r}, n={len(self)})")
