"""Architecture mappers: a checkpoint's state dict -> a folded evrt graph. One module per family."""
from __future__ import annotations

import importlib
import time

from ..errors import CheckpointError

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
        return importlib.import_module(f"{__name__}.{ARCHS[arch]}")
    except ModuleNotFoundError as exc:
        raise CheckpointError(f"architecture {arch!r} is not available in this build ({exc})") from None


def timesteps_from_args(args: dict | None) -> int | None:
    for key in T_KEYS:
        if args and args.get(key) not in (None, ""):
            return int(args[key])
    return None


def default_class_names(num_classes: int) -> tuple[list[str], str]:
    """11 outputs: DVS128 Gesture in spikingjelly's output order (folders sorted as strings, spec §2.1),
    which every public training script uses."""
    if num_classes == 11:
        from ..datasets.dvsgesture import class_names
        return class_names("spikingjelly"), "DVS128 Gesture, spikingjelly output order (spec §2.1)"
    return [f"class_{i}" for i in range(num_classes)], "unnamed"


def convert(ckpt, arch: str, *, timesteps: int | None = None, classes: list[str] | None = None,
            sensor: tuple[int, int] = (128, 128), **flags):
    """Fold a loaded checkpoint (evrt.checkpoint.Checkpoint) into a Graph."""
    mod = arch_module(arch)
    t0 = time.perf_counter()
    args = dict(ckpt.args or {})
    args.update({k: v for k, v in flags.items() if v is not None})
    T = timesteps_from_args(args)
    if timesteps is not None:
        T = int(timesteps)
    if not T or T < 1:
        raise CheckpointError(f"{ckpt.path}: the checkpoint saves no timestep count in its args; pass --timesteps T")
    hp = mod.infer_hparams(ckpt.state, args)
    builder, meta, unused = mod.build_graph(ckpt.state, hp, T=T, sensor=sensor, **_extra(mod, args))
    k = hp["num_classes"]
    if classes is None:
        classes, note = default_class_names(k)
    else:
        note = "given by the user"
        if len(classes) != k:
            raise CheckpointError(f"{len(classes)} class names given, the model has {k} outputs")
    meta.update({
        "classes": list(classes), "class_order": note,
        "readout": "mean_logits",
        "stream": meta.get("stream") or {"count": None, "window_us": 50_000},
        "source": {"path": str(ckpt.path), "container": ckpt.container, "arch": arch,
                   "args_T": timesteps_from_args(ckpt.args or {})},
        "unused_keys": unused,
        "convert_seconds": round(time.perf_counter() - t0, 3),
    })
    return builder.graph(meta)


def _extra(mod, args: dict) -> dict:
    extra = getattr(mod, "BUILD_ARGS", ())
    return {k: args[k] for k in extra if k in args}
