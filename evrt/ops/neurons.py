"""Spiking neurons (docs/SEMANTICS.md, "Neurons"): state v has the output's shape; `ctx.trace` records
the pre-fire membrane; `ctx.force` replaces the output spikes (and so the reset) by given spikes —
teacher forcing for the parity tests."""
from __future__ import annotations

import numpy as np

from .. import kernels as K
from .base import Attr, Kind, OpImpl, Param, op_type


def _flat(*arrays):
    """Flat views of C-contiguous arrays: the neuron kernels work element-wise, and one 1-D signature
    per kernel (instead of one per rank of the layers that use it) is what numba compiles on a cold
    start (docs/INTERNALS.md "Start-up")."""
    return tuple(a.reshape(-1) for a in arrays)


# Spike density below which a neuron lists its spikes for its consumers (and they stop scanning):
# above it, the list costs the neuron more than the consumers' vectorised scans cost them. Measured on
# the three benchmark models (tools/bench_spike_lists.py): see docs/INTERNALS.md "Spike lists".
LIST_BELOW = 0.1


class Neuron(OpImpl):
    kind = Kind.NEURON

    def __init__(self, op, in_shapes, dtype, resolved=None):
        super().__init__(op, in_shapes, dtype, resolved)
        self.v = np.zeros(self.out_shape, dtype)
        self.h = np.zeros(self.out_shape, dtype)
        self.no_h = np.zeros(0, dtype)
        self.idx = None      # int32 buffer for the spike list, when a consumer reads it (list_spikes)
        self.spikes = None   # (idx, n) after an unforced step that listed its spikes, else None
        self.list_below = 0.0   # list only while the last step's spike density was below this
        self.last_density = 0.0
        c = self.out_shape[-1]
        vth = self.op.params.get("vth")
        if vth is None:
            self.vth = np.full(c, self.attr("vth", 1.0), dtype)
        elif vth.size in (1, c):   # per channel (last axis)
            self.vth = np.ascontiguousarray(np.broadcast_to(vth.reshape(-1), (c,)), dtype=dtype)
        else:                      # per element (e.g. per-head thresholds on (heads, L, HW)): kernels index i % size
            self.vth = np.ascontiguousarray(np.broadcast_to(vth, self.out_shape), dtype=dtype).reshape(-1)

    def reset(self):
        self.v[...] = 0
        self.last_density = 0.0

    lists_spikes = False     # the kernel can list the fired indices while it thresholds (fire(..., idx))

    def list_spikes(self, below=1.0):
        """From now on, emit each unforced step's spike list (docs/INTERNALS.md "Spike lists") while the
        previous step's spike density was below `below` (the consumers' dense-path thresholds: above
        them they multiply the dense map and the list would be wasted work)."""
        if self.lists_spikes:
            if self.idx is None:
                self.idx = np.empty(int(np.prod(self.out_shape)), np.int32)
            self.list_below = max(self.list_below, below)

    def run(self, inputs, ctx):
        x = np.ascontiguousarray(inputs[0], dtype=self.dtype).reshape(self.out_shape)
        h = self.h if ctx.trace else self.no_h
        forced = ctx.force.get(self.name) if ctx.force else None
        if forced is not None:
            f = np.ascontiguousarray(forced, dtype=self.dtype).reshape(self.out_shape)
            n = self.fire_forced(x, f, h)
            self.spikes = None          # forced spikes are whatever the caller gave: no list
        else:
            want = self.idx is not None and self.last_density < min(self.list_below, LIST_BELOW)
            n = self.fire(x, h, self.idx) if want else self.fire(x, h)
            self.spikes = (self.idx, int(n)) if want else None
        self.stats.spikes = int(n)
        self.last_density = int(n) / self.out.size
        if ctx.trace:
            ctx.record(self.name, self.out, self.h)
        return self.out


@op_type("lif")
class LIF(Neuron):
    """LIF / PLIF: H = V + (X − V)·k; fire H ≥ vth; hard reset to 0. k = 1/τ (PLIF: float32
    sigmoid(w)); vth a scalar attribute or a per-channel / per-element parameter."""
    attrs = {"k": Attr(float, 0.5, check=lambda v: None if 0 < v <= 1 else "must be in (0, 1]"),
             "vth": Attr(float, 1.0)}
    params = {"vth": Param(optional=True, broadcast="channel")}

    def __init__(self, op, in_shapes, dtype, resolved=None):
        super().__init__(op, in_shapes, dtype, resolved)
        self.k = dtype(self.a["k"])

    lists_spikes = True

    def fire(self, x, h, idx=None):
        return K.lif_step(*_flat(x, self.v), self.k, self.vth, *_flat(self.out, h), idx)

    def fire_forced(self, x, f, h):
        return K.lif_step_forced(*_flat(x, self.v), self.k, self.vth, *_flat(f, self.out, h))


@op_type("table_lif")
class TableLIF(Neuron):
    """LIF driven by per-(t, channel) tables r, c, theta, sign (TSBN folded into the neuron): H = r·V +
    c + k·X. Beyond the last row (continuous mode) the TSBN statistics stay those of the last step, so
    the membrane scale a_t stops changing: c, theta and sign hold the last row, and the leak is plain
    1 − k (row t's r = (1 − k)·a_{t−1}/a_t would rescale the membrane again at every extra step)."""
    attrs = {"k": Attr(float, 0.5), "vth": Attr(float, 1.0)}
    params = {n: Param(("steps", "c")) for n in ("r", "c", "theta", "sign")}
    per_step = True
    lists_spikes = True

    @classmethod
    def bind(cls, a, ins):
        return {"c": ins[0][-1]}

    def __init__(self, op, in_shapes, dtype, resolved=None):
        super().__init__(op, in_shapes, dtype, resolved)
        self.r, self.c, self.theta = self.param("r"), self.param("c"), self.param("theta")
        self.sign = self.param("sign")
        self.k = dtype(self.a["k"])
        self.r_held = np.full_like(self.r[-1], 1.0 - self.a["k"])  # the leak past the last row
        self.t = 0

    def reset(self):
        super().reset()
        self.t = 0

    def _row(self):
        last = self.r.shape[0] - 1
        t = min(self.t, last)
        r = self.r[t] if self.t <= last else self.r_held
        self.t += 1
        self.row = t
        return r, self.c[t], self.theta[t], self.sign[t]

    def _unscale(self, h):
        """The trace records the reference membrane V = a_t V' (a_t = vth / theta_t), not V'."""
        if h.size:
            h *= (self.a["vth"] / self.theta[self.row]).astype(self.dtype)

    def fire(self, x, h, idx=None):
        r, c, th, sg = self._row()
        n = K.table_step(*_flat(x, self.v), r, c, th, sg, self.k, *_flat(self.out, h), idx)
        self._unscale(h)
        return n

    def fire_forced(self, x, f, h):
        r, c, th, sg = self._row()
        n = K.table_step_forced(*_flat(x, self.v), r, c, th, sg, self.k, *_flat(f, self.out, h))
        self._unscale(h)
        return n
