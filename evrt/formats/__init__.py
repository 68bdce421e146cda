"""Recording readers. ``read_recording(path)`` picks the reader by the file's magic bytes, falling back
to its extension, and returns a ``Recording``:

* AEDAT 3.1 (``#!AER-DAT3.1``; DVS128 Gesture) — ``aedat31``; labels from ``<stem>_labels.csv`` beside
  it when present (csv class 1..11 -> label 0..10, the gesture id)
* AEDAT 4 (``#!AER-DAT4.0``) — ``aedat4`` (uncompressed and LZ4 decoded by evrt, ZSTD by the ``aedat`` package)
* AEDAT 2.0 / 1.0 (``#!AER-DAT2.0``; jAER, CIFAR10-DVS) — ``aedat2`` (camera and geometry from the
  ``# AEChip:`` header line)
* N-MNIST / N-Caltech101 40-bit ATIS ``.bin`` / ``.bs2`` (no header: chosen by extension) — ``atis_bin``
* Prophesee RAW EVT 2.0 / EVT 3.0 and DAT CD files (``%`` header) — ``prophesee`` ('evt2', 'evt3', 'dat')
* ``.npz`` (t, x, y, p columns) and ``.npy`` (structured event array) — ``npz``

Readers are imported lazily so that a missing optional dependency only matters for its format.
"""
from __future__ import annotations

import os
import re

from ..errors import FormatError
from .aedat4_writer import AEDAT4Writer, write_aedat4
from .recording import LABELS_DTYPE, Recording, as_labels, read_file_bytes

__all__ = ["read_recording", "detect_format", "Recording", "LABELS_DTYPE", "as_labels", "SUPPORTED",
           "write_aedat4", "AEDAT4Writer"]

SUPPORTED = ("AEDAT 3.1 (.aedat, '#!AER-DAT3.1')", "AEDAT 4 (.aedat4, '#!AER-DAT4.0')",
             "AEDAT 2.0/1.0 (jAER, '#!AER-DAT2.0')", "N-MNIST/N-Caltech101 .bin (40-bit ATIS events)",
             "Prophesee RAW EVT 2.0/3.0 (.raw) and DAT (.dat)",
             ".npz (t, x, y, p arrays)", ".npy (structured event array)")

_MAGICS = ((b"#!AER-DAT3.1", "aedat3.1"), (b"#!AER-DAT4.0", "aedat4"), (b"PK\x03\x04", "npz"),
           (b"PK\x05\x06", "npz"), (b"\x93NUMPY", "npy"), (b"#!AER-DAT2.", "aedat2"), (b"#!AER-DAT1.", "aedat2"))
_EXTENSIONS = {".aedat4": "aedat4", ".npz": "npz", ".npy": "npy"}
# headerless formats: the extension is all there is to go on
_HEADERLESS = {".bin": "atis-bin", ".bs2": "atis-bin"}


def detect_format(path) -> str:
    """'aedat3.1', 'aedat4', 'aedat2', 'atis-bin', 'evt2', 'evt3', 'dat', 'npz' or 'npy';
    ``FormatError`` for anything else."""
    path, head = read_file_bytes(path, 16)
    for magic, name in _MAGICS:
        if head.startswith(magic):
            return name
    if head.startswith(b"%"):  # Prophesee: the header names the encoding
        from .prophesee import parse_header
        with open(path, "rb") as f:
            kind = parse_header(f.read(1 << 20), path)["kind"]
        if kind in ("evt2", "evt3", "dat"):
            return kind
        why = (f"whose encoding {kind!r} is not supported (EVT 2.0, EVT 3.0 and DAT are)" if kind else
               "that names no event encoding (no '% evt', '% format' or DAT '% Version' line)")
        raise FormatError(f"{path}: a '%' (Prophesee) header {why}")
    if head.startswith(b"#!AER-DAT"):
        version = head[9:].split(b"\r")[0].split(b"\n")[0].decode("ascii", "replace")
        raise FormatError(f"{path}: AEDAT {version} is not supported; supported formats: {', '.join(SUPPORTED)}")
    if not head:
        raise FormatError(f"{path}: the file is empty")
    ext = os.path.splitext(path)[1].lower()
    if ext in _HEADERLESS:
        return _HEADERLESS[ext]
    if ext in _EXTENSIONS:  # right name, wrong content: say what the name promised
        raise FormatError(f"{path}: named {ext} but its first bytes {head[:12]!r} are not a {_EXTENSIONS[ext]} "
                          f"file; supported formats: {', '.join(SUPPORTED)}")
    raise FormatError(f"{path}: unknown recording format (first bytes {head[:12]!r}); "
                      f"supported formats: {', '.join(SUPPORTED)}")


def _aedat31_sensor(path):
    """(128, 128) when the header names a DVS128 source; AEDAT 3.1 headers carry no size otherwise."""
    with open(path, "rb") as f:
        head = f.read(4096)
    end = head.find(b"#!END-HEADER")
    text = head[:end if end >= 0 else len(head)].decode("ascii", "replace")
    if re.search(r"^#Source \d+: DVS128\b", text, re.M):
        return (128, 128)
    return None


def _read_aedat31(path) -> Recording:
    from . import aedat31  # the colleague-owned reader; imported here so npz users need no numba compile

    ev = aedat31.read_aedat31(path)
    labels = None
    stem = path[:-len(".aedat")] if path.lower().endswith(".aedat") else os.path.splitext(path)[0]
    csv = stem + "_labels.csv"
    if os.path.isfile(csv):
        raw = aedat31.read_labels_csv(csv)
        labels = as_labels(raw)
        labels["label"] -= 1  # csv class ids are 1-based; label = gesture id 0..10 (SEMANTICS.md)
    size = _aedat31_sensor(path)
    return Recording(ev, size, path, "aedat3.1", labels, "DVS128" if size else None)


def read_recording(path, format: str | None = None) -> Recording:
    """Read any supported recording; ``format`` (a name ``detect_format`` returns) skips detection."""
    path = os.fspath(path)
    fmt = format or detect_format(path)
    if fmt == "aedat3.1":
        return _read_aedat31(path)
    if fmt == "aedat4":
        from .aedat4 import read_aedat4
        return read_aedat4(path)
    if fmt == "aedat2":
        from .aedat2 import read_aedat2
        return read_aedat2(path)
    if fmt == "atis-bin":
        from .atis_bin import read_atis_bin
        return read_atis_bin(path)
    if fmt in ("evt2", "evt3", "dat"):
        from .prophesee import read_prophesee
        rec = read_prophesee(path)
        if rec.format != fmt:
            raise FormatError(f"{path}: asked for {fmt} but the header says {rec.format}")
        return rec
    if fmt == "npz":
        from .npz import read_npz
        return read_npz(path)
    if fmt == "npy":
        from .npz import read_npy
        return read_npy(path)
    raise FormatError(f"{path}: unknown format {fmt!r}; supported formats: {', '.join(SUPPORTED)}")
