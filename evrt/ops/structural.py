"""Routing ops: no arithmetic that a spiking chip would count (sums of currents, views, masks)."""
from __future__ import annotations

import numpy as np

from .base import Attr, OpImpl, need, op_type


@op_type("add")
class Add(OpImpl):
    """Element-wise sum of two or more inputs of the same size (residual connections)."""
    inputs = (2, None)

    @classmethod
    def shape(cls, a, p, ins):
        n = int(np.prod(ins[0]))
        need(all(int(np.prod(s)) == n for s in ins), f"input sizes differ: {[tuple(s) for s in ins]}")
        return tuple(ins[0])

    def run(self, inputs, ctx):
        np.add(inputs[0].reshape(self.out_shape), inputs[1].reshape(self.out_shape), out=self.out)
        for extra in inputs[2:]:
            self.out += extra.reshape(self.out_shape)
        return self.out


@op_type("reshape")
class Reshape(OpImpl):
    """The runtime shape of the output (views only: channels-last makes (H,W,C)<->(N,C) free)."""
    attrs = {"shape": Attr("ints")}

    @classmethod
    def shape(cls, a, p, ins):
        shape = tuple(a["shape"])
        need(len(shape) >= 1 and all(v >= 1 for v in shape), f"shape {list(shape)} has an empty axis")
        need(int(np.prod(shape, dtype=np.float64)) == int(np.prod(ins[0])), f"cannot reshape {tuple(ins[0])} to {shape}")
        return shape

    def run(self, inputs, ctx):
        return inputs[0].reshape(self.out_shape)


@op_type("mask")
class Mask(OpImpl):
    """SDT's spike mask: q (N, C) AND kv (C,) — a logical AND, no arithmetic counted."""
    inputs = 2

    @classmethod
    def shape(cls, a, p, ins):
        need(len(ins[0]) == 2 and int(np.prod(ins[1])) == ins[0][1], "expects q (N, C) and a mask of C channels")
        return tuple(ins[0])

    def run(self, inputs, ctx):
        np.multiply(inputs[0], inputs[1].reshape(1, -1), out=self.out)
        return self.out


@op_type("token_sum")
class TokenSum(OpImpl):
    """(N, C) spikes -> (C,) spike counts of this step (routing only; the next synaptic op adds one weight
    row per spike, counted there)."""

    @classmethod
    def shape(cls, a, p, ins):
        return (ins[0][-1],)

    def run(self, inputs, ctx):
        x = inputs[0]
        np.sum(x.reshape(-1, x.shape[-1]), axis=0, out=self.out)
        return self.out
