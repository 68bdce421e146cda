"""Load trained checkpoints without torch: ``load_checkpoint(path) -> Checkpoint``.

Containers (chosen by content, not by file name):

* ``.pth`` / ``.pth.tar`` written by ``torch.save`` (zip format, torch >= 1.6) — see ``pth.py``;
  unpickled with an allow-list, never with ``pickle.load``.
* ``.safetensors`` — our own reader (``safetensors.py``), no dependency on the package.
* ``.npz`` — ``np.load(allow_pickle=False)``.

A checkpoint is untrusted input: every failure is a ``CheckpointError`` naming the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import CheckpointError

__all__ = ["Checkpoint", "load_checkpoint", "CheckpointError", "STATE_KEYS"]

# Where the state dict lives, in order of preference (docs/SEMANTICS.md "Checkpoints": Spikformer/SpikingResformer save
# 'model', timm's saver 'state_dict', plus 'state_dict_ema' when EMA was on). The raw weights are
# preferred over EMA because they are what the reference scripts evaluate.
STATE_KEYS = ("model", "state_dict", "state_dict_ema")

_SCALARS = (bool, int, float, str, type(None))


@dataclass
class Checkpoint:
    state: dict[str, np.ndarray]        # tensors by state-dict key, 'module.' stripped; read-only (.pth: views
                                        # sharing the file's storages)
    args: dict | None                   # the saved argparse.Namespace / 'args' dict, as a plain dict
    extra: dict                         # small plain top-level values (epoch, arch, metric, metadata)
    container: str                      # "pth-zip:model", "safetensors", "npz", ...
    path: str
    state_key: str | None = None        # top-level key the state came from (None: top level / flat file)
    skipped: list[str] = field(default_factory=list)  # entries not loaded into state/args/extra

    def __repr__(self) -> str:
        return (f"Checkpoint({self.path!r}, container={self.container!r}, tensors={len(self.state)}, "
                f"args={'yes' if self.args else 'no'}, extra={sorted(self.extra)})")


def load_checkpoint(path) -> Checkpoint:
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read checkpoint: {e.strerror or e}") from None
    if not head:
        raise CheckpointError(f"{path}: empty file")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        from . import npz, pth
        # Both torch files and npz are zips; torch files hold '<root>/data.pkl', npz only '*.npy'.
        if not pth.looks_like_torch_zip(path) and (path.endswith(".npz") or npz.looks_like_npz(path)):
            return npz.load(path)
        return pth.load(path)   # loads it, or says why this zip is not a torch checkpoint
    from . import safetensors
    if safetensors.looks_like_safetensors(head) or path.endswith(".safetensors"):
        return safetensors.load(path)
    from . import pth
    return pth.load(path)   # gives the legacy-format / not-a-checkpoint diagnosis


# ---- shared helpers for the container readers -------------------------------------------------

def strip_module_prefix(state: dict, path: str) -> dict:
    """DDP-wrapped models save 'module.<key>'; the runtime wants the bare module path."""
    out: dict[str, np.ndarray] = {}
    for k, v in state.items():
        name = k[len("module."):] if k.startswith("module.") else k
        if name in out:
            raise CheckpointError(f"{path}: state key {k!r} collides with {name!r} after stripping 'module.'")
        out[name] = v
    return out


def plain_value(v, depth: int = 0):
    """v as a plain Python value (scalars, short lists/tuples/sets/dicts of them, NumPy scalars -> Python);
    raises _NotPlain for anything else (tensors, optimizer states, deep nesting)."""
    if isinstance(v, _SCALARS):
        return v
    if depth >= 3:
        raise _NotPlain
    if isinstance(v, (list, tuple)):
        if len(v) > 256:
            raise _NotPlain
        return type(v)(plain_value(x, depth + 1) for x in v)
    if isinstance(v, (set, frozenset)):
        return type(v)(plain_value(x, depth + 1) for x in v)
    if isinstance(v, dict):
        if len(v) > 256 or not all(isinstance(k, _SCALARS) for k in v):
            raise _NotPlain
        return {k: plain_value(x, depth + 1) for k, x in v.items()}
    if isinstance(v, np.generic) and v.dtype.kind in "biuf":
        return v.item()
    raise _NotPlain


class _NotPlain(Exception):
    pass


def is_plain(v) -> bool:
    try:
        plain_value(v)
        return True
    except _NotPlain:
        return False


def split_top_level(obj, path: str, kind: str, args_of=None) -> Checkpoint:
    """Turn a loaded top-level object into a Checkpoint: find the state dict, args and small extras."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: top level is a {type(obj).__name__}, expected a dict of tensors "
                              "or a dict holding one under 'model'/'state_dict'/'state_dict_ema'")
    skipped: list[str] = []
    state_key = next((k for k in STATE_KEYS if isinstance(obj.get(k), dict)), None)
    if state_key is not None:
        raw = obj[state_key]
    elif obj and any(isinstance(v, np.ndarray) for v in obj.values()):
        raw = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
    else:
        raise CheckpointError(f"{path}: no state dict found (top-level keys: {sorted(map(str, obj))[:20]}); "
                              "expected 'model', 'state_dict' or 'state_dict_ema', or tensors at the top level")
    state = {}
    for k, v in raw.items():
        if isinstance(k, str) and isinstance(v, np.ndarray):
            state[k] = v
        else:
            skipped.append(f"{state_key or ''}:{k}")   # e.g. a non-tensor '_extra_state'
    if not state:
        raise CheckpointError(f"{path}: the state dict under {state_key!r} holds no tensors")
    state = strip_module_prefix(state, path)

    args = None
    a = obj.get("args")
    if args_of is not None and a is not None:
        args = args_of(a)
    elif isinstance(a, dict):
        args = dict(a)

    extra = {}
    for k, v in obj.items():
        if k == state_key or k == "args" or (state_key is None and isinstance(v, np.ndarray)):
            continue
        if isinstance(k, str) and is_plain(v):
            extra[k] = plain_value(v)
        else:
            skipped.append(str(k))
    container = f"{kind}:{state_key}" if state_key else kind
    return Checkpoint(state=state, args=args, extra=extra, container=container, path=path,
                      state_key=state_key, skipped=skipped)
