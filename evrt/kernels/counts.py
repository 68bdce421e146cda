"""The one result type of the synaptic kernels (conv2d_scatter, conv2d_events, linear_scatter)."""
from __future__ import annotations

from typing import NamedTuple


class Counts(NamedTuple):
    """nnz: non-zero input elements (events for conv2d_events); pairs: (non-zero input, output neuron)
    pairs touched in bounds; weighted: Σ of the input value over those pairs (= pairs for events and
    0/1 spikes). Ops turn them into ACs (`weighted`, spike/count input) or MACs (`pairs`, real input)."""
    nnz: int
    pairs: int
    weighted: float
