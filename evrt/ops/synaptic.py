"""Synaptic ops: weights driven by the non-zero inputs (conv2d, linear). They count ACs for spike or
count input and MACs for real-valued input (docs/SEMANTICS.md, "Counting")."""
from __future__ import annotations

import numpy as np

from .. import kernels as K
from .base import Attr, Kind, OpImpl, Param, need, non_negative, op_type, out_size, positive
from .input import EventBatch
from .quantised import Int8Weights, check_int8_params, check_scale

IN_KINDS = ("events", "spike", "count", "real")


class Synaptic(OpImpl):
    kind = Kind.SYNAPTIC
    source = None    # the neuron op whose output is this op's input, when it lists its spikes

    def takes_spikes(self) -> bool:
        """Whether the float event path can read a spike list instead of scanning its input."""
        return False

    def spike_list(self):
        """The producing neuron's list for this step's input, or None (then the kernel scans)."""
        return self.source.spikes if self.source is not None else None

    def count(self, c, x=None):
        """Spikes and integer counts give ACs (a count c adds c times); real-valued input gives MACs.
        The input's non-zeros: for event counts (x given) the events, as an event list counts them."""
        if self.a["in_kind"] == "real":
            self.stats.macs = int(c.pairs)
        else:
            self.stats.acs = int(round(c.weighted))
        self.stats.in_nonzero = int(c.nnz) if x is None or self.a["in_kind"] != "events" \
            else int(round(float(x.sum(dtype=np.float64))))


class PerStep:
    """Weights folded per timestep (RTFormer's TSBN/branch folds): params carry a leading T axis and
    the op picks row min(t, T-1) — a table look-up, never a per-step multiply."""

    def load_weights(self, op, dtype, ndim):
        self.w_all = self.param("w")
        self.per_step = self.w_all.ndim == ndim + 1
        if "b" in op.params:
            self.b_all = self.param("b")
        else:
            self.b_all = np.zeros(self.w_all.shape[:-ndim] + (self.w_all.shape[-1],), dtype)
        self.w, self.b = (self.w_all[0], self.b_all[0]) if self.per_step else (self.w_all, self.b_all)

    def select(self, t):
        if self.per_step:
            i = min(t, self.w_all.shape[0] - 1)
            self.w, self.b = self.w_all[i], self.b_all[i]


def _pair_of(check):
    """Check for an optional (h, w) pair attribute: null, or two integers each passing `check`."""
    def pair(v):
        if v is None:
            return None
        if len(v) != 2:
            return "must be a pair [h, w]"
        if max(v) > 2**31:
            return "is too large"
        return next((m for m in map(check, v) if m), None)
    return pair


@op_type("conv2d")
class Conv2d(Synaptic, PerStep, Int8Weights):
    """(H, W, Cin) -> (Ho, Wo, Cout); zero padding; w (kh, kw, Cin/groups, Cout). `stride` and `pad`
    apply to both axes; the optional pairs `stride_hw`, `pad_hw` (per axis, replacing them) and
    `dilation` describe layers imported from other frameworks, run by the general kernel
    (conv2d_general) whenever they differ from the square undilated case."""
    attrs = {"stride": Attr(int, 1, check=positive), "pad": Attr(int, 0, check=non_negative),
             "groups": Attr(int, 1, check=positive), "in_kind": Attr(str, "spike", choices=IN_KINDS),
             "stride_hw": Attr("ints?", None, check=_pair_of(positive)),
             "pad_hw": Attr("ints?", None, check=_pair_of(non_negative)),
             "dilation": Attr("ints?", None, check=_pair_of(positive))}
    params = {"w": Param(("kh", "kw", "cin_g", "cout"), per_step=True),
              "b": Param(("cout",), optional=True, per_step=True),
              "w_scale": Param(("cout",), optional=True, per_step=True, check=check_scale)}   # int8 files
    check_params = staticmethod(check_int8_params)

    @staticmethod
    def geometry(a):
        """((sh, sw), (ph, pw), (dh, dw)) from the attributes."""
        s = tuple(a["stride_hw"]) if a["stride_hw"] is not None else (a["stride"], a["stride"])
        p = tuple(a["pad_hw"]) if a["pad_hw"] is not None else (a["pad"], a["pad"])
        d = tuple(a["dilation"]) if a["dilation"] is not None else (1, 1)
        return tuple(map(int, s)), tuple(map(int, p)), tuple(map(int, d))

    @classmethod
    def bind(cls, a, ins):
        need(len(ins[0]) == 3, "expects an (H, W, C) map")
        need(ins[0][2] % a["groups"] == 0, f"{ins[0][2]} input channels are not divisible by {a['groups']} groups")
        return {"cin_g": ins[0][2] // a["groups"]}

    @classmethod
    def shape(cls, a, p, ins):
        h, w, _ = ins[0]
        kh, kw, _, cout = p["w"][-4:]
        need(cout % a["groups"] == 0, f"{cout} output channels are not divisible by {a['groups']} groups")
        (sh, sw), (ph, pw), (dh, dw) = cls.geometry(a)
        return (out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw), cout)

    def __init__(self, op, in_shapes, dtype, resolved=None):
        super().__init__(op, in_shapes, dtype, resolved)
        self.load_scaled(op, dtype, 4)
        kh, kw, cin_g, cout = self.w.shape
        ho, wo, _ = self.out_shape
        self.dense_ops = ho * wo * cout * kh * kw * cin_g
        s, p, d = self.geometry(self.a)
        # the fast kernels take one stride and one pad for both axes and no dilation
        self.general = (s, p, d) if s[0] != s[1] or p[0] != p[1] or d != (1, 1) else None
        self.s, self.p = s[0], p[0]

    def takes_spikes(self) -> bool:
        kh, kw, cig, cout = self.w.shape if self.w is not None else (1, 1, 1, 1)
        depthwise = cig == 1 and cout == self.a["groups"] > 1      # its own kernel, which scans
        return not self.int8 and self.general is None and not depthwise

    def dense_above(self) -> float:
        kh, kw, cig, cout = self.w.shape
        return K.default_dense_above(kh, kw, cig, cout // self.a["groups"], self.a["groups"])

    def run(self, inputs, ctx):
        x = inputs[0]
        if self.int8:
            geo = self.general or ((self.s, self.s), (self.p, self.p), (1, 1))
            return self.run_int8(x, ctx, geo + (self.a["groups"],))
        self.select(ctx.t)
        s, p = self.s, self.p
        if isinstance(x, EventBatch):
            if self.general:
                c = K.conv2d_general_events(x.ys, x.xs, x.cs, self.w, self.b, *self.general, self.out)
            else:
                c = K.conv2d_events(x.ys, x.xs, x.cs, self.w, self.b, s, p, self.out)
            self.stats.in_nonzero = int(c.nnz)
            self.stats.acs = int(c.pairs)
            return self.out
        if self.general:
            self.count(K.conv2d_general(x, self.w, self.b, *self.general, self.a["groups"], self.out), x)
            return self.out
        # the kernel counts the non-zero inputs in the pass that lists them (no extra scan of x), or
        # takes both from the producing neuron's spike list
        self.count(K.conv2d_scatter(x, self.w, self.b, s, p, self.a["groups"], self.out, spikes=self.spike_list()), x)
        return self.out


@op_type("linear")
class Linear(Synaptic, PerStep, Int8Weights):
    """Token-wise linear map (also 1x1 convs): x (..., Cin) viewed as (N, Cin); w (Cin, Cout)."""
    attrs = {"in_kind": Attr(str, "spike", choices=IN_KINDS[1:])}
    params = {"w": Param(("cin", "cout"), per_step=True), "b": Param(("cout",), optional=True, per_step=True),
              "w_scale": Param(("cout",), optional=True, per_step=True, check=check_scale)}   # int8 files
    check_params = staticmethod(check_int8_params)

    @classmethod
    def bind(cls, a, ins):
        return {"cin": ins[0][-1]}

    @classmethod
    def shape(cls, a, p, ins):
        return tuple(ins[0][:-1]) + (p["w"][-1],)

    def __init__(self, op, in_shapes, dtype, resolved=None):
        super().__init__(op, in_shapes, dtype, resolved)
        self.load_scaled(op, dtype, 2)
        n = int(np.prod(in_shapes[0][:-1])) if len(in_shapes[0]) > 1 else 1
        self.dense_ops = n * self.w.shape[0] * self.w.shape[1]
        self.out2 = self.out.reshape(n, self.w.shape[1])

    def takes_spikes(self) -> bool:
        return not self.int8

    def dense_above(self) -> float:
        return K.DENSE_ABOVE_LINEAR

    def run(self, inputs, ctx):
        x = inputs[0]
        if self.int8:
            return self.run_int8(x, ctx, None)
        self.select(ctx.t)
        self.count(K.linear_scatter(x.reshape(-1, x.shape[-1]), self.w, self.b, self.out2, spikes=self.spike_list()))
        return self.out
