"""Spike-driven attention products (Spikformer SSA, SDT's SDSA, SpikingResformer's DSSA). Each counts
the non-zero terms of its products as ACs; heads split the channel axis (channel = head·d + j)."""
from __future__ import annotations

from .. import kernels as K
from .base import Attr, Kind, OpImpl, need, op_type, positive

HEADS = {"heads": Attr(int, check=positive)}


def _heads_divide(c, heads):
    need(c % heads == 0, f"{c} channels are not divisible by {heads} heads")


@op_type("ssa")
class SSA(OpImpl):
    """Spikformer's spiking self-attention (Q K^T) V per head, integer-valued, unscaled (the scale is
    folded into the next neuron's threshold). inputs q, k, v (N, C)."""
    kind = Kind.ATTENTION
    inputs = 3
    attrs = HEADS

    @classmethod
    def shape(cls, a, p, ins):
        need(len(ins[0]) == 2 and ins[1] == ins[0] and ins[2] == ins[0], "expects q, k, v of one (N, C) shape")
        _heads_divide(ins[0][1], a["heads"])
        return tuple(ins[0])

    def __init__(self, op, in_shapes, dtype, resolved=None):
        super().__init__(op, in_shapes, dtype, resolved)
        n, c = in_shapes[0]
        self.dense_ops = 2 * n * n * c

    def run(self, inputs, ctx):
        q, k, v = inputs
        self.stats.acs = int(K.ssa(q, k, v, self.a["heads"], self.out))
        return self.out


@op_type("sdsa_kv")
class SDSAKV(OpImpl):
    """SDT v1 (code version): column sum over tokens of K∘V -> (C,). inputs k, v (N, C)."""
    kind = Kind.ATTENTION
    inputs = 2

    @classmethod
    def shape(cls, a, p, ins):
        need(len(ins[0]) == 2 and ins[1] == ins[0], "expects k, v of one (N, C) shape")
        return (ins[0][-1],)

    def __init__(self, op, in_shapes, dtype, resolved=None):
        super().__init__(op, in_shapes, dtype, resolved)
        n, c = in_shapes[0]
        self.dense_ops = n * c

    def run(self, inputs, ctx):
        k, v = inputs
        self.stats.acs = int(K.sdsa_kv(k, v, self.out))
        return self.out


@op_type("dssa_scores")
class DSSAScores(OpImpl):
    """SpikingResformer DSSA first product: inputs y (L, 2C) real, s (HW, C) spikes -> (heads, L, HW)."""
    kind = Kind.ATTENTION
    inputs = 2
    attrs = HEADS

    @classmethod
    def shape(cls, a, p, ins):
        need(len(ins[0]) == 2 and len(ins[1]) == 2 and ins[0][1] == 2 * ins[1][1], "expects y (L, 2C) and s (HW, C)")
        _heads_divide(ins[1][1], a["heads"])
        return (a["heads"], ins[0][0], ins[1][0])

    def __init__(self, op, in_shapes, dtype, resolved=None):
        super().__init__(op, in_shapes, dtype, resolved)
        (l, _), (hw, c) = in_shapes[0], in_shapes[1]
        self.dense_ops = l * hw * c

    def run(self, inputs, ctx):
        y, s = inputs
        self.stats.acs = int(K.dssa_scores(y, s, self.a["heads"], self.out))
        return self.out


@op_type("dssa_out")
class DSSAOut(OpImpl):
    """DSSA second product: inputs y (L, 2C) real, sa (heads, L, HW) spikes -> (HW, C)."""
    kind = Kind.ATTENTION
    inputs = 2
    attrs = HEADS

    @classmethod
    def shape(cls, a, p, ins):
        (l, c2), sa = ins[0], ins[1]
        need(len(ins[0]) == 2 and c2 % 2 == 0 and tuple(sa[:2]) == (a["heads"], l) and len(sa) == 3,
             "expects y (L, 2C) and sa (heads, L, HW)")
        _heads_divide(c2 // 2, a["heads"])
        return (sa[2], c2 // 2)

    def __init__(self, op, in_shapes, dtype, resolved=None):
        super().__init__(op, in_shapes, dtype, resolved)
        (l, c2), (_, _, hw) = in_shapes[0], in_shapes[1]
        self.dense_ops = hw * (c2 // 2) * l

    def run(self, inputs, ctx):
        y, sa = inputs
        self.stats.acs = int(K.dssa_out(y, sa, self.a["heads"], self.out))
        return self.out
