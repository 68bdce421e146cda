"""Spiking neuron steps (spec §1.2, §6), in place on the membrane state.

Arrays x, v, s, h are C-contiguous, any shape, same dtype (float32 or float64); the kernels work on
flat views. A parameter array p of size P (per channel: P = C; per element: P = x.size; P = 1 for a
scalar) applies to flat element i as p[i % P], so P must divide x.size. Parameters are rounded to the
state dtype once, so float32 state computes in float32 exactly like the reference.
`h` of size 0 means "don't record the pre-fire membrane". Each step returns the number of spikes.
The *_forced variants take spikes f (same shape): the output and the reset follow f instead of the
threshold test (teacher forcing); H is still computed and recorded.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _typed(p, like):
    """p (any shape) flattened and rounded to like's dtype."""
    out = np.empty(p.size, like.dtype)
    flat = p.reshape(p.size)
    for i in range(p.size):
        out[i] = flat[i]
    return out


@njit(cache=True)
def _scalar(k, like):
    """k rounded once to like's dtype (a Python float would otherwise promote float32 math to float64)."""
    t = np.empty(1, like.dtype)
    t[0] = k
    return t[0]


@njit(cache=True)
def _check(n, p):
    if p == 0 or n % p != 0:
        raise ValueError("neuron parameter size must divide the number of neurons")


@njit(cache=True)
def _neuron(kind, x, v, k, p1, p2, p3, p4, f, forced, s, h):
    """Shared loop. kind 0 = LIF (p1 = vth), 1 = IF (p1 = vth), 2 = table (p1..p4 = r, c, theta, sign)."""
    n = v.size
    xf = x.reshape(n)
    vf = v.reshape(n)
    sf = s.reshape(n)
    ff = f.reshape(f.size)
    rec = h.size > 0
    hf = h.reshape(h.size)
    kk = _scalar(k, v)
    a = _typed(p1, v)
    c_ = _typed(p2, v)
    th = _typed(p3, v)
    sg = _typed(p4, v)
    P = a.size
    _check(n, P)
    if kind == 2 and (c_.size != P or th.size != P or sg.size != P):
        raise ValueError("table_step: r, c, theta, sign must have the same size")
    if forced and f.size != n:
        raise ValueError("forced spikes must have the neuron array's size")
    spikes = 0
    for r0 in range(0, n, P):
        for j in range(P):
            i = r0 + j
            vi = vf[i]
            if kind == 0:
                hi = vi + (xf[i] - vi) * kk          # spec §1.2: one rounding for X - V, then * k, then + V
                fire = hi >= a[j]
            elif kind == 1:
                hi = vi + xf[i]
                fire = hi >= a[j]
            else:
                hi = a[j] * vi + c_[j] + kk * xf[i]  # spec §6, left to right: (r V + c) + k X
                fire = hi >= th[j] if sg[j] >= 0 else hi <= th[j]
            if rec:
                hf[i] = hi
            if forced:
                fire = ff[i] != 0
            if fire:
                sf[i] = 1
                spikes += 1
                vf[i] = hi - a[j] if kind == 1 else 0   # IF: soft reset; LIF/table: hard reset to 0
            else:
                sf[i] = 0
                vf[i] = hi
    return spikes



@njit(cache=True)
def lif_step(x, v, k, vth, s, h):
    """LIF / PLIF: H = V + (X - V) k; S = H >= vth; V = 0 if S else H. k scalar (PLIF: float32
    sigmoid(w) computed by the caller), vth per channel (or per element / scalar, see module doc)."""
    return _neuron(0, x, v, k, vth, vth, vth, vth, s[:0], False, s, h)


@njit(cache=True)
def lif_step_forced(x, v, k, vth, f, s, h):
    """lif_step whose spikes and reset follow f."""
    return _neuron(0, x, v, k, vth, vth, vth, vth, f, True, s, h)


@njit(cache=True)
def if_step(x, v, vth, s, h):
    """IF with soft reset: H = V + X; S = H >= vth; V = H - vth S."""
    return _neuron(1, x, v, 1.0, vth, vth, vth, vth, s[:0], False, s, h)


@njit(cache=True)
def if_step_forced(x, v, vth, f, s, h):
    """if_step whose spikes and reset follow f."""
    return _neuron(1, x, v, 1.0, vth, vth, vth, vth, f, True, s, h)


@njit(cache=True)
def table_step(x, v, r, c, theta, sign, k, s, h):
    """Table LIF (spec §6, TSBN folded): H = r V + c + k X; fire H >= theta where sign >= 0, H <= theta
    where sign < 0; hard reset to 0. r, c, theta, sign: this step's rows, all the same size."""
    return _neuron(2, x, v, k, r, c, theta, sign, s[:0], False, s, h)


@njit(cache=True)
def table_step_forced(x, v, r, c, theta, sign, k, f, s, h):
    """table_step whose spikes and reset follow f."""
    return _neuron(2, x, v, k, r, c, theta, sign, f, True, s, h)
