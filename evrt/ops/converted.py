"""Op types for converted (ANN -> IF/DIF SNN) models, e.g. CSDformer (docs/SEMANTICS.md, "Converted
models"; evrt/archs/csdformer.py). Kernels: evrt/kernels/temporal.py.

- `dif`: integrate-and-fire with soft reset, per-element initial membrane (half a step plus the folded
  bias, charged once per sample), a spike budget (the quantiser's L levels) and an optional delay.
  With delay 0 and no budget it is the plain IF neuron.
- `tprod_qk`, `tprod_av`: temporally decomposed spike×spike products (Q·Kᵀ, A·V per head).
- `maxpool_delta`: temporally decomposed max-pooling of a spike stream.
- `scaled_add`: a real current plus a spike stream times a constant (a residual skip into a neuron).
"""
from __future__ import annotations

import numpy as np

from ..kernels import temporal as KT
from .base import Attr, Kind, OpImpl, Param, need, non_negative, op_type, positive
from .neurons import Neuron
from .pooling import WINDOW, window_shape

NO_CAP = int(np.iinfo(np.int64).max)


@op_type("dif")
class DIF(Neuron):
    """delay: steps that only integrate; cap: max spikes per sample (the quantiser's L).
    params: vth and v_init, broadcastable to the output shape (v_init = vth/2 + folded bias)."""
    attrs = {"delay": Attr(int, 0, check=non_negative), "cap": Attr(int, NO_CAP, check=positive)}
    params = {"vth": Param(broadcast="strict"), "v_init": Param(optional=True, broadcast="strict")}

    def __init__(self, op, in_shapes, dtype, resolved=None):
        super().__init__(op, in_shapes, dtype, resolved)
        self.vth_full = np.ascontiguousarray(np.broadcast_to(self.param("vth"), self.out_shape)).reshape(-1)
        v_init = self.param("v_init") if "v_init" in op.params else 0.5 * self.vth_full.reshape(self.out_shape)
        self.v_init = np.ascontiguousarray(np.broadcast_to(v_init, self.out_shape))
        self.fired = np.zeros(self.out_shape, np.int64)
        self.delay = self.a["delay"]
        self.cap = self.a["cap"]
        self.step_index = 0
        self.reset()

    def reset(self):
        self.v[...] = self.v_init
        self.fired[...] = 0
        self.step_index = 0

    def _flat(self, x, h):
        return x.reshape(-1), self.v.reshape(-1), self.fired.reshape(-1), self.out.reshape(-1), h.reshape(-1)

    def fire(self, x, h):
        x, v, fired, s, hh = self._flat(x, h)
        n = KT.dif_step(x, v, self.vth_full, fired, self.cap, self.step_index >= self.delay, s, hh)
        self.step_index += 1
        return n

    def fire_forced(self, x, f, h):
        x, v, fired, s, hh = self._flat(x, h)
        n = KT.dif_step_forced(x, v, self.vth_full, fired, f.reshape(-1), s, hh)
        self.step_index += 1
        return n


@op_type("tprod_qk")
class TProdQK(OpImpl):
    """inputs q (N, C), k (M, C) spikes -> (heads, N, M) integer increments of Q Kᵀ per head."""
    kind = Kind.ATTENTION
    inputs = 2
    attrs = {"heads": Attr(int, check=positive)}

    @classmethod
    def shape(cls, a, p, ins):
        (n, c), (m, c2) = ins
        need(c == c2 and c % a["heads"] == 0, f"expects q (N, C), k (M, C) with C divisible by {a['heads']} heads")
        return (a["heads"], n, m)

    def __init__(self, op, in_shapes, dtype, resolved=None):
        super().__init__(op, in_shapes, dtype, resolved)
        (n, c), (m, _) = in_shapes
        self.A = np.zeros((n, c), dtype)
        self.B = np.zeros((m, c), dtype)
        self.dense_ops = n * m * c

    def reset(self):
        self.A[...] = 0
        self.B[...] = 0

    def run(self, inputs, ctx):
        q, k = inputs
        self.stats.acs = int(KT.tprod_qk(q, k, self.A, self.B, self.a["heads"], self.out))
        self.stats.in_nonzero = int(np.count_nonzero(q))
        return self.out


@op_type("tprod_av")
class TProdAV(OpImpl):
    """inputs a (heads, N, M) spikes, v (M, C) spikes -> (N, C) integer increments of A V per head."""
    kind = Kind.ATTENTION
    inputs = 2

    @classmethod
    def shape(cls, a, p, ins):
        (h, n, m), (m2, c) = ins
        need(m == m2 and c % h == 0, "expects a (heads, N, M) and v (M, C) with C divisible by heads")
        return (n, c)

    def __init__(self, op, in_shapes, dtype, resolved=None):
        super().__init__(op, in_shapes, dtype, resolved)
        (h, n, m), (_, c) = in_shapes
        self.A = np.zeros((h, n, m), dtype)
        self.V = np.zeros((m, c), dtype)
        self.dense_ops = n * m * c

    def reset(self):
        self.A[...] = 0
        self.V[...] = 0

    def run(self, inputs, ctx):
        a, v = inputs
        self.stats.acs = int(KT.tprod_av(a, v, self.A, self.V, self.out))
        self.stats.in_nonzero = int(np.count_nonzero(a))
        return self.out


@op_type("maxpool_delta")
class MaxPoolDelta(OpImpl):
    """k, stride, pad on an (H, W, C) spike map; state: cumulative counts and window maxima."""
    kind = Kind.POOLING
    attrs = WINDOW

    @classmethod
    def shape(cls, a, p, ins):
        return window_shape(a, ins)

    def __init__(self, op, in_shapes, dtype, resolved=None):
        super().__init__(op, in_shapes, dtype, resolved)
        self.A = np.zeros(in_shapes[0], dtype)
        self.M = np.zeros(self.out_shape, dtype)

    def reset(self):
        self.A[...] = 0
        self.M[...] = 0

    def run(self, inputs, ctx):
        KT.maxpool_delta(np.ascontiguousarray(inputs[0]), self.A, self.M, self.a["k"], self.a["stride"],
                         self.a["pad"], self.out)
        return self.out


@op_type("scaled_add")
class ScaledAdd(OpImpl):
    """inputs: current (real), spikes; out = current + scale·spikes. One AC per spike (the constant is
    added when a spike arrives; never a multiply)."""
    kind = Kind.SYNAPTIC
    inputs = 2
    attrs = {"scale": Attr(float, 1.0)}

    @classmethod
    def shape(cls, a, p, ins):
        need(int(np.prod(ins[0])) == int(np.prod(ins[1])), "current and spikes differ in size")
        return tuple(ins[0])

    def __init__(self, op, in_shapes, dtype, resolved=None):
        super().__init__(op, in_shapes, dtype, resolved)
        self.scale = dtype(self.a["scale"])
        self.in_size = int(np.prod(in_shapes[1]))
        self.dense_ops = self.in_size

    def run(self, inputs, ctx):
        cur, s = inputs
        s = s.reshape(self.out_shape)
        np.multiply(s, self.scale, out=self.out)   # s is 0/1: selects the constant, counted as ACs
        self.out += cur.reshape(self.out_shape)
        n = int(np.count_nonzero(s))
        self.stats.acs = int(round(float(s.sum()))) if n else 0
        self.stats.in_nonzero = n
        return self.out
