"""N-MNIST: the 70,000 MNIST digits recorded by an ATIS sensor making three saccades (34 x 34 pixels).

Layout (``root`` may be the folder itself, tonic's ``NMNIST/`` folder above it, or spikingjelly's root
with ``extract/``): the official download's ``Train/<digit>/<NNNNN>.bin`` (60,000) and
``Test/<digit>/<NNNNN>.bin`` (10,000), 40-bit ATIS events in file order. Classes ``"0"`` .. ``"9"``
(the digit folders, sorted). Split: the official one, the ``Train`` and ``Test`` folders; tonic and
spikingjelly both use it.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import FormatError
from .folders import FolderDataset

__all__ = ["NMNIST", "CLASSES", "SENSOR_SIZE"]

CLASSES = tuple(str(d) for d in range(10))
SENSOR_SIZE = (34, 34)
_FOLDERS = {"train": ("Train",), "test": ("Test",), "all": ("Train", "Test")}


def _find(root: Path) -> Path:
    for d in (root, root / "NMNIST", root / "N-MNIST", root / "extract"):
        if (d / "Train").is_dir() or (d / "Test").is_dir():
            return d
    raise FormatError(f"{root}: no N-MNIST Train/ or Test/ folder (the official download's layout)")


class NMNIST(FolderDataset):
    """``NMNIST(root, split='test'|'train'|'all')``: the official split, digit folders in order."""
    name = "nmnist"
    classes = CLASSES
    sensor_size = SENSOR_SIZE

    def __init__(self, root, split: str = "test"):
        super().__init__(root, split)
        self.base = _find(self.root)
        entries = []
        for sub in _FOLDERS[split]:
            d = self.base / sub
            if not d.is_dir():
                raise FormatError(f"{d}: missing (needed for the {split} split)")
            entries += [(p, y, f"{sub}/{n}") for p, y, n in self._scan(d, (".bin",), self._class)]
        self._entries = entries

    @staticmethod
    def _class(folder: Path) -> int:
        if folder.name not in CLASSES:
            raise FormatError(f"{folder}: not an N-MNIST digit folder (0..9)")
        return int(folder.name)

    def _read(self, path: Path):
        from ..formats.atis_bin import read_atis_bin
        return read_atis_bin(path).events
