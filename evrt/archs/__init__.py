"""Architecture mappers: a checkpoint's state dict -> a folded evrt graph. One module per family.

A family module (`evrt/archs/<family>.py`, listed in ARCHS) is a `FamilyMapper`: see the protocol below.
It builds its graph with `GraphBuilder` (evrt/graph.py), whose `input()` also declares the frame record,
so the module's metadata carries only what is specific to the family.
"""
from __future__ import annotations

import importlib
import time
from typing import Protocol, runtime_checkable

from ..errors import CheckpointError
from ..graph import GraphBuilder


@runtime_checkable
class FamilyMapper(Protocol):
    """What `evrt/archs/<family>.py` provides (module-level names)."""

    FAMILY: str
    """The family name stored in meta["family"]."""

    def infer_hparams(self, state: dict, args: dict) -> dict:
        """Hyper-parameters read from the state dict's shapes and the checkpoint's saved args (flags
        override args). Must include "num_classes". Raises CheckpointError naming what is missing."""

    def build_graph(self, state: dict, hp: dict, *, T: int, sensor: tuple[int, int] = (128, 128),
                    **extra) -> tuple[GraphBuilder, dict, list[str]]:
        """(builder, meta, unused keys): the folded ops, the family's metadata (family, hparams, T,
        output, folding notes; the frame record comes from `builder.input()`), and the state-dict keys
        the graph does not use. Extra keyword arguments are the names in the module's optional
        BUILD_ARGS tuple, taken from the checkpoint args / flags."""

ARCHS = {
    "spikformer": "spikformer",
    "sdt": "sdt",
    "spikingresformer": "spikingresformer",
    "rtformer": "rtformer",
    "csdformer": "csdformer",
}
# Names the public training scripts use for the number of timesteps in their saved args.
T_KEYS = ("T", "time_steps", "timesteps", "time_step", "timestep", "T_train")


def arch_module(arch: str):
    if arch not in ARCHS:
        raise CheckpointError(f"unknown architecture {arch!r}; supported: {', '.join(ARCHS)}")
    try:
        mod = importlib.import_module(f"{__name__}.{ARCHS[arch]}")
    except ModuleNotFoundError as exc:
        raise CheckpointError(f"architecture {arch!r} is not available in this build ({exc})") from None
    if not isinstance(mod, FamilyMapper):
        raise CheckpointError(f"evrt.archs.{ARCHS[arch]} does not provide FAMILY, infer_hparams and build_graph")
    return mod


def timesteps_from_args(args: dict | None) -> int | None:
    for key in T_KEYS:
        if args and args.get(key) not in (None, ""):
            v = args[key]
            if isinstance(v, bool) or not isinstance(v, int) and not (isinstance(v, str) and v.strip().isdigit()):
                raise CheckpointError(f"the checkpoint's args {key}={v!r:.40} is not a whole number of timesteps; "
                                      "pass --timesteps T")
            return int(v)
    return None


def convert(ckpt, arch: str, *, timesteps: int | None = None, classes: list[str] | None = None,
            sensor: tuple[int, int] = (128, 128), **flags):
    """Fold a loaded checkpoint (evrt.checkpoint.Checkpoint) into a Graph."""
    mod = arch_module(arch)
    t0 = time.perf_counter()
    args = dict(ckpt.args or {})
    args.update({k: v for k, v in flags.items() if v is not None})
    T = int(timesteps) if timesteps is not None else timesteps_from_args(args)  # -T wins: args unread
    if not T or T < 1:
        raise CheckpointError(f"{ckpt.path}: the checkpoint saves no timestep count in its args; pass --timesteps T")
    hp = mod.infer_hparams(ckpt.state, args)
    builder, meta, unused = mod.build_graph(ckpt.state, hp, T=T, sensor=sensor, **_extra(mod, args))
    from ..checkpoint.classes import resolve_classes
    classes, note = resolve_classes(ckpt, hp["num_classes"], classes)  # the checkpoint's own order wins
    meta.update({
        "classes": list(classes), "class_order": note,
        "readout": "mean_logits",
        "stream": meta.get("stream") or {"count": None, "window_us": 50_000},
        "source": {"path": str(ckpt.path), "container": ckpt.container, "arch": arch,
                   "args_T": T if timesteps is None else _args_T_or_none(ckpt.args)},
        "unused_keys": unused,
        "convert_seconds": round(time.perf_counter() - t0, 3),
    })
    return builder.graph(meta)


def _args_T_or_none(args):
    try:
        return timesteps_from_args(args or {})
    except CheckpointError:
        return None


def _extra(mod, args: dict) -> dict:
    extra = getattr(mod, "BUILD_ARGS", ())
    return {k: args[k] for k in extra if k in args}
