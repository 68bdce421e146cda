"""Class-folder event datasets (``<class>/<sample file>``): CIFAR10-DVS, N-MNIST, N-Caltech101.

What they share is the order the public loaders see samples in, which decides class indices and the
train/test split (docs/DATASETS.md):

* classes: the folder names sorted as Python strings (torchvision's ``DatasetFolder``, which
  spikingjelly's datasets build on, and tonic's ``os.walk`` with sorted dirs);
* samples inside a class: file names sorted as strings (``DatasetFolder``), so ``x_10`` comes before
  ``x_2``;
* spikingjelly's ``split_to_train_test_set(ratio, dataset, K)`` (non-random, as the training scripts
  call it): per class, the first ``ceil(ratio * n)`` samples in that order are train, the rest test;
  the test set lists class 0's test samples first, then class 1's, and so on.

Nothing is downloaded; nothing is written next to the data.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FormatError

__all__ = ["Sample", "FolderDataset", "sorted_class_files", "front_split", "SPLITS"]

SPLITS = ("train", "test", "all")


@dataclass(frozen=True)
class Sample:
    events: np.ndarray  # EVENT_DTYPE, µs, in file order
    label: int          # index into the dataset's ``classes``
    name: str           # "<class folder>/<file stem>"


def sorted_class_files(folder: Path, extensions) -> list:
    """Files with one of ``extensions`` (lower-case, with the dot) in ``folder``, in ``DatasetFolder``'s
    order: names sorted as strings."""
    return sorted((f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in extensions),
                  key=lambda f: f.name)


def front_split(labels, ratio: float, num_classes: int):
    """spikingjelly's non-random ``split_to_train_test_set``: ``(train indices, test indices)``."""
    per_class = [[] for _ in range(num_classes)]
    for i, y in enumerate(labels):
        per_class[y].append(i)
    train, test = [], []
    for idx in per_class:
        pos = math.ceil(len(idx) * ratio)
        train.extend(idx[:pos])
        test.extend(idx[pos:])
    return train, test


class FolderDataset:
    """Samples of one split, in the public loaders' order. Subclasses set ``name``, ``classes``,
    ``sensor_size`` and ``layout`` and fill ``_entries`` with ``(path, label, name)``; ``_read(path)``
    returns a sample's events."""
    name = "folder"
    sensor_size: tuple = (0, 0)
    classes: tuple = ()
    layout = "original"

    def __init__(self, root, split: str = "test"):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
        self.split = split
        self.root = Path(root)
        self._entries = []

    # -- helpers for subclasses --------------------------------------------------------------
    def _scan(self, base: Path, extensions, class_index) -> list:
        """``(path, label, name)`` for every sample under ``base/<class>/``, classes in sorted folder
        order; ``class_index(folder name)`` gives the label (raising ``FormatError`` when unknown)."""
        entries = []
        folders = sorted((d for d in base.iterdir() if d.is_dir()), key=lambda d: d.name)
        for d in folders:
            label = class_index(d)
            for f in sorted_class_files(d, extensions):
                entries.append((f, label, f"{d.name}/{f.stem}"))
        if not entries:
            raise FormatError(f"{base}: no {'/'.join(extensions)} files in class folders")
        return entries

    def _split_front(self, entries, ratio: float) -> list:
        if self.split == "all":
            return entries
        train, test = front_split([e[1] for e in entries], ratio, len(self.classes))
        return [entries[i] for i in (train if self.split == "train" else test)]

    def _read(self, path: Path) -> np.ndarray:
        raise NotImplementedError

    # -- access -------------------------------------------------------------------------------
    def __len__(self):
        return len(self._entries)

    def __getitem__(self, i) -> Sample:
        path, label, name = self._entries[i]
        return Sample(self._read(path), label, name)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    @property
    def names(self):
        return [e[2] for e in self._entries]

    @property
    def labels(self):
        return [e[1] for e in self._entries]

    def __repr__(self):
        return (f"{type(self).__name__}({os.fspath(self.root)!r}, split={self.split!r}, layout={self.layout!r}, "
                f"n={len(self)})")
