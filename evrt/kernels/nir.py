"""Kernels for models imported from NIR (evrt/nir/): one discretised neuron step that covers NIR's
I, LI, IF, LIF, CubaLI and CubaLIF under every discretisation profile, and a sum pool.

Neuron step, per element j (every parameter is a per-element array of the state's size, already
rounded to the state dtype; docs/NIR.md gives the profile that fills them):

    cuba == 1:  i = a_s*i + b_s*x;  drive = i      (a current-based synapse: the current first)
    cuba == 0:  drive = x
    v = a_m*v + b_m*drive + c_m          (- vth*s_prev when reset == 3: the reset of the last spike
                                          is applied one step late, as snnTorch does)
    h = v                                (recorded pre-fire membrane)
    fire 0: no spikes, s = v (LI / I pass their membrane on)
    fire 1: s = v > vth   fire 2: s = v >= vth   fire 3: s = trunc(v / vth) if v > 0 else 0 (several
            spikes per step)
    reset 1: v = v_reset where s > 0;  reset 2: v -= s*vth;  reset 0 / 3: nothing now
    floor:   v = max(v, vmin) when use_floor

`s` holds the previous step's output on entry (reset 3 reads it) and this step's on return. `forced`
(size 0 = off) replaces the fired spikes by given ones (teacher forcing), reset included.
Returns the number of neurons that fired (the counters' `spikes`; with several spikes per step the
count itself is the output, and the next layer's ACs count every spike).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .counts import Counts


@njit(cache=True, nogil=True)
def nir_neuron_step(x, v, i, a_m, b_m, c_m, a_s, b_s, vth, vreset, vmin, cuba, fire, reset, use_floor,
                    forced, s, h):
    n = v.size
    xf = x.reshape(n)
    vf = v.reshape(n)
    sf = s.reshape(n)
    rec = h.size > 0
    hf = h.reshape(h.size)
    force = forced.size > 0
    ff = forced.reshape(forced.size)
    one = np.ones(1, v.dtype)[0]     # typed constants: float32 state must not compute in float64
    zero = np.zeros(1, v.dtype)[0]
    total = 0.0
    for j in range(n):
        if cuba == 1:
            i[j] = a_s[j] * i[j] + b_s[j] * xf[j]
            drive = i[j]
        else:
            drive = xf[j]
        vv = a_m[j] * vf[j] + b_m[j] * drive + c_m[j]
        if reset == 3:
            vv = vv - vth[j] * sf[j]
        if rec:
            hf[j] = vv
        th = vth[j]
        if fire == 0:
            out = vv
        elif force:
            out = ff[j]
        elif fire == 1:
            out = one if vv > th else zero
        elif fire == 2:
            out = one if vv >= th else zero
        else:
            out = np.trunc(vv / th) if vv > 0 else zero
        if fire != 0:
            if out != 0:
                if reset == 1:
                    vv = vreset[j]
                elif reset == 2:
                    vv = vv - out * th
            total += 1 if out != 0 else 0
        if use_floor and vv < vmin[j]:
            vv = vmin[j]
        vf[j] = vv
        sf[j] = out
    return total


def nir_neuron_step_np(x, v, i, a_m, b_m, c_m, a_s, b_s, vth, vreset, vmin, cuba, fire, reset, use_floor,
                       forced=None, s_prev=None):
    """NumPy twin (whole arrays at once). Returns (s, h, v, i, total) as new arrays."""
    x, v, i = (np.asarray(a).reshape(-1) for a in (x, v, i))
    s_prev = np.zeros_like(v) if s_prev is None else np.asarray(s_prev).reshape(-1)
    if cuba == 1:
        i = a_s * i + b_s * x
        drive = i
    else:
        drive = x
    vv = a_m * v + b_m * drive + c_m
    if reset == 3:
        vv = vv - vth * s_prev
    h = vv.copy()
    if fire == 0:
        s = vv.copy()
    elif forced is not None:
        s = np.asarray(forced, v.dtype).reshape(-1)
    elif fire == 1:
        s = (vv > vth).astype(v.dtype)
    elif fire == 2:
        s = (vv >= vth).astype(v.dtype)
    else:
        s = np.where(vv > 0, np.trunc(vv / vth), 0).astype(v.dtype)
    if fire and reset == 1:
        vv = np.where(s != 0, vreset, vv)
    elif fire and reset == 2:
        vv = vv - s * vth
    if use_floor:
        vv = np.maximum(vv, vmin)
    return s, h, vv, i, float(np.count_nonzero(s)) if fire else 0.0


def sumpool2d(x, kh, kw, sh, sw, ph, pw, out) -> Counts:
    """out (Ho, Wo, C) <- sum over each kh x kw window of x (H, W, C), zero padding. Scatter: each
    non-zero input adds itself to the windows that contain it. Returns Counts(nnz, pairs, weighted):
    pairs = (non-zero input, output) pairs touched, weighted = Σ of the input over those pairs — the
    ACs of a spike or count input, as the synaptic kernels count them."""
    nnz, pairs, weighted = _sumpool2d(x, kh, kw, sh, sw, ph, pw, out)
    return Counts(int(nnz), int(pairs), float(weighted))


@njit(cache=True, nogil=True)
def _sumpool2d(x, kh, kw, sh, sw, ph, pw, out):
    h, w, c = x.shape
    ho, wo, _ = out.shape
    out[...] = 0
    nnz = 0
    pairs = 0
    weighted = 0.0
    for y in range(h):
        for xx in range(w):
            row = x[y, xx]
            for ch in range(c):
                if row[ch] != 0:
                    nnz += 1
            for ky in range(kh):
                t = y + ph - ky
                if t < 0 or t % sh:
                    continue
                oy = t // sh
                if oy >= ho:
                    continue
                for kx in range(kw):
                    u = xx + pw - kx
                    if u < 0 or u % sw:
                        continue
                    ox = u // sw
                    if ox >= wo:
                        continue
                    orow = out[oy, ox]
                    for ch in range(c):
                        val = row[ch]
                        if val != 0:
                            orow[ch] += val
                            pairs += 1
                            weighted += val
    return nnz, pairs, weighted


def sumpool2d_np(x, kh, kw, sh, sw, ph, pw):
    """NumPy twin: (out, pairs, weighted) by explicit windows over the zero-padded input."""
    h, w, c = x.shape
    xp = np.zeros((h + 2 * ph, w + 2 * pw, c), x.dtype)
    xp[ph:ph + h, pw:pw + w] = x
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    out = np.zeros((ho, wo, c), x.dtype)
    pairs, weighted = 0, 0.0
    for oy in range(ho):
        for ox in range(wo):
            win = xp[oy * sh:oy * sh + kh, ox * sw:ox * sw + kw]
            out[oy, ox] = win.sum(axis=(0, 1))
            pairs += int(np.count_nonzero(win))
            weighted += float(win.sum())
    return out, pairs, weighted
