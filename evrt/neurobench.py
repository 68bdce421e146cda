"""evrt's counters under NeuroBench's workload-metric names, so a user can put evrt's numbers in a
NeuroBench table. Per sample, like NeuroBench:

- Effective_ACs / Effective_MACs: evrt's counted ACs and MACs (every synaptic layer, attention and
  pooling included; NeuroBench counts only Linear/Conv/RNN layers, an input that is not 0/1 as MACs,
  and one operation per non-zero input and non-zero weight, where evrt counts a count c as c ACs).
- Dense: the MACs of a dense implementation of every synaptic op (evrt's dense_ops; NeuroBench's
  Dense skips padded taps, evrt's includes them).
- ActivationSparsity: 1 − (neuron outputs that are non-zero) / (neuron outputs), over every neuron
  layer and step.
- Footprint: bytes of the parameters the runtime holds at this precision (NeuroBench: parameters and
  buffers of the torch model).
docs/NIR.md compares the two per layer on the NIR paper's CNN.
"""
from __future__ import annotations

import numpy as np

from .counters import Report
from .graph import Graph


def footprint_bytes(graph: Graph, precision: str) -> int:
    from .quant import QUANTISED_TYPES, weight_bytes
    item = np.dtype("float32" if precision == "int8" else precision).itemsize
    # nir_* parameters are kept only to write the graph back to NIR; the runtime never loads them;
    # int8: conv2d/linear weights are one byte each plus their float32 scales (evrt.quant.weight_bytes)
    rest = sum(p.size for op in graph.ops for k, p in op.params.items() if not k.startswith("nir_")
               and not (precision == "int8" and op.type in QUANTISED_TYPES and k in ("w", "w_scale")))
    return int(rest * item + (weight_bytes(graph, "int8") if precision == "int8" else 0))


def neurobench_metrics(report: Report, graph: Graph, precision: str, samples: int) -> dict:
    t = report.totals()
    n = max(int(samples), 1)
    neurons = sum(l.neurons for l in report.layers) * report.steps
    spikes = sum(l.spikes for l in report.layers)
    return {"Effective_ACs": t["acs"] / n, "Effective_MACs": t["macs"] / n, "Dense": t["dense_macs"] / n,
            "ActivationSparsity": 1.0 - spikes / neurons if neurons else None,
            "Footprint": footprint_bytes(graph, precision)}
