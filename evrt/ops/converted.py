"""Op types for converted (ANN -> IF/DIF SNN) models, e.g. CSDformer (spec §7, evrt/archs/csdformer.py).

- `dif`: integrate-and-fire with soft reset, per-element initial membrane (half a step plus the folded
  bias, charged once per sample), a spike budget (the quantiser's L levels) and an optional delay.
- `tprod_qk`, `tprod_av`: temporally decomposed spike×spike products (Q·Kᵀ, A·V per head).
- `maxpool_delta`: temporally decomposed max-pooling of a spike stream.
- `scaled_add`: a real current plus a spike stream times a constant (a residual skip into a neuron).
- `token_sum`: spikes per channel this step, summed over tokens (feeds the head as integer counts).
Importing this module registers them with `evrt.ops`.
"""
from __future__ import annotations

import numpy as np

from .kernels import temporal as KT
from .ops import Neuron, OpImpl, op_type


@op_type("dif")
class DIF(Neuron):
    """attrs: delay (steps that only integrate), cap (max spikes per sample; the quantiser's L).
    params: vth and v_init, broadcastable to the output shape (v_init = vth/2 + folded bias)."""

    def __init__(self, op, in_shapes, dtype):
        super().__init__(op, in_shapes, dtype)
        self.vth_full = np.ascontiguousarray(np.broadcast_to(self.param("vth"), self.out_shape)).reshape(-1)
        v_init = self.param("v_init") if "v_init" in op.params else 0.5 * self.vth_full.reshape(self.out_shape)
        self.v_init = np.ascontiguousarray(np.broadcast_to(v_init, self.out_shape))
        self.fired = np.zeros(self.out_shape, np.int64)
        self.delay = int(self.attr("delay", 0))
        self.cap = int(self.attr("cap", np.iinfo(np.int64).max))
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
    """inputs q, k (N, D) spikes -> (heads, N, N) integer increments of Q Kᵀ per head. attrs heads."""
    is_synaptic = True

    def __init__(self, op, in_shapes, dtype):
        super().__init__(op, in_shapes, dtype)
        (n, c), (m, _) = in_shapes
        self.A = np.zeros((n, c), dtype)
        self.B = np.zeros((m, c), dtype)
        self.dense_ops = n * m * c

    def infer(self, in_shapes):
        (n, c), (m, c2) = in_shapes
        return (int(self.attr("heads")), n, m)

    def reset(self):
        self.A[...] = 0
        self.B[...] = 0

    def run(self, inputs, ctx):
        q, k = inputs
        self.stats.acs = int(KT.tprod_qk(q, k, self.A, self.B, int(self.attr("heads")), self.out))
        self.stats.in_nonzero = int(np.count_nonzero(q))
        return self.out


@op_type("tprod_av")
class TProdAV(OpImpl):
    """inputs a (heads, N, M) spikes, v (M, D) spikes -> (N, D) integer increments of A V per head."""
    is_synaptic = True

    def __init__(self, op, in_shapes, dtype):
        super().__init__(op, in_shapes, dtype)
        (h, n, m), (_, c) = in_shapes
        self.A = np.zeros((h, n, m), dtype)
        self.V = np.zeros((m, c), dtype)
        self.dense_ops = n * m * c

    def infer(self, in_shapes):
        (h, n, m), (m2, c) = in_shapes
        return (n, c)

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
    """attrs k, stride, pad on an (H, W, C) spike map; state: cumulative counts and window maxima."""

    def __init__(self, op, in_shapes, dtype):
        super().__init__(op, in_shapes, dtype)
        self.A = np.zeros(in_shapes[0], dtype)
        self.M = np.zeros(self.out_shape, dtype)

    def infer(self, in_shapes):
        h, w, c = in_shapes[0]
        k, s, p = self.attr("k", 3), self.attr("stride", 2), self.attr("pad", 1)
        return ((h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1, c)

    def reset(self):
        self.A[...] = 0
        self.M[...] = 0

    def run(self, inputs, ctx):
        KT.maxpool_delta(np.ascontiguousarray(inputs[0]), self.A, self.M, int(self.attr("k", 3)),
                         int(self.attr("stride", 2)), int(self.attr("pad", 1)), self.out)
        return self.out


@op_type("scaled_add")
class ScaledAdd(OpImpl):
    """inputs: current (real), spikes; out = current + scale·spikes. One AC per spike (the constant is
    added when a spike arrives; never a multiply). attrs scale."""
    is_synaptic = True

    def __init__(self, op, in_shapes, dtype):
        super().__init__(op, in_shapes, dtype)
        self.scale = dtype(self.attr("scale", 1.0))
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


@op_type("token_sum")
class TokenSum(OpImpl):
    """(N, C) spikes -> (C,) spike counts of this step (routing only; the head then adds one weight row
    per spike, counted there)."""

    def infer(self, in_shapes):
        return (in_shapes[0][-1],)

    def run(self, inputs, ctx):
        x = inputs[0]
        np.sum(x.reshape(-1, x.shape[-1]), axis=0, out=self.out)
        return self.out


__all__ = ["DIF", "TProdQK", "TProdAV", "MaxPoolDelta", "ScaledAdd", "TokenSum"]
