"""The general 2-D convolution: per-axis stride and padding and dilation, channels-last.

The fast kernels in conv.py handle the common square-stride, undilated case; layers imported from
other frameworks (NIR) may have dilation or unequal stride/padding per axis, and land here. Simple
event scatter only: each non-zero input (y, x, c) adds v * w[ky, kx, c % cig, its group's Cout] into
the output (oy, ox) with oy*sh - ph + ky*dh == y (and the same along x). One AC per (non-zero input,
tap landing inside the output) pair and output channel of the group, exactly like conv2d_scatter.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .counts import Counts


@njit(cache=True, nogil=True)
def _scatter_one(out, w, v, y, x, ci, o0, cpg, sh, sw, ph, pw, dh, dw):
    """Add v * w taps of one input into out; returns the number of in-bounds taps."""
    kh, kw = w.shape[0], w.shape[1]
    ho, wo = out.shape[0], out.shape[1]
    taps = 0
    for ky in range(kh):
        t = y + ph - ky * dh
        if t < 0:
            break                  # t only decreases with ky
        if t % sh:
            continue
        oy = t // sh
        if oy >= ho:
            continue
        for kx in range(kw):
            u = x + pw - kx * dw
            if u < 0:
                break
            if u % sw:
                continue
            ox = u // sw
            if ox >= wo:
                continue
            orow = out[oy, ox]
            wrow = w[ky, kx, ci]
            for j in range(o0, o0 + cpg):
                orow[j] += v * wrow[j]
            taps += 1
    return taps


@njit(cache=True, nogil=True)
def _fill(b, out):
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            for c in range(min(b.size, out.shape[2])):   # not out[i, j, :] = b: see conv._fill_bias
                out[i, j, c] = b[c]


@njit(cache=True, nogil=True)
def _conv2d_general(x, w, b, sh, sw, ph, pw, dh, dw, groups, out):
    h, wd, cin = x.shape
    cig, cout = w.shape[2], w.shape[3]
    cpg = cout // groups
    _fill(b, out)
    nnz = 0
    pairs = 0
    weighted = 0.0
    for y in range(h):
        for xx in range(wd):
            for c in range(cin):
                v = x[y, xx, c]
                if v == 0:
                    continue
                nnz += 1
                g = c // cig
                n = _scatter_one(out, w, v, y, xx, c - g * cig, g * cpg, cpg, sh, sw, ph, pw, dh, dw) * cpg
                pairs += n
                weighted += np.float64(v) * n
    return nnz, pairs, weighted


@njit(cache=True, nogil=True)
def _conv2d_general_events(ys, xs, cs, w, b, sh, sw, ph, pw, dh, dw, out):
    _fill(b, out)
    cout = w.shape[3]
    one = np.ones(1, w.dtype)[0]
    pairs = 0
    for e in range(ys.shape[0]):
        pairs += _scatter_one(out, w, one, np.int64(ys[e]), np.int64(xs[e]), np.int64(cs[e]), 0, cout,
                              sh, sw, ph, pw, dh, dw) * cout
    return pairs


def _check(w, groups, stride, pad, dilation, cin):
    kh, kw, cig, cout = w.shape
    if cin != cig * groups or cout % groups:
        raise ValueError(f"conv2d_general: input has {cin} channels, w {w.shape} with groups={groups}")
    if min(stride) < 1 or min(dilation) < 1 or min(pad) < 0:
        raise ValueError(f"conv2d_general: stride {stride}, pad {pad}, dilation {dilation}")


def conv2d_general(x, w, b, stride, pad, dilation, groups, out) -> Counts:
    """out (Ho, Wo, Cout) <- b + conv(x, w) with stride, pad, dilation each (h, w); Counts as
    conv2d_scatter (pairs: (non-zero input, output neuron) pairs in bounds; weighted: Σ input value)."""
    _check(w, groups, stride, pad, dilation, x.shape[2])
    nnz, pairs, weighted = _conv2d_general(x, w, b, stride[0], stride[1], pad[0], pad[1], dilation[0],
                                           dilation[1], groups, out)
    return Counts(int(nnz), int(pairs), float(weighted))


def conv2d_general_events(ys, xs, cs, w, b, stride, pad, dilation, out) -> Counts:
    """Raw events (groups = 1): each event adds its taps once, as conv2d_events; pairs = weighted."""
    _check(w, 1, stride, pad, dilation, w.shape[2])
    pairs = int(_conv2d_general_events(ys, xs, cs, w, b, stride[0], stride[1], pad[0], pad[1], dilation[0],
                                       dilation[1], out))
    return Counts(len(ys), pairs, float(pairs))
