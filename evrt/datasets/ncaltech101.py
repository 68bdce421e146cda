"""N-Caltech101: Caltech101 images recorded by an ATIS sensor making three saccades.

Layout (``root`` may be the folder itself or a parent: the download's ``Caltech101/``, spikingjelly's
``extract/Caltech101/``, tonic's ``NCALTECH101/Caltech101/``): ``Caltech101/<class>/image_NNNN.bin``,
40-bit ATIS events in file order. Image sizes vary; the frame is 240 x 180 (W x H) as spikingjelly's
``NCaltech101`` integrates it. (tonic additionally shifts each sample so its smallest x and y are 0;
evrt keeps the recorded coordinates, as spikingjelly does.)

Classes: the class folders found, sorted as Python strings (upper case first: ``BACKGROUND_Google``,
``Faces_easy``, ``Leopards``, ``Motorbikes``, then ``accordion`` ...), which is how ``DatasetFolder`` and
tonic number them; a tree with only some of the folders therefore numbers its classes differently from
the full dataset. Split: there is no official one; ``train``/``test`` apply spikingjelly's
``split_to_train_test_set(0.9, ...)`` rule (front 90 % of each class in sorted file order), the split
spikingjelly-based training scripts use; ``all`` takes every sample.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import FormatError
from .folders import FolderDataset

__all__ = ["NCaltech101", "SENSOR_SIZE", "TRAIN_RATIO"]

SENSOR_SIZE = (240, 180)
TRAIN_RATIO = 0.9


def _find(root: Path) -> Path:
    for d in (root / "Caltech101", root / "extract" / "Caltech101", root / "NCALTECH101" / "Caltech101"):
        if d.is_dir():
            return d
    # the class folders themselves: recognised by the download's file names, image_NNNN.bin
    if root.is_dir() and any(f.suffix.lower() == ".bin" and f.name.startswith("image_")
                             for d in root.iterdir() if d.is_dir() for f in d.iterdir()):
        return root
    raise FormatError(f"{root}: no N-Caltech101 Caltech101/<class>/*.bin folders")


class NCaltech101(FolderDataset):
    """``NCaltech101(root, split='test'|'train'|'all')``."""
    name = "ncaltech101"
    sensor_size = SENSOR_SIZE

    def __init__(self, root, split: str = "test"):
        super().__init__(root, split)
        self.base = _find(self.root)
        self.classes = tuple(sorted(d.name for d in self.base.iterdir() if d.is_dir()))
        index = {c: i for i, c in enumerate(self.classes)}
        self._entries = self._split_front(self._scan(self.base, (".bin",), lambda d: index[d.name]), TRAIN_RATIO)

    def _read(self, path: Path):
        from ..formats.atis_bin import read_atis_bin
        return read_atis_bin(path).events
