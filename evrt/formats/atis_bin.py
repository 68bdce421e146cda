"""N-MNIST / N-Caltech101 ``.bin`` files (also ``.bs2``): 40-bit ATIS records, no header.

Each record is five bytes: x (u8), y (u8), then 24 bits big-endian whose top bit is the polarity
(1 = ON) and whose low 23 bits are the timestamp in µs. A record with y == 240 is a timestamp-overflow
marker, not an event: every later event gets 2**13 µs more (see ``evrt.kernels.decode``). The files do
not state the sensor size: N-MNIST digits span 34 x 34 pixels, N-Caltech101 images up to 240 x 180.
"""
from __future__ import annotations


import numpy as np

from ..errors import FormatError
from ..events import EVENT_DTYPE
from .recording import Recording, read_file_bytes

__all__ = ["read_atis_bin", "decode_atis_bin", "EXTENSIONS", "RECORD_BYTES"]

EXTENSIONS = (".bin", ".bs2")
RECORD_BYTES = 5


def decode_atis_bin(data, source="<bytes>") -> np.ndarray:
    """Decode a whole ``.bin`` file's bytes. A length that is not a multiple of 5 raises
    ``FormatError`` naming the byte where the incomplete record starts."""
    from ..kernels.decode import decode_atis40

    buf = np.frombuffer(data, np.uint8)
    n, rest = divmod(len(buf), RECORD_BYTES)
    if rest:
        raise FormatError(f"{source}: byte {n * RECORD_BYTES}: incomplete 40-bit event record ({rest} of 5 "
                          f"bytes; a .bin file is a whole number of 5-byte records)")
    out = np.empty(n, EVENT_DTYPE)
    k = decode_atis40(buf, out)
    return out[:k]


def read_atis_bin(path) -> Recording:
    """Read an N-MNIST / N-Caltech101 ``.bin`` file; the sensor size is not in the file (None)."""
    path, data = read_file_bytes(path)
    if not data:
        raise FormatError(f"{path}: the file is empty")
    return Recording(decode_atis_bin(data, path), None, path, "atis-bin", None)
