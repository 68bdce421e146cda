"""Event-driven 2-D convolution, channels-last.

x (H, W, Cin), w (kh, kw, Cin/groups, Cout), b (Cout,), out (Ho, Wo, Cout). Zero padding.
The scatter kernel visits only non-zero inputs and adds their weight rows w[ky, kx, ci, group's Cout]
(contiguous) into every output they reach. Above a density threshold a dense path is faster; both
paths return the same counts because the counts come from the input and the geometry alone.
"""
from __future__ import annotations

import numpy as np
from numba import njit
from numpy.lib.stride_tricks import sliding_window_view

# Fraction of non-zero inputs above which the dense path is taken, per layer kind. Break-even densities
# measured by tools/bench_kernels.py (float32, 1 thread, shared 2-core x86 box, ±30 % noise): full 3x3
# convs 15-19 %, 1x1 convs 20-24 %, grouped convs (GWFFN-like, 32 channels per group) ~40 %.
# Depthwise: none. The dense loop does 9 vectorised MACs per input for the price of the event path's
# scan of the map, so a depthwise conv fed a dense map goes dense whenever any input is non-zero.
# 2026-11 (tools/bench.py, tools/bench_kernels.py): the event path now lists the non-zero inputs once and
# adds each pixel's weight rows tap by tap (6-9 G acc/s against 25-35 GMAC/s for im2col + BLAS); in
# isolation full 3x3 convs break even at ~25 %, inside whole models (colder caches) nearer 20 %.
DENSE_ABOVE_CONV = 0.2
DENSE_ABOVE_1X1 = 0.2
DENSE_ABOVE_GROUPED = 0.4
DENSE_ABOVE_DW = 0.0
DENSE_ABOVE = DENSE_ABOVE_CONV      # kept for callers that want one number


def default_dense_above(kh, kw, cig, cpg, groups):
    """The measured break-even for this layer kind (see the constants above)."""
    if groups == 1:
        return DENSE_ABOVE_1X1 if kh == kw == 1 else DENSE_ABOVE_CONV
    if cig == 1 and cpg == 1:
        return DENSE_ABOVE_DW
    return DENSE_ABOVE_GROUPED


@njit(cache=True)
def _taps(n_in, n_out, k, stride, pad):
    """For each input row i, the (output row, kernel row) pairs with o*stride - pad + kk == i.
    Returns (count (n_in,), out_idx (n_in, k), tap_idx (n_in, k))."""
    cnt = np.zeros(n_in, np.int64)
    oi = np.zeros((n_in, k), np.int64)
    ki = np.zeros((n_in, k), np.int64)
    for o in range(n_out):
        for kk in range(k):
            i = o * stride - pad + kk
            if 0 <= i < n_in:
                oi[i, cnt[i]] = o
                ki[i, cnt[i]] = kk
                cnt[i] += 1
    return cnt, oi, ki


@njit(cache=True)
def conv2d_counts(x, kh, kw, stride, pad, ho, wo, cout_per_group):
    """(nnz, pairs, weighted) for a conv over x: every non-zero input reaches
    ny[y] * nx[x] * cout_per_group output neurons."""
    h, w, cin = x.shape
    ny = _taps(h, ho, kh, stride, pad)[0]
    nx = _taps(w, wo, kw, stride, pad)[0]
    nnz = 0
    pairs = 0
    weighted = 0.0
    for yy in range(h):
        for xx in range(w):
            xrow = x[yy, xx]
            n_px = 0
            s_px = 0.0
            for c in range(cin):        # branch-free so it vectorises: zeros add nothing to the sum
                n_px += xrow[c] != 0
                s_px += np.float64(xrow[c])
            g = ny[yy] * nx[xx] * cout_per_group
            nnz += n_px
            pairs += n_px * g
            weighted += s_px * g
    return nnz, pairs, weighted


@njit(cache=True)
def _fill_bias(b, out):
    ho, wo, _ = out.shape
    for oy in range(ho):
        for ox in range(wo):
            out[oy, ox, :] = b


@njit(cache=True)
def conv2d_scatter_only(x, w, b, stride, pad, groups, out):
    """The event path alone: out = b + conv(x, w); touches only non-zero inputs. No counts."""
    h, wd, cin = x.shape
    kh, kw, cig, cout = w.shape
    ho, wo, _ = out.shape
    cpg = cout // groups
    _fill_bias(b, out)
    ny, oy_t, ky_t = _taps(h, ho, kh, stride, pad)
    nx, ox_t, kx_t = _taps(wd, wo, kw, stride, pad)
    depthwise = cig == 1 and cpg == 1
    nzc = np.empty(cin, np.int64)
    nzv = np.empty(cin, x.dtype)
    nzl = np.empty(cin, np.int64)       # grouped: channel within its group
    nzo = np.empty(cin, np.int64)       # grouped: first output channel of its group
    for yy in range(h):
        if ny[yy] == 0:
            continue
        for xx in range(wd):
            if nx[xx] == 0:
                continue
            xrow = x[yy, xx]
            # list the pixel's non-zero channels once and reuse the list for every tap: the output row
            # of a tap then stays in L1 while all of the pixel's weight rows are added into it
            nz = 0
            ones = True
            for c in range(cin):
                v = xrow[c]
                if v != 0:
                    nzc[nz] = c
                    nzv[nz] = v
                    nz += 1
                    if v != 1:
                        ones = False
            if nz == 0:
                continue
            if depthwise:
                # one weight per channel
                for a in range(ny[yy]):
                    for e in range(nx[xx]):
                        orow = out[oy_t[yy, a], ox_t[xx, e]]
                        wrow = w[ky_t[yy, a], kx_t[xx, e], 0]
                        for t in range(nz):
                            c = nzc[t]
                            orow[c] += nzv[t] * wrow[c]
                continue
            if groups == 1:
                for a in range(ny[yy]):
                    oy = oy_t[yy, a]
                    ky = ky_t[yy, a]
                    for e in range(nx[xx]):
                        orow = out[oy, ox_t[xx, e]]
                        wk = w[ky, kx_t[xx, e]]
                        if ones:        # spikes: plain adds, no multiply
                            for t in range(nz):
                                wrow = wk[nzc[t]]
                                for j in range(cout):
                                    orow[j] += wrow[j]
                        else:
                            for t in range(nz):
                                wrow = wk[nzc[t]]
                                v = nzv[t]
                                for j in range(cout):
                                    orow[j] += v * wrow[j]
                continue
            # grouped: each non-zero channel adds a Cout/groups slice of its group; taps outermost
            for t in range(nz):
                c = nzc[t]
                g = c // cig
                nzl[t] = c - g * cig
                nzo[t] = g * cpg
            for a in range(ny[yy]):
                oy = oy_t[yy, a]
                ky = ky_t[yy, a]
                for e in range(nx[xx]):
                    orow_all = out[oy, ox_t[xx, e]]
                    wk = w[ky, kx_t[xx, e]]
                    for t in range(nz):
                        co0 = nzo[t]
                        # slices indexed from 0: LLVM then knows j >= 0 (no negative-index wraparound
                        # test in the loop) and vectorises it (6x faster than range(co0, ...))
                        orow = orow_all[co0:co0 + cpg]
                        wrow = wk[nzl[t], co0:co0 + cpg]
                        if ones:        # spikes: plain adds, no multiply
                            for j in range(cpg):
                                orow[j] += wrow[j]
                        else:
                            v = nzv[t]
                            for j in range(cpg):
                                orow[j] += v * wrow[j]


@njit(cache=True)
def _conv_dense_depthwise(x, w, b, stride, pad, out):
    """Dense output-stationary depthwise conv (w (kh, kw, 1, C)), channels innermost, no zero test."""
    h, wd, c = x.shape
    kh, kw = w.shape[0], w.shape[1]
    ho, wo, _ = out.shape
    _fill_bias(b, out)
    for oy in range(ho):
        for ox in range(wo):
            orow = out[oy, ox]
            for ky in range(kh):
                iy = oy * stride - pad + ky
                if iy < 0 or iy >= h:
                    continue
                for kx in range(kw):
                    ix = ox * stride - pad + kx
                    if ix < 0 or ix >= wd:
                        continue
                    xrow = x[iy, ix]
                    wrow = w[ky, kx, 0]
                    for j in range(c):
                        orow[j] += xrow[j] * wrow[j]


def _conv_dense_blas(x, w, b, stride, pad, groups, out):
    """im2col + BLAS: one matmul (groups == 1; a plain reshape for 1x1 stride-1 unpadded convs) or one
    batched matmul over the groups."""
    kh, kw, cig, cout = w.shape
    ho, wo, _ = out.shape
    cpg = cout // groups
    if kh == kw == 1 and pad == 0:
        cols = x[::stride, ::stride][:ho, :wo].reshape(ho * wo, 1, cig * groups)
    else:
        xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0))) if pad else x
        win = sliding_window_view(xp, (kh, kw), axis=(0, 1))[::stride, ::stride][:ho, :wo]
        cols = win.transpose(0, 1, 3, 4, 2).reshape(ho * wo, kh * kw, cig * groups)   # (ky, kx, ci): w's order
    if groups == 1:
        cols2, w2 = cols.reshape(ho * wo, kh * kw * cig), w.reshape(kh * kw * cig, cout)
        if out.flags.c_contiguous and cols2.dtype == w2.dtype == out.dtype:
            np.matmul(cols2, w2, out=out.reshape(ho * wo, cout))
        else:
            out[...] = (cols2 @ w2).reshape(ho, wo, cout)
    else:
        cg = cols.reshape(ho * wo, kh * kw, groups, cig).transpose(2, 0, 1, 3).reshape(groups, ho * wo, -1)
        wg = w.reshape(kh * kw, cig, groups, cpg).transpose(2, 0, 1, 3).reshape(groups, kh * kw * cig, cpg)
        out[...] = np.matmul(cg, wg).transpose(1, 0, 2).reshape(ho, wo, cout)
    out += b


def conv2d_dense(x, w, b, stride, pad, groups, out):
    """The dense path alone: out = b + conv(x, w), cost independent of sparsity. No counts.
    Depthwise convs use a numba loop (a matmul per channel would be 1 x 1); the rest im2col + BLAS."""
    if w.shape[2] == 1 and w.shape[3] == groups and groups > 1:
        _conv_dense_depthwise(x, w, b, stride, pad, out)
    else:
        _conv_dense_blas(x, w, b, stride, pad, groups, out)


def conv2d_scatter(x, w, b, stride, pad, groups, out, dense_above=None):
    """out (Ho, Wo, Cout) <- b + conv(x, w); returns (pairs, weighted).

    pairs = number of (non-zero input, output neuron) pairs in bounds; weighted = Σ of the input value
    over those pairs (float). Takes the event path unless more than `dense_above` of the inputs are
    non-zero (None: the measured break-even for the layer kind; >= 1 forces the event path, a negative
    value the dense path); the counts do not depend on the path.
    """
    _, pairs, weighted = conv2d_scatter_nnz(x, w, b, stride, pad, groups, out, dense_above)
    return pairs, weighted


def conv2d_scatter_nnz(x, w, b, stride, pad, groups, out, dense_above=None):
    """conv2d_scatter that also returns the number of non-zero inputs: (nnz, pairs, weighted).
    The count pass that picks the path gives nnz, so callers need no extra scan of x."""
    kh, kw, cig, cout = w.shape
    if x.shape[2] != cig * groups or cout % groups:
        raise ValueError(f"conv2d_scatter: x has {x.shape[2]} channels, w {w.shape} with groups={groups}")
    if dense_above is None:
        dense_above = default_dense_above(kh, kw, cig, cout // groups, groups)
    ho, wo = out.shape[0], out.shape[1]
    nnz, pairs, weighted = conv2d_counts(x, kh, kw, stride, pad, ho, wo, cout // groups)
    if nnz > dense_above * x.size:
        conv2d_dense(x, w, b, stride, pad, groups, out)
    else:
        conv2d_scatter_only(x, w, b, stride, pad, groups, out)
    return nnz, pairs, weighted


@njit(cache=True)
def conv2d_events(ys, xs, cs, w, b, stride, pad, out):
    """First layer fed by raw events: out = b + Σ_events w[:, :, c] placed at (y, x) (groups = 1).
    Each event adds its weight slice once (duplicates add twice); ys, xs, cs may be any integer dtype.
    Only in-bounds outputs are touched (the caller validates events against the sensor).
    Returns pairs = Σ_events (number of in-bounds outputs reached) × Cout."""
    kh, kw, _, cout = w.shape
    ho, wo, _ = out.shape
    _fill_bias(b, out)
    pairs = 0
    for e in range(ys.shape[0]):
        y = np.int64(ys[e])
        x = np.int64(xs[e])
        c = np.int64(cs[e])
        for ky in range(kh):
            t = y + pad - ky
            if t < 0:
                break              # t only decreases with ky
            if t % stride:
                continue
            oy = t // stride
            if oy >= ho:
                continue
            for kx in range(kw):
                u = x + pad - kx
                if u < 0:
                    break
                if u % stride:
                    continue
                ox = u // stride
                if ox >= wo:
                    continue
                orow = out[oy, ox]
                wrow = w[ky, kx, c]
                for j in range(cout):
                    orow[j] += wrow[j]
                pairs += cout
    return pairs
