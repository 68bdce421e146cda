"""Op types for models imported from NIR (evrt/nir/importer.py); importing this module registers them.

- `nir_neuron`: one discretised NIR neuron (I, LI, IF, LIF, CubaLI, CubaLIF) with per-element
  parameters; the discretisation (docs/NIR.md) is fixed at import and stored in the op's params/attrs.
- `sumpool`: NIR SumPool2d / AvgPool2d (attr scale = 1/(kh*kw) for an average), counted like a synapse
  whose weights are all 1: one AC per (input spike, window) pair.
- `scale`: NIR Scale, an element-wise multiply (real output; MACs on the non-zero inputs).
- `tensor_in`: the graph input when it is not an event frame: a NIR-layout array per step.
- `delay`: NIR Delay in whole steps (a ring buffer).
"""
from __future__ import annotations

import numpy as np

from .errors import GraphError
from .kernels.nir import nir_neuron_step, sumpool2d
from .ops import Neuron, OpImpl, op_type

NEURON_PARAMS = ("a_m", "b_m", "c_m", "a_s", "b_s", "vth", "vreset", "vmin")


@op_type("nir_neuron")
class NIRNeuron(Neuron):
    """attrs: shape (runtime), cuba (0/1/2), fire (0..3), reset (0..3), floor (bool), ref_shape, ref_perm
    (runtime element j is NIR element ref_perm[j] after a Flatten). params: NEURON_PARAMS, each of
    the output's size (runtime order)."""

    def __init__(self, op, in_shapes, dtype):
        super().__init__(op, in_shapes, dtype)
        n = int(np.prod(self.out_shape))
        self.p = []
        for key in NEURON_PARAMS:
            arr = self.param(key).reshape(-1)
            if arr.size != n:
                raise GraphError(f"{self.name}: parameter {key} has {arr.size} values for {n} neurons")
            self.p.append(np.ascontiguousarray(arr))
        self.i = np.zeros(n, dtype)
        self.flags = (int(self.attr("cuba", 0)), int(self.attr("fire", 1)), int(self.attr("reset", 1)),
                      bool(self.attr("floor", False)))
        self.no_force = np.zeros(0, dtype)

    def infer(self, in_shapes):
        shape = tuple(self.attr("shape"))
        if int(np.prod(shape)) != int(np.prod(in_shapes[0])):
            raise GraphError(f"{self.name}: input of shape {in_shapes[0]} does not fit neurons of shape {shape}")
        return shape

    @property
    def neurons(self) -> int:
        return int(np.prod(self.out_shape))

    def reset(self):
        self.v[...] = 0
        self.i[...] = 0
        self.out[...] = 0

    def fire(self, x, h):
        return nir_neuron_step(x, self.v, self.i, *self.p, *self.flags, self.no_force, self.out, h)

    def fire_forced(self, x, f, h):
        return nir_neuron_step(x, self.v, self.i, *self.p, *self.flags, f, self.out, h)

    def run(self, inputs, ctx):
        out = super().run(inputs, ctx)
        if self.flags[1] == 0:          # LI / I: the membrane is the output, not spikes
            self.stats.spikes = 0
        return out


@op_type("sumpool")
class SumPool(OpImpl):
    """attrs k (kh, kw), stride (sh, sw), pad (ph, pw), scale, in_kind. Output (Ho, Wo, C)."""
    is_synaptic = True

    def __init__(self, op, in_shapes, dtype):
        super().__init__(op, in_shapes, dtype)
        kh, kw = self.attr("k")
        ho, wo, c = self.out_shape
        self.dense_ops = ho * wo * c * kh * kw

    def infer(self, in_shapes):
        if len(in_shapes[0]) != 3:
            raise GraphError(f"{self.name}: pooling needs an (H, W, C) input, got {in_shapes[0]}")
        h, w, c = in_shapes[0]
        (kh, kw), (sh, sw), (ph, pw) = self.attr("k"), self.attr("stride"), self.attr("pad")
        return ((h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1, c)

    def run(self, inputs, ctx):
        x = np.ascontiguousarray(inputs[0]).reshape(self.in_shapes[0])
        (kh, kw), (sh, sw), (ph, pw) = self.attr("k"), self.attr("stride"), self.attr("pad")
        pairs, weighted = sumpool2d(x, kh, kw, sh, sw, ph, pw, self.out)
        scale = float(self.attr("scale", 1.0))
        if scale != 1.0:
            self.out *= self.dtype(scale)
        self.stats.in_nonzero = int(np.count_nonzero(x))
        if self.attr("in_kind", "spike") == "real":
            self.stats.macs = int(pairs)
        else:
            self.stats.acs = int(round(weighted))
        return self.out


@op_type("scale")
class Scale(OpImpl):
    """params s (runtime shape of the output): out = x * s."""
    is_synaptic = True

    def __init__(self, op, in_shapes, dtype):
        super().__init__(op, in_shapes, dtype)
        self.s = self.param("s").reshape(self.out_shape)
        self.dense_ops = int(np.prod(self.out_shape))

    def run(self, inputs, ctx):
        x = np.asarray(inputs[0]).reshape(self.out_shape)
        np.multiply(x, self.s, out=self.out)
        nnz = int(np.count_nonzero(x))
        self.stats.in_nonzero = nnz
        self.stats.macs = nnz
        return self.out


@op_type("tensor_in")
class TensorIn(OpImpl):
    """attrs shape (runtime), ref_shape (NIR layout of one step's input). A (C, H, W) or (C, L) input
    is transposed to channels-last; vectors pass as they are."""

    def infer(self, in_shapes):
        return tuple(self.attr("shape"))

    def run(self, inputs, ctx):
        x = np.asarray(inputs[0])
        ref = tuple(self.attr("ref_shape"))
        if x.shape != ref:
            raise GraphError(f"{self.name}: expected an input of shape {ref} per step, got {x.shape}")
        self.out[...] = np.moveaxis(x, 0, -1) if x.ndim in (2, 3) else x
        self.stats.in_nonzero = int(np.count_nonzero(self.out))
        return self.out


@op_type("delay")
class Delay(OpImpl):
    """NIR Delay, discretised: out_t[j] = x_{t - d[j]}[j] (zero before the first input). params d
    (integer steps per element, runtime layout). A ring buffer of max(d)+1 steps; reset clears it."""

    def __init__(self, op, in_shapes, dtype):
        super().__init__(op, in_shapes, dtype)
        self.d = np.asarray(op.params["d"], np.int64).reshape(-1)
        n = int(np.prod(self.out_shape))
        if self.d.size != n or np.any(self.d < 0):
            raise GraphError(f"{self.name}: delay steps must be {n} non-negative integers")
        self.buf = np.zeros((int(self.d.max()) + 1, n), dtype)
        self.idx = np.arange(n)
        self.t = 0

    def reset(self):
        self.buf[...] = 0
        self.t = 0

    def run(self, inputs, ctx):
        depth = self.buf.shape[0]
        self.buf[self.t % depth] = np.asarray(inputs[0]).reshape(-1)
        self.out.reshape(-1)[...] = self.buf[(self.t - self.d) % depth, self.idx]
        self.t += 1
        return self.out
