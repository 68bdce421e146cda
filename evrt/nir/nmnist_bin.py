"""A minimal N-MNIST `.bin` decoder for the NIR example and tests (40-bit events: x, y, polarity bit,
23-bit µs timestamp; y == 240 marks a timestamp-overflow record that adds 2**13 µs to every later
event, as tonic's reader does). Replaced by the evrt.formats reader when that lands."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FormatError
from ..events import make_events


def read_nmnist_bin(path) -> np.ndarray:
    raw = np.fromfile(Path(path), dtype=np.uint8)
    if raw.size % 5:
        raise FormatError(f"{path}: {raw.size} bytes is not a whole number of 5-byte N-MNIST events")
    r = raw.reshape(-1, 5).astype(np.int64)
    x, y = r[:, 0], r[:, 1]
    on = (r[:, 2] >> 7) & 1
    t = ((r[:, 2] & 127) << 16) | (r[:, 3] << 8) | r[:, 4]
    over = y == 240
    t = t + np.cumsum(over) * 2 ** 13
    keep = ~over
    return make_events(t[keep], x[keep], y[keep], on[keep].astype(bool))


def nmnist_samples(root):
    """[(path, label)] of `root/<digit>/<id>.bin`, sorted by id."""
    items = [(p, int(p.parent.name)) for p in Path(root).glob("[0-9]/*.bin")]
    return sorted(items, key=lambda it: it[0].stem)
