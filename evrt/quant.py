"""The int8 weight mode at the level of a whole model (docs/SEMANTICS.md, "Int8 weights"): quantise a
graph's conv2d/linear weights for a file (`evrt convert --precision int8`) and count weight bytes.
The per-array scheme (symmetric, per output channel) and the runtime side live in evrt/ops/quantised.py.
"""
from __future__ import annotations

import numpy as np

from .graph import Graph, Op
from .ops.quantised import QMAX, QUANTISED_TYPES, SCALE_KEY, dequantise, expand, quantise  # noqa: F401


def is_per_step(op) -> bool:
    """Whether the op's weights carry a leading timestep axis (RTFormer's per-step tables)."""
    return op.params["w"].ndim == (5 if op.type == "conv2d" else 3)


def quantise_graph(graph):
    """A copy of `graph` whose conv2d/linear weights are int8 + per-output-channel float32 scales
    (`w` int8, `w_scale` float32). Ops already quantised are kept as they are."""
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


def dequantise_graph(graph):
    """A copy of `graph` with every int8 conv2d/linear weight replaced by its float64 value q * scale
    (for consumers that know only float weights, e.g. the NIR exporter). A float graph is returned as is."""
    if not any(SCALE_KEY in op.params for op in graph.ops):
        return graph
    ops = []
    for op in graph.ops:
        params = dict(op.params)
        if SCALE_KEY in params:
            params["w"] = dequantise(params["w"], params.pop(SCALE_KEY))
        ops.append(Op(op.name, op.type, list(op.inputs), dict(op.attrs), params))
    meta = {k: v for k, v in graph.meta.items() if k != "weights"}
    out = Graph(meta, ops)
    out.check()
    return out
