"""``.npz`` state dicts: one array per state-dict key, read with ``allow_pickle=False``.

An optional ``__args__`` entry (a 0-d string array holding a JSON object) becomes ``Checkpoint.args``;
other ``__name__`` entries that are 0-d become ``extra``.
"""
from __future__ import annotations

import json
import zipfile

import numpy as np

from ..errors import CheckpointError
from . import Checkpoint, strip_module_prefix
from .pth import check_zip_bomb


def looks_like_npz(path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        return bool(names) and all(n.endswith(".npy") for n in names)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError):
        return False


def load(path) -> Checkpoint:
    path = str(path)
    state, extra, args = {}, {}, None
    try:
        with zipfile.ZipFile(path) as zf:   # np.load would inflate a zip bomb before we see it
            for info in zf.infolist():
                check_zip_bomb(path, info)
        with np.load(path, allow_pickle=False) as z:
            for k in z.files:
                a = z[k]
                if k.startswith("__") and k.endswith("__") and a.ndim == 0:
                    v = a.item()
                    if k == "__args__":
                        try:
                            args = json.loads(v)
                        except (TypeError, ValueError):
                            raise CheckpointError(f"{path}: __args__ is not a JSON object") from None
                        if not isinstance(args, dict):
                            raise CheckpointError(f"{path}: __args__ is not a JSON object")
                    else:
                        extra[k.strip("_")] = v
                    continue
                state[k] = np.ascontiguousarray(a)
    except CheckpointError:
        raise
    except MemoryError:
        raise CheckpointError(f"{path}: an array header claims more memory than is available") from None
    except Exception as e:
        # ValueError covers object arrays refused by allow_pickle=False; numpy's header parser and zipfile
        # raise SyntaxError, TokenError, NotImplementedError, ... on damaged bytes
        raise CheckpointError(f"{path}: cannot read npz checkpoint ({type(e).__name__}: {str(e)[:120]})") from None
    if not state:
        raise CheckpointError(f"{path}: npz file holds no arrays")
    return Checkpoint(state=strip_module_prefix(state, path), args=args, extra=extra, container="npz", path=path)
