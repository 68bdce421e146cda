"""CIFAR10-DVS: 10,000 DVS128 recordings (1,000 per class) of CIFAR-10 images moved on a monitor.

Layouts (``root`` may be the folder itself or a parent of it):

* **original** (the figshare download, ten zips, one per class, extracted side by side; also
  spikingjelly's ``extract/`` folder): ``<class>/cifar10_<class>_<i>.aedat``, jAER AEDAT 2.0.
  Events are decoded as spikingjelly's ``CIFAR10DVS`` does, which is what Spikformer's
  ``cifar10dvs/train.py`` trained on: the DVS128 address bits with the image transposed
  (x = 127 - y_raw, y = 127 - x_raw) and ON when the polarity bit is 0; file order kept.
* **tonic** (tonic's ``CIFAR10DVS``, the AEDAT4 re-release): ``CIFAR10DVS/<class>/*.aedat4``, events
  read as stored in the file.

Classes: airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck (the folder names sorted;
spikingjelly's and tonic's order). Split: spikingjelly's front 90 % / last 10 % of each class in
sorted-file-name order (``split_to_train_test_set(0.9, dataset, 10)`` in Spikformer's script), so the
test set is the 100 recordings of each class whose names sort last as strings (numbers 909, 91,
910, ..., 999). The dataset has no official split.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import FormatError
from .folders import FolderDataset

__all__ = ["CIFAR10DVS", "CLASSES", "SENSOR_SIZE", "TRAIN_RATIO"]

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SENSOR_SIZE = (128, 128)
TRAIN_RATIO = 0.9
_EXT = {"original": (".aedat",), "tonic": (".aedat4",)}


def _find(root: Path):
    """('original' | 'tonic', folder holding the class folders)."""
    for d in (root, root / "CIFAR10DVS", root / "CIFAR10-DVS", root / "extract"):
        if not d.is_dir():
            continue
        classes = [d / c for c in CLASSES if (d / c).is_dir()]
        for layout, exts in _EXT.items():
            if any(f.suffix.lower() in exts for c in classes for f in c.iterdir()):
                return layout, d
    raise FormatError(f"{root}: no CIFAR10-DVS class folders (airplane/, ..., truck/) holding .aedat "
                      f"(original) or .aedat4 (tonic) files")


class CIFAR10DVS(FolderDataset):
    """``CIFAR10DVS(root, split='test'|'train'|'all')``: samples in spikingjelly's order."""
    name = "cifar10dvs"
    classes = CLASSES
    sensor_size = SENSOR_SIZE

    def __init__(self, root, split: str = "test"):
        super().__init__(root, split)
        self.layout, self.base = _find(self.root)
        self._entries = self._split_front(self._scan(self.base, _EXT[self.layout], self._class), TRAIN_RATIO)

    def _class(self, folder: Path) -> int:
        if folder.name not in CLASSES:
            raise FormatError(f"{folder}: not a CIFAR10-DVS class folder (classes: {', '.join(CLASSES)})")
        return CLASSES.index(folder.name)

    def _read(self, path: Path):
        if self.layout == "original":
            from ..formats.aedat2 import read_aedat2
            # spikingjelly reads every record with the DVS128 masks, whatever the header says
            return read_aedat2(path, layout="dvs128", orientation="spikingjelly").events
        from ..formats import read_recording
        return read_recording(path).events
