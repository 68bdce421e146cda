"""NumPy containers: ``.npz`` with columns and ``.npy`` with one structured event array.

``.npz``: arrays ``t, x, y`` and ``p`` (or ``on``), µs timestamps; optional ``sensor_size`` = (width,
height) and ``labels`` (structured ``label, start_us, end_us`` or an integer (K, 3) array). This is
also what spikingjelly's ``events_np`` files hold. ``.npy``: an ``EVENT_DTYPE`` or tonic ``x, y, p, t``
structured array. Files are loaded with ``allow_pickle=False``: a recording must never run code.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import EventError, FormatError
from ..events import EVENT_DTYPE, as_events
from .recording import Recording, as_labels

__all__ = ["read_npz", "write_npz", "read_npy", "write_npy"]


def _err(path, msg):
    return FormatError(f"{path}: {msg}")


def read_npz(path) -> Recording:
    path = os.fspath(path)
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise _err(path, "not an .npz archive (it holds a single array, as a .npy file does)")
        with z:
            data = {k: z[k] for k in z.files}
    except FormatError:
        raise
    except MemoryError:
        raise _err(path, "an array header claims more memory than is available") from None
    except Exception as e:  # numpy's header parser can raise SyntaxError, TokenError, ... on damaged bytes
        raise _err(path, f"cannot read as .npz ({type(e).__name__}: {str(e)[:120]})") from None
    if "frames" in data and "t" not in data:
        raise _err(path, "holds 'frames' (already framed data), not events; evrt needs t, x, y, p")
    missing = [k for k in ("t", "x", "y") if k not in data]
    if missing or not ({"p", "on"} & data.keys()):
        raise _err(path, f"missing event arrays {missing + ([] if {'p', 'on'} & data.keys() else ['p (or on)'])};"
                         f" found {sorted(data)}")
    try:
        ev = as_events(data)
    except EventError as e:
        raise _err(path, str(e)) from None
    sensor = None
    if "sensor_size" in data:
        s = np.asarray(data["sensor_size"]).ravel()
        if len(s) < 2 or s.dtype.kind not in "iu" or s.min() < 1:
            raise _err(path, f"sensor_size must hold (width, height) positive integers, got {s.tolist()}")
        sensor = (int(s[0]), int(s[1]))
    try:
        labels = as_labels(data.get("labels"))
    except ValueError as e:
        raise _err(path, f"labels: {e}") from None
    return Recording(ev, sensor, path, "npz", labels)


def write_npz(path, events, sensor_size=None, labels=None, compressed: bool = True) -> None:
    """Write events as ``t, x, y, p`` columns (p as uint8), plus sensor size and labels if given."""
    ev = as_events(events)
    arrays = {"t": ev["t"], "x": ev["x"], "y": ev["y"], "p": ev["on"].astype(np.uint8)}
    if sensor_size is not None:
        arrays["sensor_size"] = np.asarray(sensor_size, np.int64)
    if labels is not None:
        arrays["labels"] = as_labels(labels)
    with open(os.fspath(path), "wb") as f:  # an open file keeps numpy from appending '.npz'
        (np.savez_compressed if compressed else np.savez)(f, **arrays)


def read_npy(path, sensor_size=None) -> Recording:
    path = os.fspath(path)
    try:
        a = np.load(path, allow_pickle=False)
    except MemoryError:
        raise _err(path, "the array header claims more memory than is available") from None
    except Exception as e:  # numpy's header parser can raise SyntaxError, TokenError, ... on damaged bytes
        raise _err(path, f"cannot read as .npy ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(a, np.ndarray) or a.dtype.names is None:
        hint = (" (tonic's DVSGesture (N, 4) float files are in ms: read them with "
                "evrt.datasets.dvsgesture.read_tonic_npy)" if getattr(a, "ndim", 0) == 2 else "")
        raise _err(path, f"expected a structured event array (EVENT_DTYPE or tonic's x, y, p, t), got "
                         f"{getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}{hint}")
    try:
        ev = as_events(a.reshape(-1) if a.ndim == 0 else a)
    except EventError as e:
        raise _err(path, str(e)) from None
    return Recording(ev, sensor_size, path, "npy", None)


def write_npy(path, events) -> None:
    """Write an ``EVENT_DTYPE`` array (no pickle, readable by ``np.load`` anywhere)."""
    with open(os.fspath(path), "wb") as f:
        np.save(f, np.ascontiguousarray(as_events(events), dtype=EVENT_DTYPE))
