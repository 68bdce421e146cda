"""``.safetensors`` reader (our own; the ``safetensors`` package is not a runtime dependency).

Format: u64 little-endian header length N, N bytes of JSON ``{name: {dtype, shape, data_offsets:
[begin, end]}, "__metadata__": {str: str}}``, then the data block; offsets are relative to the data
block. Every entry is validated (known dtype, byte count = prod(shape)·itemsize, inside the file, no two
tensors overlapping) before any tensor is built. ``__metadata__`` goes to ``Checkpoint.extra``; if it holds
an ``args`` entry that parses as a JSON object, that becomes ``Checkpoint.args``.
BF16 tensors come back as float32 (exact widening; NumPy has no bfloat16).
"""
from __future__ import annotations

import json
import os

import numpy as np

from ..errors import CheckpointError
from . import Checkpoint, strip_module_prefix

_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
           "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8"}
_MAX_HEADER = 100 << 20


_MAX_DIMS = 32  # NumPy's own limit is 64; no state-dict tensor has more than a handful


def looks_like_safetensors(head: bytes) -> bool:
    return len(head) >= 9 and int.from_bytes(head[:8], "little") < _MAX_HEADER and head[8:9] == b"{"


def _no_dupes(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise CheckpointError(f"duplicate key {k!r} in the safetensors header")
        d[k] = v
    return d


def load(path) -> Checkpoint:
    path = str(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: too short for a safetensors file ({size} bytes)")
            n = int.from_bytes(head, "little")
            if n > _MAX_HEADER or 8 + n > size:
                raise CheckpointError(f"{path}: safetensors header length {n} is invalid for a {size}-byte file")
            raw_header = f.read(n)
            data_start = 8 + n
            try:
                header = json.loads(raw_header.decode("utf-8"), object_pairs_hook=_no_dupes)
            except CheckpointError as e:
                raise CheckpointError(f"{path}: {e}") from None
            except (UnicodeDecodeError, ValueError) as e:
                raise CheckpointError(f"{path}: safetensors header is not valid JSON ({str(e)[:120]})") from None
            except RecursionError:
                raise CheckpointError(f"{path}: safetensors header nests too deeply") from None
            if not isinstance(header, dict):
                raise CheckpointError(f"{path}: safetensors header is not a JSON object")
            meta = header.pop("__metadata__", None) or {}
            if not isinstance(meta, dict):
                raise CheckpointError(f"{path}: safetensors __metadata__ is not an object")
            entries = [_entry(path, k, v, size - data_start) for k, v in header.items()]
            spans = sorted((b, e, k) for k, _, _, b, e in entries if e > b)
            for (b0, e0, k0), (b1, e1, k1) in zip(spans, spans[1:]):
                if b1 < e0:
                    raise CheckpointError(f"{path}: tensors {k0!r} and {k1!r} overlap in the data block")
            state = {}
            for name, dt, shape, b, e in entries:
                f.seek(data_start + b)
                buf = f.read(e - b)
                if len(buf) != e - b:
                    raise CheckpointError(f"{path}: tensor {name!r} is truncated")
                state[name] = _array(buf, dt, shape)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read safetensors file: {e.strerror or e}") from None
    args = None
    if isinstance(meta.get("args"), str):
        try:
            a = json.loads(meta["args"])
            args = a if isinstance(a, dict) else None
        except (ValueError, RecursionError):
            pass
    return Checkpoint(state=strip_module_prefix(state, path), args=args, extra=dict(meta),
                      container="safetensors", path=path)


def _entry(path, name, v, data_size):
    if not isinstance(v, dict) or not {"dtype", "shape", "data_offsets"} <= set(v):
        raise CheckpointError(f"{path}: safetensors entry {name!r} lacks dtype/shape/data_offsets")
    dt = v["dtype"]
    if dt not in _DTYPES:
        raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dt!r}")
    shape, offs = v["shape"], v["data_offsets"]
    if not (isinstance(shape, list) and len(shape) <= _MAX_DIMS and all(type(s) is int and s >= 0 for s in shape)):
        raise CheckpointError(f"{path}: tensor {name!r} has an invalid shape {shape!r:.80}")
    if not (isinstance(offs, list) and len(offs) == 2 and all(type(o) is int for o in offs)):
        raise CheckpointError(f"{path}: tensor {name!r} has invalid data_offsets {offs!r:.80}")
    b, e = offs
    if not 0 <= b <= e <= data_size:
        raise CheckpointError(f"{path}: tensor {name!r} data_offsets {offs} lie outside the "
                              f"{data_size}-byte data block")
    need = int(np.prod(shape, dtype=object)) * np.dtype(_DTYPES[dt]).itemsize
    if e - b != need:
        raise CheckpointError(f"{path}: tensor {name!r} of shape {shape} {dt} needs {need} bytes, "
                              f"data_offsets give {e - b}")
    return name, dt, tuple(shape), b, e


def _array(buf, dt, shape):
    a = np.frombuffer(buf, dtype=_DTYPES[dt]).reshape(shape)
    if dt == "BF16":
        return (a.astype(np.uint32) << 16).view(np.float32)
    if dt == "BOOL":
        return a != 0
    return a.astype(a.dtype.newbyteorder("="), copy=True)
