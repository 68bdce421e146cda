"""The int8 weight mode's quantiser (docs/SEMANTICS.md, "Int8 weights").

Symmetric, per output channel: for the weights w[..., c] of output channel c (and of each timestep of
a per-step table), scale[c] = max|w[..., c]| / 127 and q = round(w / scale) clipped to [-127, 127],
stored as int8. A channel whose weights are all zero gets scale 1 and q = 0 (any positive scale is
exact for it). Dequantised weights are q * scale; |w - q * scale| <= scale / 2 elementwise.

Which ops are quantised: `conv2d` and `linear` (the weight arrays `w`); their bias stays in float and
is added once per output after the integer sum is scaled. Nothing else carries a weight array that
spikes index (neurons, pooling, attention products, `scaled_add`'s single constant, NIR `scale` and
`sumpool`), so nothing else changes.
"""
from __future__ import annotations

import numpy as np

QMAX = 127
QUANTISED_TYPES = ("conv2d", "linear")
SCALE_KEY = "w_scale"


def quantise(w: np.ndarray, per_step: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(q int8 of w's shape, scale float32 (..., Cout)): one scale per output channel (the last axis),
    per timestep when `per_step` (a leading T axis). The scale is rounded to float32 first and q is
    computed from that float32 scale, so q * scale is exactly what the runtime dequantises to."""
    w = np.asarray(w, dtype=np.float64)
    lead = w.shape[:1] if per_step else ()
    red = tuple(range(len(lead), w.ndim - 1))
    amax = np.max(np.abs(w), axis=red) if red else np.abs(w)
    scale = np.where(amax > 0, amax / QMAX, 1.0).astype(np.float32)
    q = np.rint(w / expand(scale.astype(np.float64), w.ndim))
    return np.clip(q, -QMAX, QMAX).astype(np.int8), scale


def expand(scale: np.ndarray, ndim: int) -> np.ndarray:
    """A (..., Cout) scale table shaped to broadcast against weights of `ndim` axes: the middle axes
    (kernel taps, input channels) become ones."""
    scale = np.asarray(scale)
    lead = scale.shape[:-1]
    return scale.reshape(lead + (1,) * (ndim - len(lead) - 1) + scale.shape[-1:])


def dequantise(q: np.ndarray, scale: np.ndarray, dtype=np.float64) -> np.ndarray:
    """q * scale in `dtype` (the float weights an int8 file stands for)."""
    return (q.astype(np.float64) * expand(scale, q.ndim).astype(np.float64)).astype(dtype)


def is_per_step(op) -> bool:
    """Whether the op's weights carry a leading timestep axis (RTFormer's per-step tables)."""
    return op.params["w"].ndim == (5 if op.type == "conv2d" else 3)


def quantise_graph(graph):
    """A copy of `graph` whose conv2d/linear weights are int8 + per-output-channel float32 scales
    (`w` int8, `w_scale` float32). Ops already quantised are kept as they are."""
    from .graph import Graph, Op

    ops = []
    for op in graph.ops:
        params = dict(op.params)
        if op.type in QUANTISED_TYPES and "w" in params and SCALE_KEY not in params:
            params["w"], params[SCALE_KEY] = quantise(params["w"], is_per_step(op))
        ops.append(Op(op.name, op.type, list(op.inputs), dict(op.attrs), params))
    meta = dict(graph.meta)
    meta["weights"] = "int8"
    out = Graph(meta, ops)
    out.check()
    return out


def weight_bytes(graph, precision: str) -> int:
    """Bytes of the synaptic weight arrays (w and their scales) a Session at `precision` holds as the
    model's weights: int8 + float32 scales in int8 mode, else the float itemsize per weight."""
    total = 0
    for op in graph.ops:
        if op.type not in QUANTISED_TYPES or "w" not in op.params:
            continue
        w = op.params["w"]
        if precision == "int8":
            scales = w.shape[-1] * (w.shape[0] if is_per_step(op) else 1)
            total += w.size + 4 * scales
        else:
            total += w.size * np.dtype(precision).itemsize
    return int(total)


def check_int8_params(params: dict) -> str | None:
    """The cross-parameter rule of a quantised conv2d/linear (the per-array rules are its Param
    declarations): `w_scale` goes with int8 `w`, and int8 `w` needs its `w_scale`."""
    w = params.get("w")
    s = params.get(SCALE_KEY)
    if not isinstance(w, np.ndarray):
        return None
    if s is not None and w.dtype != np.int8:
        return f"parameter 'w' has dtype {w.dtype} but the op carries {SCALE_KEY!r}: quantised weights are int8"
    if s is None and w.dtype == np.int8:
        return f"parameter 'w' is int8 without {SCALE_KEY!r} (the per-output-channel scales)"
    if s is not None and s.dtype.kind != "f":
        return f"parameter {SCALE_KEY!r} has dtype {s.dtype}; expected float scales"
    return None


def check_scale(arr: np.ndarray) -> str | None:
    """Param check of w_scale (non-finite values are refused before this runs)."""
    if arr.size and not np.all(arr > 0):
        return "must be > 0 everywhere (a zero or negative scale)"
    return None
