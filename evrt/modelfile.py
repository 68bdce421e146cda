"""The bytes of a `.evrt` file: an uncompressed zip of `.npy` members (so `np.load` still reads it) whose
array data starts on a 64-byte boundary, so that loading maps the file instead of reading it.

Writing: each member is stored (never compressed); a padding record in the zip local header's extra
field moves the member's first byte so that, after the `.npy` header (which numpy pads to a multiple
of 64 bytes itself), the array data is 64-byte aligned in the file.

Reading: the zip central directory and every `.npy` header are parsed and checked first (numeric
dtype, declared size within the member, member within the file, no two members overlapping); only then
is an array made. A stored, aligned, native-endian member becomes a view of one private copy-on-write
map of the file (`mmap.ACCESS_COPY`): nothing is read or copied until a page is touched, processes
loading the same file share its pages, and the arrays are writable (a write would stay private), so
numba sees the same array types as for ordinary arrays. Anything else (a compressed, misaligned or
byte-swapped member, as in files from before this layout) is read into memory as before.
"""
from __future__ import annotations

import io
import mmap
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

ALIGN = 64
PAD_ID = 0xD935          # extra-field id of the padding record (the one Android's zipalign uses)
LOCAL_HEADER = 30        # fixed part of a zip local file header
MAX_NPY_HEADER = 1 << 16


class ModelFileError(ValueError):
    """A member that cannot be read; the caller adds the file and op name."""


# ------------------------------------------------------------------------------------------- writing

def npy_bytes_header(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(arr))
    return buf.getvalue()


# A member that deflates to less than this fraction of its size is stored compressed (and read with a
# copy): such arrays are tables of repeated values (e.g. a per-element threshold with one value per
# attention head), for which a few kB on disk beat a mappable MB.
COMPRESS_BELOW = 0.25
COMPRESS_MIN_BYTES = 1 << 16


def write(path, members: dict[str, np.ndarray]) -> None:
    """Write `name -> C-contiguous array` as `name.npy` members with 64-byte aligned data. The file is
    written beside `path` and renamed over it at the end: a reader never sees half a file, and a graph
    loaded from `path` (its arrays map the old file) can be saved back to `path`."""
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        _write(tmp, members)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write(path, members: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
        for name, arr in members.items():
            arr = np.ascontiguousarray(arr)
            head = npy_bytes_header(arr)
            info = zipfile.ZipInfo(name + ".npy")
            info.compress_type = zipfile.ZIP_STORED
            if arr.nbytes >= COMPRESS_MIN_BYTES and \
                    len(zlib.compress(arr.tobytes(), 1)) < COMPRESS_BELOW * arr.nbytes:
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, head + arr.tobytes())
                continue
            start = f.tell() + LOCAL_HEADER + len(info.filename.encode("utf-8")) + 4 + len(head)
            pad = -start % ALIGN
            info.extra = struct.pack("<HH", PAD_ID, pad) + b"\0" * pad
            zf.writestr(info, head + arr.tobytes())


# ------------------------------------------------------------------------------------------- reading

@dataclass
class Member:
    name: str
    shape: tuple
    dtype: np.dtype
    fortran: bool
    offset: int          # of the array data in the file (stored members)
    stored: bool


class ModelFile:
    """An open `.evrt` file: its zip directory, and a private map of its bytes for the arrays."""

    def __init__(self, path):
        self.path = path
        self._f = open(path, "rb")
        try:
            self.size = os.fstat(self._f.fileno()).st_size
            self.zip = zipfile.ZipFile(self._f)
            self.map = mmap.mmap(self._f.fileno(), 0, access=mmap.ACCESS_COPY) if self.size else None
        except BaseException:
            self._f.close()
            raise
        self._extents: list[tuple[int, int, str]] = []
        self.mapped_bytes = 0
        self.copied_bytes = 0

    def close(self) -> None:
        """Closes the file; the map lives on while arrays viewing it exist."""
        self.zip.close()
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def names(self) -> set[str]:
        return {n[:-4] for n in self.zip.namelist() if n.endswith(".npy")}

    def read_bytes(self, name: str) -> bytes:
        """A small record (the graph JSON), read through zipfile, CRC checked."""
        with self.zip.open(name + ".npy") as f:
            arr = np.lib.format.read_array(f, allow_pickle=False)
        return arr.tobytes()

    def header(self, name: str) -> Member:
        """Parse and check the member's zip and `.npy` headers; reads no array data."""
        info = self.zip.getinfo(name + ".npy")
        stored = info.compress_type == zipfile.ZIP_STORED
        if not stored:
            with self.zip.open(info) as f:
                shape, fortran, dtype = _npy_header(f)
            _check_dtype(dtype)
            _check_size(shape, dtype, info.file_size)
            return Member(name, shape, dtype, fortran, -1, False)
        start = info.header_offset
        if self.map is None or start + LOCAL_HEADER > self.size:
            raise ModelFileError(f"lies outside the file ({self.size} bytes; truncated?)")
        sig, n_name, n_extra = struct.unpack("<4s22xHH", self.map[start:start + LOCAL_HEADER])
        if sig != b"PK\x03\x04":
            raise ModelFileError("has a damaged zip header")
        data = start + LOCAL_HEADER + n_name + n_extra
        end = data + info.compress_size
        if info.file_size != info.compress_size or end > self.size:
            raise ModelFileError(f"runs past the end of the file (bytes {data}..{end} of {self.size}; truncated?)")
        for s, e, other in self._extents:
            if start < e and s < end:
                raise ModelFileError(f"overlaps member {other!r} (bytes {start}..{end})")
        self._extents.append((start, end, name))
        f = io.BytesIO(self.map[data:min(end, data + MAX_NPY_HEADER)])
        shape, fortran, dtype = _npy_header(f)
        _check_dtype(dtype)
        _check_size(shape, dtype, end - data - f.tell())
        return Member(name, shape, dtype, fortran, data + f.tell(), True)

    def array(self, m: Member) -> np.ndarray:
        """The member's array: a view of the map when stored, aligned and native-endian, else a copy."""
        n = int(np.prod(m.shape, dtype=np.int64))
        order = "F" if m.fortran else "C"
        if not m.stored:
            with self.zip.open(m.name + ".npy") as f:
                arr = np.lib.format.read_array(f, allow_pickle=False)
            self.copied_bytes += arr.nbytes
            return arr
        if m.dtype.isnative and m.offset % m.dtype.itemsize == 0:
            arr = np.frombuffer(self.map, m.dtype, count=n, offset=m.offset).reshape(m.shape, order=order)
            self.mapped_bytes += arr.nbytes
            return arr
        raw = self.map[m.offset:m.offset + n * m.dtype.itemsize]
        arr = np.frombuffer(raw, m.dtype, count=n).astype(m.dtype.newbyteorder("="))
        self.copied_bytes += arr.nbytes
        return arr.reshape(m.shape, order=order)


# the largest parameter array a model file may declare (elements): far above any real layer
MAX_PARAM_ELEMENTS = 1 << 28


def _npy_header(f):
    try:
        major, _ = np.lib.format.read_magic(f)
        if major == 1:
            return np.lib.format.read_array_header_1_0(f)
        if major == 2:
            return np.lib.format.read_array_header_2_0(f)
    except (ValueError, TypeError, OSError, EOFError, SyntaxError) as exc:
        raise ModelFileError(f"is not a readable array ({exc})") from None
    raise ModelFileError(f"is a .npy version {major} array, not supported")


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.hasobject or dtype.kind not in "biuf":
        raise ModelFileError(f"has dtype {dtype}; expected a real number array")


def _check_size(shape, dtype, available: int) -> None:
    n = int(np.prod(shape, dtype=np.float64))
    if n > MAX_PARAM_ELEMENTS or n * dtype.itemsize > available:
        raise ModelFileError(f"declares shape {shape} ({n * dtype.itemsize} bytes) but the file holds "
                             f"{available} bytes for it")
