"""Spiking neuron steps (docs/SEMANTICS.md "Neurons"), in place on the membrane state.

Arrays x, v, s, h are C-contiguous, any shape, same dtype (float32 or float64); the kernels work on
flat views. A parameter array p of size P (per channel: P = C; per element: P = x.size; P = 1 for a
scalar) applies to flat element i as p[i % P], so P must divide x.size. Parameters are rounded to the
state dtype once, so float32 state computes in float32 exactly like the reference.
`h` of size 0 means "don't record the pre-fire membrane". Each step returns the number of spikes.
The unforced steps take an optional int32 array `idx` of x.size: they then also list the flat indices
of the neurons that fired, ascending, in idx[:spikes] (the spike list the event convolutions and
linears read instead of rescanning the 0/1 map; docs/INTERNALS.md "Spike lists").
The *_forced variants take spikes f (same shape): the output and the reset follow f instead of the
threshold test (teacher forcing); H is still computed and recorded.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange
from numba.extending import overload

from .threads import get_threads


def _typed(p, like):
    """p (any shape) flattened and rounded to like's dtype; a view when it already is (no copy of a
    per-element parameter every step)."""


@overload(_typed)
def _typed_impl(p, like):
    if p.dtype == like.dtype and p.layout == "C":
        return lambda p, like: p.reshape(p.size)

    def copy(p, like):
        out = np.empty(p.size, like.dtype)
        flat = p.reshape(p.size)
        for i in range(p.size):
            out[i] = flat[i]
        return out
    return copy


@njit(cache=True, nogil=True)
def _scalar(k, like):
    """k rounded once to like's dtype (a Python float would otherwise promote float32 math to float64)."""
    t = np.empty(1, like.dtype)
    t[0] = k
    return t[0]


@njit(cache=True, nogil=True)
def _check(n, p):
    if p == 0 or n % p != 0:
        raise ValueError("neuron parameter size must divide the number of neurons")


@njit(cache=True, nogil=True)
def _row_length(n, p):
    """Length of the rows the fast loops walk: a multiple of the parameter size p that divides n, at
    most ~2048 when p is small. Parameters tiled to this length line up with every row, so the inner
    loop indexes from 0 without a modulo and LLVM vectorises it (10x over the per-element loop)."""
    if p >= 2048:
        return p
    m = min(n // p, 2048 // p)
    while m > 1 and (n // p) % m:
        m -= 1
    return p * m


@njit(cache=True, nogil=True)
def _tiled(p, r):
    if r == p.size:
        return p
    out = np.empty(r, p.dtype)
    for i in range(r):
        out[i] = p[i % p.size]
    return out


@njit(cache=True, nogil=True)
def _fast_rows(kind, xf, vf, sf, hf, rec, kk, a, c_, th, up, r, e0, e1, lst, li):
    """Elements e0 <= i < e1 of the untraced, unforced step, walked as pieces of rows of length r (the
    parameters tiled to r line up with every row): branch-free rows (selects, not jumps), same
    arithmetic and order as _neuron's loop below. Each element depends on itself alone, so any split of
    the elements between threads gives the same bits. lst: also list the fired indices in li from e0 on
    (a second, branch-free pass over each row's spikes while they are in L1: the threshold loop stays
    vectorised)."""
    one = vf.dtype.type(1)
    zero = vf.dtype.type(0)
    spikes = 0
    nl = e0
    for ri in range(e0 // r, (e1 + r - 1) // r):
        s0 = max(e0, ri * r)
        s1 = min(e1, ri * r + r)
        off = s0 - ri * r
        m = s1 - s0
        xr = xf[s0:s1]
        vr = vf[s0:s1]
        sr = sf[s0:s1]
        hr = hf[s0:s1] if rec else hf[:0]
        ar = a[off:off + m]
        if kind == 0:
            for j in range(m):
                vi = vr[j]
                hi = vi + (xr[j] - vi) * kk
                fire = hi >= ar[j]
                if rec:
                    hr[j] = hi
                sr[j] = one if fire else zero
                vr[j] = zero if fire else hi
                spikes += np.int64(fire)
        elif kind == 1:
            for j in range(m):
                hi = vr[j] + xr[j]
                fire = hi >= ar[j]
                if rec:
                    hr[j] = hi
                sr[j] = one if fire else zero
                # soft reset as a 0/1 multiply: a select here keeps LLVM from vectorising; hi - 0 == hi
                vr[j] = hi - (one if fire else zero) * ar[j]
                spikes += np.int64(fire)
        else:
            cr = c_[off:off + m]
            tr = th[off:off + m]
            ur = up[off:off + m]
            for j in range(m):
                hi = ar[j] * vr[j] + cr[j] + kk * xr[j]
                fire = (hi >= tr[j]) if ur[j] else (hi <= tr[j])
                if rec:
                    hr[j] = hi
                sr[j] = one if fire else zero
                vr[j] = zero if fire else hi
                spikes += np.int64(fire)
        if lst:
            for j in range(m):
                li[nl] = s0 + j
                nl += np.int64(sr[j] != zero)
    return spikes


@njit(cache=True, nogil=True)
def _rows_setup(kind, n, a, c_, th, sg):
    r = _row_length(n, a.size)
    a = _tiled(a, r)
    if kind == 2:
        c_ = _tiled(c_, r)
        th = _tiled(th, r)
        up = _tiled(sg, r) >= 0
    else:
        up = np.ones(1, np.bool_)
    return r, a, c_, th, up


@njit(cache=True, nogil=True)
def _fast(kind, xf, vf, sf, hf, rec, kk, a, c_, th, sg, lst, li):
    """The unforced step on one thread. a, c_, th, sg already rounded to the state dtype."""
    r, a, c_, th, up = _rows_setup(kind, vf.size, a, c_, th, sg)
    return _fast_rows(kind, xf, vf, sf, hf, rec, kk, a, c_, th, up, r, 0, vf.size, lst, li)


# below this many neurons a step stays on one thread: a step is memory-bound and fast (524k LIF
# neurons with per-channel thresholds: 125 µs on one thread, 155 µs wall on two with the fork-join on the
# loaded box, 85 µs of it on the calling thread); per-element thresholds (DSSA's (heads, L, HW) maps)
# are slower, ~4 ms for 1M neurons, 4x less on the calling thread when split
PAR_MIN_NEURONS = 1 << 19
PAR_MIN_NEURONS_PER_ELEMENT = 1 << 19


@njit(cache=True, nogil=True, parallel=True)
def _fast_par(kind, xf, vf, sf, hf, rec, kk, a, c_, th, sg, parts, lst, li):
    """_fast with the elements cut into `parts` equal ranges (at multiples of 16: a cache line of
    float32), one per thread; the spike counts (integers) are summed after. Each part lists its fired
    indices from its own first element on; the pieces are then moved together in order."""
    r, a, c_, th, up = _rows_setup(kind, vf.size, a, c_, th, sg)
    n = vf.size
    counts = np.zeros(parts, np.int64)
    for p in prange(parts):
        e0 = (n * p // parts) // 16 * 16
        e1 = n if p == parts - 1 else (n * (p + 1) // parts) // 16 * 16
        counts[p] = _fast_rows(kind, xf, vf, sf, hf, rec, kk, a, c_, th, up, r, e0, e1, lst, li)
    if lst:
        pos = counts[0]
        for p in range(1, parts):
            e0 = (n * p // parts) // 16 * 16     # >= pos: moving down in ascending order is safe
            for q in range(counts[p]):
                li[pos + q] = li[e0 + q]
            pos += counts[p]
    return counts.sum()


def _neuron(kind, x, v, k, p1, p2, p3, p4, f, forced, s, h, parts, li):
    """Shared step. kind 0 = LIF (p1 = vth), 1 = IF (p1 = vth), 2 = table (p1..p4 = r, c, theta, sign).
    Unforced steps take the vectorised rows of _fast (_fast_par on several threads); teacher forcing
    takes the per-element loop. The thread choice is made here, in Python, so that numba compiles the
    parallel variant only for a model and thread count that use it (docs/INTERNALS.md "Start-up")."""
    if not forced and parts > 1:
        return _neuron_par(kind, x, v, k, p1, p2, p3, p4, f, forced, s, h, parts, li)
    return _neuron_one(kind, x, v, k, p1, p2, p3, p4, f, forced, s, h, li)


@njit(cache=True, nogil=True)
def _prepare(kind, x, v, k, p1, p2, p3, p4, f, forced, s, h, li):
    """Flat views, parameters in the state dtype, and the argument checks of _neuron."""
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
    if rec and h.size != n:
        raise ValueError("h must have the neuron array's size (or size 0)")
    if forced and f.size != n:
        raise ValueError("forced spikes must have the neuron array's size")
    lst = li.size > 0
    if lst and (forced or li.size != n):
        raise ValueError("idx must have the neuron array's size (and forced steps list no spikes)")
    return xf, vf, sf, ff, rec, hf, kk, a, c_, th, sg, lst


@njit(cache=True, nogil=True)
def _neuron_par(kind, x, v, k, p1, p2, p3, p4, f, forced, s, h, parts, li):
    xf, vf, sf, ff, rec, hf, kk, a, c_, th, sg, lst = _prepare(kind, x, v, k, p1, p2, p3, p4, f, forced, s, h, li)
    return _fast_par(kind, xf, vf, sf, hf, rec, kk, a, c_, th, sg, parts, lst, li)


@njit(cache=True, nogil=True)
def _neuron_one(kind, x, v, k, p1, p2, p3, p4, f, forced, s, h, li):
    xf, vf, sf, ff, rec, hf, kk, a, c_, th, sg, lst = _prepare(kind, x, v, k, p1, p2, p3, p4, f, forced, s, h, li)
    if not forced:
        return _fast(kind, xf, vf, sf, hf, rec, kk, a, c_, th, sg, lst, li)
    n = vf.size
    P = a.size
    spikes = 0
    for r0 in range(0, n, P):
        for j in range(P):
            i = r0 + j
            vi = vf[i]
            if kind == 0:
                hi = vi + (xf[i] - vi) * kk          # one rounding for X - V, then * k, then + V (SEMANTICS.md "Neurons")
            elif kind == 1:
                hi = vi + xf[i]
            else:
                hi = a[j] * vi + c_[j] + kk * xf[i]  # docs/SEMANTICS.md "Neurons", left to right: (r V + c) + k X
            if rec:
                hf[i] = hi
            if ff[i] != 0:
                sf[i] = 1
                spikes += 1
                vf[i] = hi - a[j] if kind == 1 else 0   # IF: soft reset; LIF/table: hard reset to 0
            else:
                sf[i] = 0
                vf[i] = hi
    return spikes


def _list(idx):
    """idx as the kernels take it: an int32 array of the neuron count, or size 0 for no list."""
    if idx is None:
        return _NO_LIST
    if idx.dtype != np.int32 or idx.ndim != 1:
        raise ValueError("idx must be a 1-D int32 array")
    return idx


def _parts(x, p):
    """Threads for a step of x.size neurons with parameter array p: one below the minimum size."""
    n = get_threads()
    big = x.size >= (PAR_MIN_NEURONS_PER_ELEMENT if np.size(p) == x.size else PAR_MIN_NEURONS)
    return n if n > 1 and big else 1


_NO_LIST = np.zeros(0, np.int32)


def lif_step(x, v, k, vth, s, h, idx=None):
    """LIF / PLIF: H = V + (X - V) k; S = H >= vth; V = 0 if S else H. k scalar (PLIF: float32
    sigmoid(w) computed by the caller), vth per channel (or per element / scalar, see module doc)."""
    return _neuron(0, x, v, k, vth, vth, vth, vth, s[:0], False, s, h, _parts(x, vth), _list(idx))


def lif_step_forced(x, v, k, vth, f, s, h):
    """lif_step whose spikes and reset follow f."""
    return _neuron(0, x, v, k, vth, vth, vth, vth, f, True, s, h, _parts(x, vth), _NO_LIST)


def if_step(x, v, vth, s, h, idx=None):
    """IF with soft reset: H = V + X; S = H >= vth; V = H - vth S."""
    return _neuron(1, x, v, 1.0, vth, vth, vth, vth, s[:0], False, s, h, _parts(x, vth), _list(idx))


def if_step_forced(x, v, vth, f, s, h):
    """if_step whose spikes and reset follow f."""
    return _neuron(1, x, v, 1.0, vth, vth, vth, vth, f, True, s, h, _parts(x, vth), _NO_LIST)


def table_step(x, v, r, c, theta, sign, k, s, h, idx=None):
    """Table LIF (TSBN folded; docs/SEMANTICS.md "Neurons"): H = r V + c + k X; fire H >= theta where sign >= 0,
    H <= theta
    where sign < 0; hard reset to 0. r, c, theta, sign: this step's rows, all the same size."""
    return _neuron(2, x, v, k, r, c, theta, sign, s[:0], False, s, h, _parts(x, r), _list(idx))


def table_step_forced(x, v, r, c, theta, sign, k, f, s, h):
    """table_step whose spikes and reset follow f."""
    return _neuron(2, x, v, k, r, c, theta, sign, f, True, s, h, _parts(x, r), _NO_LIST)
