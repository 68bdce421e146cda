"""Labelled event data sets (readers only; nothing is downloaded). docs/DATASETS.md describes each
layout, class order and split."""
from __future__ import annotations

from .dvsgesture import CLASS_NAMES, SPIKINGJELLY_ORDER, DVSGesture, Sample, class_names, read_tonic_npy

__all__ = ["CLASS_NAMES", "SPIKINGJELLY_ORDER", "DVSGesture", "Sample", "class_names", "read_tonic_npy",
           "DATASETS", "open_dataset", "find_dataset", "describe_dataset"]

# name -> the split names it has
DATASETS = {"dvsgesture": ("train", "test"), "cifar10dvs": ("train", "test", "all"),
            "nmnist": ("train", "test", "all"), "ncaltech101": ("train", "test", "all")}


def open_dataset(name: str, root, split: str = "test", **options):
    """The dataset ``name`` under ``root`` (any of its supported layouts), one split. Every returned
    object has ``classes``, ``sensor_size`` (W, H), ``layout``, ``len()`` and items with ``.events``,
    ``.label`` (index into ``classes``) and ``.name``. ``options``: DVSGesture's ``order``."""
    from ..errors import EvrtError

    key = str(name).lower()
    if key not in DATASETS:
        raise EvrtError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    if split not in DATASETS[key]:
        raise EvrtError(f"{key} has no {split!r} split (it has: {', '.join(DATASETS[key])})")
    if key == "dvsgesture":
        ds = DVSGesture(root, split=split, order=options.get("order", "recording"), label_order="gesture")
        ds.sensor_size = (128, 128)
        return ds
    if key == "cifar10dvs":
        from .cifar10dvs import CIFAR10DVS
        return CIFAR10DVS(root, split)
    if key == "nmnist":
        from .nmnist import NMNIST
        return NMNIST(root, split)
    from .ncaltech101 import NCaltech101
    return NCaltech101(root, split)


def find_dataset(root) -> str | None:
    """The name of the first dataset whose layout ``root`` matches (None when none does)."""
    from ..errors import FormatError

    for name, splits in DATASETS.items():
        for split in splits[:2]:
            try:
                open_dataset(name, root, split)
                return name
            except (FormatError, KeyError):
                continue
    return None


def describe_dataset(name: str, root) -> dict:
    """What ``evrt info DIR`` prints for a dataset folder: layout, sensor, classes, samples per split
    and per class (from the folder listing; no recording is read)."""
    from ..errors import FormatError

    out = {"dataset": name, "root": str(root), "layout": None, "sensor_size": None, "classes": None, "splits": {}}
    for split in DATASETS[name][:2]:
        try:
            ds = open_dataset(name, root, split)
        except FormatError as e:
            out["splits"][split] = {"error": str(e)}
            continue
        counts = [0] * len(ds.classes)
        for y in ds.labels:
            counts[y] += 1
        out.update(layout=ds.layout, sensor_size=list(ds.sensor_size), classes=list(ds.classes))
        out["splits"][split] = {"samples": len(ds), "per_class": dict(zip(ds.classes, counts))}
    return out
