"""Op implementations: the glue between a folded graph's ops and the numba kernels.

Each op type is a class that, given its `Op` record and its input shapes, allocates its output buffer
and state once, then runs one timestep per `run()` call. Ops record what the kernels report (ACs,
MACs, spikes) in `self.stats`; the Session sums them into the report. Runtime layout is channels-last
(see docs/INTERNALS.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kernels as K
from .kernels.conv import conv2d_scatter_nnz
from .errors import GraphError
from .graph import Op

OP_TYPES: dict[str, type["OpImpl"]] = {}


def op_type(name: str):
    def register(cls):
        cls.type_name = name
        OP_TYPES[name] = cls
        return cls
    return register


@dataclass
class EventBatch:
    """One step's raw events as the first layer consumes them (already in the model's input grid)."""
    ys: np.ndarray
    xs: np.ndarray
    cs: np.ndarray

    def __len__(self) -> int:
        return len(self.ys)


class StepStats:
    __slots__ = ("acs", "macs", "spikes", "in_nonzero")

    def __init__(self):
        self.acs = self.macs = self.spikes = self.in_nonzero = 0


class OpImpl:
    type_name = ""
    is_neuron = False
    is_synaptic = False

    def __init__(self, op: Op, in_shapes: list[tuple], dtype):
        self.op = op
        self.name = op.name
        self.dtype = dtype
        self.in_shapes = in_shapes
        self.stats = StepStats()
        self.out_shape = self.infer(in_shapes)
        self.out = np.zeros(self.out_shape, dtype)
        self.dense_ops = 0   # MACs a dense implementation of this op performs per step
        self.in_size = int(np.prod(in_shapes[0])) if in_shapes and in_shapes[0] else 0

    def attr(self, key, default=None):
        return self.op.attrs.get(key, default)

    def param(self, key) -> np.ndarray:
        try:
            return np.ascontiguousarray(self.op.params[key], dtype=self.dtype)
        except KeyError:
            raise GraphError(f"op {self.name!r} ({self.type_name}) lacks parameter {key!r}") from None

    def infer(self, in_shapes):
        return in_shapes[0]

    def reset(self):
        pass

    def run(self, inputs: list, ctx) -> np.ndarray:
        raise NotImplementedError

    @property
    def neurons(self) -> int:
        return int(np.prod(self.out_shape)) if self.is_neuron else 0


# ----------------------------------------------------------------------------------------------- input

def _count_frame(ev, width, height, dtype):
    flat = (ev["on"].astype(np.int64) * height + ev["y"]) * width + ev["x"]
    return np.bincount(flat, minlength=2 * height * width).astype(dtype).reshape(2, height, width)


@op_type("events_in")
class EventsIn(OpImpl):
    """Step input. Events are mapped onto the model's input grid (optionally 2x2-binned); a frame given
    in the reference layout (C, H, W) is transposed to channels-last.

    attrs: width, height (model input grid), channels, sensor_width, sensor_height,
           bin (1 or 2: event coordinates are divided by it — the 1/4 of avg-pooling is folded into the
           first conv's weights), frame_channels (channels a reference frame carries; extra channels that
           the fold removed are checked and dropped).
    """

    def infer(self, in_shapes):
        return (self.attr("height"), self.attr("width"), self.attr("channels"))

    def run(self, inputs, ctx):
        x = inputs[0]
        st = self.stats
        if isinstance(x, np.ndarray) and x.dtype.names is not None:
            b = int(self.attr("bin", 1))
            sw, sh = self.attr("sensor_width"), self.attr("sensor_height")
            keep = (x["x"] < sw) & (x["y"] < sh)
            dropped = int(len(x) - np.count_nonzero(keep))
            if dropped:
                ctx.dropped_events += dropped
                x = x[keep]
            if self.attr("resize") == "antialias":
                return self._resized_frame(x, sw, sh)
            ys = (x["y"] // b).astype(np.int64)
            xs = (x["x"] // b).astype(np.int64)
            cs = x["on"].astype(np.int64)
            st.in_nonzero = len(ys)
            return EventBatch(ys, xs, cs)
        frame = np.asarray(x)
        c = self.out_shape[2]
        if frame.ndim == 3 and frame.shape[1:] == (self.attr("sensor_height"), self.attr("sensor_width")) \
                and frame.shape[1:] != self.out_shape[:2]:
            raise GraphError(f"{self.name}: give frames already resized to {self.out_shape[:2]} "
                             f"(the reference input), or give events")
        fc = int(self.attr("frame_channels", c))
        if frame.ndim != 3 or frame.shape[0] != fc or frame.shape[1:] != self.out_shape[:2]:
            raise GraphError(f"{self.name}: expected a frame of shape {(fc,) + self.out_shape[:2]} "
                             f"(C, H, W) or an event array, got {frame.shape}")
        if fc > c:
            # The sum channel was folded into the first conv: it must be the sum of the others.
            extra = frame[c:]
            if not np.allclose(extra, frame[:c].sum(axis=0, keepdims=True)[: fc - c], rtol=1e-6, atol=1e-6):
                raise GraphError(f"{self.name}: frame channel {c} is not the sum of channels 0..{c-1}")
            frame = frame[:c]
        self.out[...] = frame.transpose(1, 2, 0)
        st.in_nonzero = int(np.count_nonzero(self.out))
        return self.out

    def _resized_frame(self, ev, sw, sh):
        """Antialiased resize (SpikingResformer): the input is real-valued, so the first layer does
        MACs on the resized frame. Resized in float32 as the reference does."""
        from .framing import resize_frames
        frame = resize_frames(_count_frame(ev, sw, sh, np.float32), "antialias")
        self.out[...] = frame.transpose(1, 2, 0)
        self.stats.in_nonzero = int(np.count_nonzero(self.out))
        return self.out


# ------------------------------------------------------------------------------------------ synaptic

class Synaptic(OpImpl):
    is_synaptic = True

    def count(self, pairs, weighted, x):
        """Spikes and integer counts give ACs (a count c adds c times); real-valued input gives MACs."""
        kind = self.attr("in_kind", "spike")
        if kind == "real":
            self.stats.macs = int(pairs)
        else:
            self.stats.acs = int(round(weighted))


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


@op_type("conv2d")
class Conv2d(Synaptic, PerStep):
    """attrs: stride, pad, groups, in_kind (events|spike|count|real); params w (kh,kw,cin/g,cout), b
    (or per-step (T, kh, kw, cin/g, cout), (T, cout))."""

    def __init__(self, op, in_shapes, dtype):
        super().__init__(op, in_shapes, dtype)
        self.load_weights(op, dtype, 4)
        kh, kw, cin_g, cout = self.w.shape
        ho, wo, _ = self.out_shape
        self.dense_ops = ho * wo * cout * kh * kw * cin_g

    def infer(self, in_shapes):
        h, w, _ = in_shapes[0]
        kh, kw, _, cout = self.op.params["w"].shape[-4:]
        s, p = self.attr("stride", 1), self.attr("pad", 0)
        return ((h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1, cout)

    def run(self, inputs, ctx):
        x = inputs[0]
        self.select(ctx.t)
        s, p = int(self.attr("stride", 1)), int(self.attr("pad", 0))
        if isinstance(x, EventBatch):
            pairs = K.conv2d_events(x.ys, x.xs, x.cs, self.w, self.b, s, p, self.out)
            self.stats.in_nonzero = len(x)
            self.stats.acs = int(pairs)
            return self.out
        # the kernel counts the non-zero inputs in the pass that lists them (no extra scan of x)
        nnz, pairs, weighted = conv2d_scatter_nnz(x, self.w, self.b, s, p, int(self.attr("groups", 1)), self.out)
        self.stats.in_nonzero = int(nnz)
        self.count(pairs, weighted, x)
        return self.out


@op_type("linear")
class Linear(Synaptic, PerStep):
    """Token-wise linear map (also 1x1 convs): x (..., Cin) viewed as (N, Cin); params w (cin, cout), b
    (or per-step (T, cin, cout), (T, cout))."""

    def __init__(self, op, in_shapes, dtype):
        super().__init__(op, in_shapes, dtype)
        self.load_weights(op, dtype, 2)
        n = int(np.prod(in_shapes[0][:-1])) if len(in_shapes[0]) > 1 else 1
        self.dense_ops = n * self.w.shape[0] * self.w.shape[1]
        self.out2 = self.out.reshape(n, self.w.shape[1])

    def infer(self, in_shapes):
        cin, cout = self.op.params["w"].shape[-2:]
        if in_shapes[0][-1] != cin:
            raise GraphError(f"{self.name}: input has {in_shapes[0][-1]} channels, weight expects {cin}")
        return tuple(in_shapes[0][:-1]) + (cout,)

    def run(self, inputs, ctx):
        x = inputs[0]
        self.select(ctx.t)
        x2 = x.reshape(-1, x.shape[-1])
        pairs, weighted = K.linear_scatter(x2, self.w, self.b, self.out2)
        self.stats.in_nonzero = int(pairs) // self.w.shape[1]     # pairs = nnz(x) * Cout (no extra scan)
        self.count(pairs, weighted, x)
        return self.out


# -------------------------------------------------------------------------------------------- neurons

class Neuron(OpImpl):
    """State v has the output's shape; `ctx.trace` records the pre-fire membrane; `ctx.force` replaces
    the output spikes (and so the reset) by given spikes — teacher forcing for parity tests."""
    is_neuron = True

    def __init__(self, op, in_shapes, dtype):
        super().__init__(op, in_shapes, dtype)
        self.v = np.zeros(self.out_shape, dtype)
        self.h = np.zeros(self.out_shape, dtype)
        self.no_h = np.zeros(0, dtype)
        c = self.out_shape[-1]
        vth = self.op.params.get("vth")
        if vth is None:
            self.vth = np.full(c, self.attr("vth", 1.0), dtype)
        elif vth.size <= c:      # per channel (last axis)
            self.vth = np.ascontiguousarray(np.broadcast_to(vth.reshape(-1), (c,)), dtype=dtype)
        else:                    # per element (e.g. per-head thresholds on (heads, L, HW)): kernels index i % size
            self.vth = np.ascontiguousarray(np.broadcast_to(vth, self.out_shape), dtype=dtype).reshape(-1)

    def reset(self):
        self.v[...] = 0

    def run(self, inputs, ctx):
        x = np.ascontiguousarray(inputs[0], dtype=self.dtype).reshape(self.out_shape)
        h = self.h if ctx.trace else self.no_h
        forced = ctx.force.get(self.name) if ctx.force else None
        if forced is not None:
            f = np.ascontiguousarray(forced, dtype=self.dtype).reshape(self.out_shape)
            n = self.fire_forced(x, f, h)
        else:
            n = self.fire(x, h)
        self.stats.spikes = int(n)
        if ctx.trace:
            ctx.record(self.name, self.out, self.h)
        return self.out


@op_type("lif")
class LIF(Neuron):
    """LIF / PLIF (spec §1.2): attrs k (1/tau or float32 sigmoid(w)), vth (or param vth per channel)."""

    def __init__(self, op, in_shapes, dtype):
        super().__init__(op, in_shapes, dtype)
        self.k = dtype(self.attr("k", 0.5))

    def fire(self, x, h):
        return K.lif_step(x, self.v, self.k, self.vth, self.out, h)

    def fire_forced(self, x, f, h):
        return K.lif_step_forced(x, self.v, self.k, self.vth, f, self.out, h)


@op_type("if")
class IF(Neuron):
    """Integrate-and-fire with soft reset; attrs v0 (initial membrane as a fraction of vth), delay
    (steps during which the neuron integrates but may not fire)."""

    def __init__(self, op, in_shapes, dtype):
        super().__init__(op, in_shapes, dtype)
        self.step_index = 0
        self.reset()

    def reset(self):
        self.v[...] = self.vth * self.attr("v0", 0.0)
        self.step_index = 0

    def fire(self, x, h):
        delay = int(self.attr("delay", 0))
        if self.step_index < delay:
            self.v += x
            if h.size:
                h[...] = self.v
            self.out[...] = 0
            n = 0
        else:
            n = K.if_step(x, self.v, self.vth, self.out, h)
        self.step_index += 1
        return n

    def fire_forced(self, x, f, h):
        self.step_index += 1
        return K.if_step_forced(x, self.v, self.vth, f, self.out, h)


@op_type("table_lif")
class TableLIF(Neuron):
    """LIF driven by per-(t, channel) tables r, c, theta, sign (spec §6: TSBN folded into the neuron).
    Beyond the last row the last step's tables are held (continuous mode)."""

    def __init__(self, op, in_shapes, dtype):
        super().__init__(op, in_shapes, dtype)
        self.r, self.c, self.theta = self.param("r"), self.param("c"), self.param("theta")
        self.sign = self.param("sign")
        self.k = dtype(self.attr("k", 0.5))
        self.t = 0

    def reset(self):
        self.v[...] = 0
        self.t = 0

    def _row(self):
        t = min(self.t, self.r.shape[0] - 1)
        self.t += 1
        self.row = t
        return self.r[t], self.c[t], self.theta[t], self.sign[t]

    def _unscale(self, h):
        """The trace records the reference membrane V = a_t V' (a_t = vth / theta_t), not V'."""
        if h.size:
            h *= (self.attr("vth", 1.0) / self.theta[self.row]).astype(self.dtype)

    def fire(self, x, h):
        r, c, th, sg = self._row()
        n = K.table_step(x, self.v, r, c, th, sg, self.k, self.out, h)
        self._unscale(h)
        return n

    def fire_forced(self, x, f, h):
        r, c, th, sg = self._row()
        n = K.table_step_forced(x, self.v, r, c, th, sg, self.k, f, self.out, h)
        self._unscale(h)
        return n


# --------------------------------------------------------------------------------------- structural

@op_type("maxpool")
class MaxPool(OpImpl):
    """attrs k, stride, pad (floor mode, -inf padding) on an (H, W, C) map."""

    def infer(self, in_shapes):
        h, w, c = in_shapes[0]
        k, s, p = self.attr("k", 3), self.attr("stride", 2), self.attr("pad", 1)
        return ((h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1, c)

    def run(self, inputs, ctx):
        K.maxpool2d(inputs[0], int(self.attr("k", 3)), int(self.attr("stride", 2)), int(self.attr("pad", 1)),
                    self.out)
        return self.out


@op_type("add")
class Add(OpImpl):
    def run(self, inputs, ctx):
        np.add(inputs[0].reshape(self.out_shape), inputs[1].reshape(self.out_shape), out=self.out)
        for extra in inputs[2:]:
            self.out += extra.reshape(self.out_shape)
        return self.out


@op_type("reshape")
class Reshape(OpImpl):
    """attrs shape: the runtime shape of the output (views only: channels-last makes (H,W,C)<->(N,C) free)."""

    def infer(self, in_shapes):
        shape = tuple(self.attr("shape"))
        if int(np.prod(shape)) != int(np.prod(in_shapes[0])):
            raise GraphError(f"{self.name}: cannot reshape {in_shapes[0]} to {shape}")
        return shape

    def run(self, inputs, ctx):
        return inputs[0].reshape(self.out_shape)


@op_type("mean")
class Mean(OpImpl):
    """Mean over every axis but channels: (H, W, C) or (N, C) -> (C,)."""

    def infer(self, in_shapes):
        return (in_shapes[0][-1],)

    def run(self, inputs, ctx):
        x = inputs[0]
        np.mean(x.reshape(-1, x.shape[-1]), axis=0, out=self.out)
        return self.out


@op_type("mask")
class Mask(OpImpl):
    """SDT's spike mask: q (N, C) AND kv (C,) — a logical AND, no arithmetic counted."""

    def run(self, inputs, ctx):
        np.multiply(inputs[0], inputs[1].reshape(1, -1), out=self.out)
        return self.out


# ---------------------------------------------------------------------------------------- attention

@op_type("ssa")
class SSA(OpImpl):
    """Spikformer's spiking self-attention (Q K^T) V per head, integer-valued, unscaled (the scale is
    folded into the next neuron's threshold). inputs q, k, v (N, C); attrs heads."""
    is_synaptic = True

    def __init__(self, op, in_shapes, dtype):
        super().__init__(op, in_shapes, dtype)
        n, c = in_shapes[0]
        self.dense_ops = 2 * n * n * c

    def run(self, inputs, ctx):
        q, k, v = inputs
        self.stats.acs = int(K.ssa(q, k, v, int(self.attr("heads")), self.out))
        return self.out


@op_type("sdsa_kv")
class SDSAKV(OpImpl):
    """SDT v1 (code version): column sum over tokens of K∘V -> (C,). inputs k, v (N, C)."""
    is_synaptic = True

    def __init__(self, op, in_shapes, dtype):
        super().__init__(op, in_shapes, dtype)
        n, c = in_shapes[0]
        self.dense_ops = n * c

    def infer(self, in_shapes):
        return (in_shapes[0][-1],)

    def run(self, inputs, ctx):
        k, v = inputs
        self.stats.acs = int(K.sdsa_kv(k, v, self.out))
        return self.out


@op_type("dssa_scores")
class DSSAScores(OpImpl):
    """SpikingResformer DSSA first product: inputs y (L, 2C) real, s (HW, C) spikes -> (heads, L, HW)."""
    is_synaptic = True

    def infer(self, in_shapes):
        (l, _), (hw, _) = in_shapes[0], in_shapes[1]
        return (self.attr("heads"), l, hw)

    def __init__(self, op, in_shapes, dtype):
        super().__init__(op, in_shapes, dtype)
        (l, _), (hw, c) = in_shapes[0], in_shapes[1]
        self.dense_ops = l * hw * c

    def run(self, inputs, ctx):
        y, s = inputs
        self.stats.acs = int(K.dssa_scores(y, s, int(self.attr("heads")), self.out))
        return self.out


@op_type("dssa_out")
class DSSAOut(OpImpl):
    """DSSA second product: inputs y (L, 2C) real, sa (heads, L, HW) spikes -> (HW, C)."""
    is_synaptic = True

    def infer(self, in_shapes):
        (_, c2), (_, _, hw) = in_shapes[0], in_shapes[1]
        return (hw, c2 // 2)

    def __init__(self, op, in_shapes, dtype):
        super().__init__(op, in_shapes, dtype)
        (l, c2), (_, _, hw) = in_shapes[0], in_shapes[1]
        self.dense_ops = hw * (c2 // 2) * l

    def run(self, inputs, ctx):
        y, sa = inputs
        self.stats.acs = int(K.dssa_out(y, sa, int(self.attr("heads")), self.out))
        return self.out


def build(op: Op, in_shapes: list[tuple], dtype) -> OpImpl:
    try:
        cls = OP_TYPES[op.type]
    except KeyError:
        raise GraphError(f"op {op.name!r} has unknown type {op.type!r}; known: {sorted(OP_TYPES)}") from None
    return cls(op, in_shapes, dtype)


__all__ = ["OP_TYPES", "EventBatch", "OpImpl", "build"]

# CSDformer-style converted models: IF/DIF neurons and temporally decomposed products.
from . import ops_temporal  # noqa: E402,F401
from . import ops_nir  # noqa: E402,F401  (NIR-imported models: evrt/nir/)
