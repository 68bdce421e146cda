"""The int8 weight mode of the synaptic ops conv2d and linear (docs/SEMANTICS.md, "Int8 weights").

A `Session(graph, precision="int8")` calls `use_int8()` on every op that has it. The op then holds
int8 weights with per-output-channel scales (from the file when it stores them, else quantised from
its float weights at load by `quantise` below) and runs its step as
    acc = Σ x · q           integer adds into an int32 accumulator (spike or count input x)
    out = acc · scale + b   once per output neuron, in float64, rounded into the float32 output.
Real-valued input (`in_kind == "real"`: the resized frame of SpikingResformer, the mean-pooled tokens
of a head) cannot be summed in integers; those layers run the float kernels on the dequantised
weights q · scale (their weights are still the int8 ones). Counts are made by the same rule as the
float path (the integer kernels count from the input and geometry alone).
"""
from __future__ import annotations

import numpy as np

from ..errors import GraphError
from ..kernels import quant as KQ
from .input import EventBatch

QMAX = 127
QUANTISED_TYPES = ("conv2d", "linear")
SCALE_KEY = "w_scale"


def quantise(w: np.ndarray, per_step: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(q int8 of w's shape, scale float32 (..., Cout)): one scale per output channel (the last axis),
    per timestep when `per_step` (a leading T axis). The scale is rounded to float32 first and q is
    computed from that float32 scale, so q * scale is exactly what the runtime dequantises to."""
    w = np.asarray(w, dtype=np.float64)
    lead = w.shape[:1] if per_step else ()
    red = tuple(range(len(lead), w.ndim - 1))
    amax = np.max(np.abs(w), axis=red) if red else np.abs(w)
    scale = np.where(amax > 0, amax / QMAX, 1.0).astype(np.float32)
    q = np.rint(w / expand(scale.astype(np.float64), w.ndim))
    return np.clip(q, -QMAX, QMAX).astype(np.int8), scale


def expand(scale: np.ndarray, ndim: int) -> np.ndarray:
    """A (..., Cout) scale table shaped to broadcast against weights of `ndim` axes: the middle axes
    (kernel taps, input channels) become ones."""
    scale = np.asarray(scale)
    lead = scale.shape[:-1]
    return scale.reshape(lead + (1,) * (ndim - len(lead) - 1) + scale.shape[-1:])


def dequantise(q: np.ndarray, scale: np.ndarray, dtype=np.float64) -> np.ndarray:
    """q * scale in `dtype` (the float weights an int8 file stands for)."""
    return (q.astype(np.float64) * expand(scale, q.ndim).astype(np.float64)).astype(dtype)


def check_int8_params(params: dict) -> str | None:
    """The cross-parameter rule of a quantised conv2d/linear (the per-array rules are its Param
    declarations): `w_scale` goes with int8 `w`, and int8 `w` needs its `w_scale`."""
    w = params.get("w")
    s = params.get(SCALE_KEY)
    if not isinstance(w, np.ndarray):
        return None
    if s is not None and w.dtype != np.int8:
        return f"parameter 'w' has dtype {w.dtype} but the op carries {SCALE_KEY!r}: quantised weights are int8"
    if s is None and w.dtype == np.int8:
        return f"parameter 'w' is int8 without {SCALE_KEY!r} (the per-output-channel scales)"
    if s is not None and s.dtype.kind != "f":
        return f"parameter {SCALE_KEY!r} has dtype {s.dtype}; expected float scales"
    return None


def check_scale(arr: np.ndarray) -> str | None:
    """Param check of w_scale (non-finite values are refused before this runs)."""
    if arr.size and not np.all(arr > 0):
        return "must be > 0 everywhere (a zero or negative scale)"
    return None


class Int8Weights:
    """Mixin for PerStep synaptic ops (w_all, b_all, per_step, select) that adds the int8 mode."""
    int8 = False

    def load_scaled(self, op, dtype, ndim):
        """The float weights: the stored ones, or q · scale for an int8 file."""
        self.load_weights(op, dtype, ndim)
        if SCALE_KEY in op.params:
            self.w_all = np.ascontiguousarray(dequantise(op.params["w"], op.params[SCALE_KEY], dtype))
            self.w = self.w_all[0] if self.per_step else self.w_all
        self.int8_terms = int(np.prod(self.w.shape[:-1]))  # weights one output sums (kh*kw*cig, or cin)

    def use_int8(self) -> None:
        op = self.op
        if SCALE_KEY in op.params:
            q_all, s_all = op.params["w"], op.params[SCALE_KEY]
        else:
            q_all, s_all = quantise(op.params["w"], self.per_step)
        if self.a["in_kind"] == "real":
            self.w_all = np.ascontiguousarray(dequantise(q_all, s_all, self.dtype))
            self.w = self.w_all[0] if self.per_step else self.w_all
            return
        self.int8 = True
        self.q_all = np.ascontiguousarray(q_all, dtype=np.int8)
        self.s_all = np.ascontiguousarray(s_all, dtype=np.float64)
        b = op.params.get("b")
        self.b64_all = (np.zeros(self.s_all.shape, np.float64) if b is None
                        else np.ascontiguousarray(b, dtype=np.float64))
        self.acc = np.zeros(self.out_shape, np.int32)
        self.w_all = self.w = None   # the float copy is not used again: hold only the int8 weights
        self._pick(0)

    def _pick(self, t):
        i = min(t, self.q_all.shape[0] - 1) if self.per_step else None
        self.q8, self.q_scale, self.q_bias = ((self.q_all[i], self.s_all[i], self.b64_all[i]) if i is not None
                                              else (self.q_all, self.s_all, self.b64_all))

    def run_int8(self, x, ctx, geometry):
        """One step in int8 mode; geometry = (stride, pad, dilation, groups) as (h, w) pairs."""
        self._pick(ctx.t)
        stride, pad, dil, groups = geometry or ((1, 1), (0, 0), (1, 1), 1)
        if isinstance(x, EventBatch):
            # each event adds one weight (|q| <= 128) to an output at most once
            acc = self.acc if KQ.int32_holds(len(x), 1) else np.zeros(self.out_shape, np.int64)
            c = KQ.conv2d_events_int(x.ys, x.xs, x.cs, self.q8, stride, pad, dil, acc)
            self.stats.in_nonzero = int(c.nnz)
            self.stats.acs = int(c.pairs)
        else:
            c = self._int_sum(x, stride, pad, dil, groups, self.acc)
            acc = self.acc
            if not KQ.int32_holds(self._vmax, self.int8_terms):   # could have wrapped: redo in int64
                acc = np.zeros(self.out_shape, np.int64)
                c = self._int_sum(x, stride, pad, dil, groups, acc)
            self.count(c, x)
        KQ.apply_scale(acc, self.q_scale, self.q_bias, self.out)
        return self.out

    def _int_sum(self, x, stride, pad, dil, groups, acc):
        if self.q8.ndim == 2:
            c, bad, self._vmax = KQ.linear_int(x.reshape(-1, x.shape[-1]), self.q8, acc.reshape(-1, self.q8.shape[1]))
        else:
            c, bad, self._vmax = KQ.conv2d_int(x, self.q8, stride, pad, dil, groups, acc)
        if bad >= 0:
            v = np.asarray(x).reshape(-1)[bad]
            raise GraphError(f"op {self.name!r}: int8 mode sums spikes or counts in integers, but input "
                             f"element {bad} is {v!r} (not a whole number)")
        return c
