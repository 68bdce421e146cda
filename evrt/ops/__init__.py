"""Op implementations: the glue between a folded graph's ops and the numba kernels.

One module per kind of work, mirroring `evrt/kernels/`: `input`, `synaptic`, `neurons`, `pooling`,
`attention`, `structural`, `converted` (IF/DIF models) and `nir` (models imported from NIR). Each op type is one class that declares
its attributes, parameters, inputs, kind and shape rule (`evrt.ops.base`) next to its `run()`; given
its op record and input shapes it allocates its output buffer and state once, then runs one timestep
per `run()` call, recording what the kernels report (ACs, MACs, spikes) in `self.stats`.
Runtime layout is channels-last (docs/INTERNALS.md).

Adding an op: one class in the module of its kind (declaration + run), one kernel in evrt/kernels/ and
its NumPy twin in evrt/kernels/dense.py. Nothing else keeps a list of op types.
"""
from __future__ import annotations

from . import attention, converted, input, neurons, nir, pooling, structural, synaptic  # noqa: F401  (register)
from .base import (MAX_ELEMENTS, OP_TYPES, Attr, Kind, OpImpl, Param, StepStats, check_op, op_class,
                   op_type, out_size)
from .input import EventBatch


def build(op, in_shapes: list, dtype) -> OpImpl:
    """Validate the op against its declaration, then make its runtime object."""
    _, resolved = check_op(op, in_shapes)
    return op_class(op)(op, in_shapes, dtype, resolved)


def kind_of(type_name: str) -> Kind | None:
    """The declared kind of an op type (None for a type this evrt does not know)."""
    cls = OP_TYPES.get(type_name)
    return cls.kind if cls else None


__all__ = ["OP_TYPES", "MAX_ELEMENTS", "Attr", "EventBatch", "Kind", "OpImpl", "Param", "StepStats", "build",
           "check_op", "kind_of", "op_class", "op_type", "out_size"]
