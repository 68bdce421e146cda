"""Op types for models imported from NIR (evrt/nir/importer.py); kernels in evrt/kernels/nir.py.

- `nir_neuron` (neuron): one discretised NIR neuron (I, LI, IF, LIF, CubaLI, CubaLIF, Threshold) with
  per-element parameters; the discretisation (docs/NIR.md) is fixed at import and stored in its
  params/attrs.
- `sumpool` (synaptic): NIR SumPool2d / AvgPool2d (attr scale = 1/(kh*kw) for an average), counted like
  a synapse whose weights are all 1: one AC per (input spike, window) pair, MACs for real input.
- `scale` (synaptic): NIR Scale, an element-wise multiply; counted as MACs on the non-zero inputs.
- `tensor_in` (input): the graph input when it is not an event frame: a NIR-layout array per step.
- `delay` (structural): NIR Delay in whole steps (a ring buffer).

Parameters named `nir_<field>` keep the NIR node's own values in NIR layout (ref_shape) so that
`evrt export` writes them back unchanged; nothing runs on them.
"""
from __future__ import annotations

import numpy as np

from ..errors import GraphError
from ..kernels.nir import nir_neuron_step, sumpool2d
from .base import MAX_ELEMENTS, Attr, Kind, OpImpl, Param, need, non_negative, op_type, out_size
from .neurons import Neuron
from .synaptic import IN_KINDS, Synaptic

NEURON_PARAMS = ("a_m", "b_m", "c_m", "a_s", "b_s", "vth", "vreset", "vmin")
# the NIR fields a neuron node may carry (importer.NIR_FIELDS), kept for export
NIR_FIELDS = ("tau", "tau_mem", "tau_syn", "r", "v_leak", "v_threshold", "v_reset", "w_in", "threshold")


def _pair(check):
    def test(v):
        if len(v) != 2:
            return "must be two integers (rows, columns)"
        return next((m for m in map(check, v) if m), None)
    return test


def _positive(v):
    return None if v >= 1 else "must be >= 1"


def _dims(v):
    return None if v and all(d >= 1 for d in v) else "must be a non-empty list of sizes >= 1"


def _delay_steps(arr):
    if np.any(arr < 0) or np.any(arr != np.round(arr)):
        return "must hold whole, non-negative numbers of steps"
    if (float(arr.max(initial=0)) + 1) * max(arr.size, 1) > MAX_ELEMENTS:
        return f"needs a ring buffer above {MAX_ELEMENTS} elements"
    return None


@op_type("nir_neuron")
class NIRNeuron(Neuron):
    """shape: the runtime shape; cuba (0/1), fire (0..3), reset (0..3), floor: the kernel's flags
    (evrt/kernels/nir.py); ref_perm: runtime element j is NIR element ref_perm[j] after a Flatten;
    nir_type: the NIR node type, for export. params NEURON_PARAMS, each of the output's shape."""
    attrs = {"shape": Attr("ints", check=_dims), "cuba": Attr(int, 0, choices=(0, 1)),
             "fire": Attr(int, 1, choices=(0, 1, 2, 3)), "reset": Attr(int, 1, choices=(0, 1, 2, 3)),
             "floor": Attr(bool, False), "ref_perm": Attr("ints?", None), "nir_type": Attr(str, "")}
    params = {**{k: Param(broadcast="same") for k in NEURON_PARAMS},
              **{f"nir_{k}": Param(optional=True, broadcast="ref") for k in NIR_FIELDS}}

    @classmethod
    def shape(cls, a, p, ins):
        shape = tuple(a["shape"])
        n = int(np.prod(shape))
        need(n == int(np.prod(ins[0])), f"neurons of shape {shape} do not fit the input")
        perm = a["ref_perm"]
        need(perm is None or sorted(perm) == list(range(n)), f"ref_perm is not a permutation of {n} elements")
        return shape

    def __init__(self, op, in_shapes, dtype, resolved=None):
        super().__init__(op, in_shapes, dtype, resolved)
        n = int(np.prod(self.out_shape))
        self.p = [self.param(k).reshape(n) for k in NEURON_PARAMS]
        if self.a["fire"] == 3 and np.any(self.p[5] == 0):
            raise GraphError(f"op {self.name!r} (nir_neuron): a zero threshold with several spikes per step "
                             f"(fire 3 divides by it)")
        self.i = np.zeros(n, dtype)
        self.flags = (self.a["cuba"], self.a["fire"], self.a["reset"], self.a["floor"])
        self.no_force = np.zeros(0, dtype)

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
class SumPool(Synaptic):
    """k (kh, kw), stride (sh, sw), pad (ph, pw) on an (H, W, C) map, zero padding, floor mode; the
    window sums times `scale`. Output (Ho, Wo, C)."""
    attrs = {"k": Attr("ints", check=_pair(_positive)), "stride": Attr("ints", check=_pair(_positive)),
             "pad": Attr("ints", [0, 0], check=_pair(non_negative)), "scale": Attr(float, 1.0),
             "in_kind": Attr(str, "spike", choices=IN_KINDS[1:])}

    @classmethod
    def shape(cls, a, p, ins):
        need(len(ins[0]) == 3, "expects an (H, W, C) map")
        (h, w, c), (kh, kw), (sh, sw), (ph, pw) = ins[0], a["k"], a["stride"], a["pad"]
        return (out_size(h, kh, sh, ph), out_size(w, kw, sw, pw), c)

    def __init__(self, op, in_shapes, dtype, resolved=None):
        super().__init__(op, in_shapes, dtype, resolved)
        kh, kw = self.a["k"]
        ho, wo, c = self.out_shape
        self.dense_ops = ho * wo * c * kh * kw
        self.scale = dtype(self.a["scale"])

    def run(self, inputs, ctx):
        x = np.ascontiguousarray(inputs[0]).reshape(self.in_shapes[0])
        (kh, kw), (sh, sw), (ph, pw) = self.a["k"], self.a["stride"], self.a["pad"]
        self.count(sumpool2d(x, kh, kw, sh, sw, ph, pw, self.out))
        if self.scale != 1:
            self.out *= self.scale
        return self.out


@op_type("scale")
class Scale(OpImpl):
    """out = x * s, element-wise; s has the output's shape (runtime layout). Real-valued: one MAC per
    non-zero input."""
    kind = Kind.SYNAPTIC
    params = {"s": Param(broadcast="same")}

    def __init__(self, op, in_shapes, dtype, resolved=None):
        super().__init__(op, in_shapes, dtype, resolved)
        self.s = self.param("s")
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
    """shape (runtime), ref_shape (NIR layout of one step's input). A (C, H, W) or (C, L) input is
    transposed to channels-last; vectors pass as they are."""
    kind = Kind.INPUT
    attrs = {"shape": Attr("ints", check=_dims), "ref_shape": Attr("ints", check=_dims)}

    @classmethod
    def shape(cls, a, p, ins):
        ref, shape = tuple(a["ref_shape"]), tuple(a["shape"])
        want = ref[1:] + ref[:1] if len(ref) in (2, 3) else ref
        need(shape == want, f"shape {shape} is not the channels-last form {want} of ref_shape {ref}")
        return shape

    def run(self, inputs, ctx):
        x = np.asarray(inputs[0])
        ref = tuple(self.a["ref_shape"])
        if x.shape != ref:
            raise GraphError(f"{self.name}: expected an input of shape {ref} per step, got {x.shape}")
        self.out[...] = np.moveaxis(x, 0, -1) if x.ndim in (2, 3) else x
        self.stats.in_nonzero = int(np.count_nonzero(self.out))
        return self.out


@op_type("delay")
class Delay(OpImpl):
    """NIR Delay, discretised: out_t[j] = x_{t - d[j]}[j] (zero before the first input). d: whole steps
    per element, the output's shape; nir_delay: the node's delays in seconds (NIR layout, for export).
    A ring buffer of max(d)+1 steps; reset clears it."""
    kind = Kind.STRUCTURAL
    params = {"d": Param(broadcast="same", check=_delay_steps), "nir_delay": Param(optional=True, broadcast="ref")}

    def __init__(self, op, in_shapes, dtype, resolved=None):
        super().__init__(op, in_shapes, dtype, resolved)
        self.d = np.asarray(op.params["d"]).astype(np.int64).reshape(-1)
        n = self.d.size
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
