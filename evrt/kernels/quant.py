"""Integer synaptic kernels of the int8 weight mode (docs/SEMANTICS.md, "Int8 weights").

Weights are int8 (per-output-channel scales applied later, once per output); inputs are spikes (0/1)
or event counts, so a synaptic op is an integer add of a weight row into an integer accumulator
(int32; int64 when the op's bound says int32 could overflow). Integer addition is associative, so the
result does not depend on the order of the adds: the NumPy twins in `quant_dense.py` must match
exactly, and any blocking or threading of these loops would too.

Counts follow the float kernels' rule exactly (evrt/kernels/counts.py): nnz = non-zero inputs,
pairs = (non-zero input, output neuron) pairs in bounds, weighted = Σ of the input value over those
pairs. They come from the input and the geometry alone, never from the weights.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .counts import Counts


@njit(cache=True, nogil=True)
def _taps(n_in, n_out, k, stride, pad, dil):
    """For each input index i, the (output index, kernel index) pairs with o*stride - pad + kk*dil == i."""
    cnt = np.zeros(n_in, np.int64)
    oi = np.zeros((n_in, k), np.int64)
    ki = np.zeros((n_in, k), np.int64)
    for o in range(n_out):
        for kk in range(k):
            i = o * stride - pad + kk * dil
            if 0 <= i < n_in:
                oi[i, cnt[i]] = o
                ki[i, cnt[i]] = kk
                cnt[i] += 1
    return cnt, oi, ki


@njit(cache=True, nogil=True)
def _add_rows(arow, q3, base, nzc, k, k1, g):
    """arow += the int8 rows q3[base + nzc[k:k1], g] (spikes). Eight rows are summed per pass over
    arow in int16 (|sum| <= 8 * 128 fits exactly; twice the lanes of int32), then widened once.
    A separate function: written inline in _conv_int the loop did not vectorise (5x slower)."""
    cpg = arow.shape[0]
    while k + 8 <= k1:
        r0 = q3[base + nzc[k], g]
        r1 = q3[base + nzc[k + 1], g]
        r2 = q3[base + nzc[k + 2], g]
        r3 = q3[base + nzc[k + 3], g]
        r4 = q3[base + nzc[k + 4], g]
        r5 = q3[base + nzc[k + 5], g]
        r6 = q3[base + nzc[k + 6], g]
        r7 = q3[base + nzc[k + 7], g]
        for j in range(cpg):
            arow[j] += (((np.int16(r0[j]) + np.int16(r1[j])) + (np.int16(r2[j]) + np.int16(r3[j])))
                        + ((np.int16(r4[j]) + np.int16(r5[j])) + (np.int16(r6[j]) + np.int16(r7[j]))))
        k += 8
    while k < k1:
        r0 = q3[base + nzc[k], g]
        for j in range(cpg):
            arow[j] += np.int32(r0[j])
        k += 1


@njit(cache=True, nogil=True)
def _add_scaled_rows(arow, q3, base, nzc, vals, k, k1, g):
    """arow += vals[i] * q3[base + nzc[i], g] for i in k..k1 (counts)."""
    cpg = arow.shape[0]
    for i in range(k, k1):
        r0 = q3[base + nzc[i], g]
        v = vals[i]
        for j in range(cpg):
            arow[j] += v * r0[j]


@njit(cache=True, nogil=True)
def _conv_int(x, q3, kh, kw, sh, sw, ph, pw, dh, dw, acc4):
    """acc4 (Ho, Wo, groups, Cout/groups) += Σ x * q over the non-zero inputs; q3 (kh*kw*cig, groups,
    Cout/groups) int8; x (H, W, Cin) of integer values in any dtype. Returns (nnz, pairs, weighted,
    first non-integer input's flat index or -1, largest |input|)."""
    h, wd, cin = x.shape
    _, groups, cpg = q3.shape
    ho, wo = acc4.shape[0], acc4.shape[1]
    cig = cin // groups
    ny, oy_t, ky_t = _taps(h, ho, kh, sh, ph, dh)
    nx, ox_t, kx_t = _taps(wd, wo, kw, sw, pw, dw)
    nzc = np.empty(cin, np.int64)
    vals = np.empty(cin, np.int64)
    gp = np.empty(groups + 1, np.int64)
    nnz = 0
    pairs = 0
    weighted = 0
    bad = -1
    vmax = 0
    for yy in range(h):
        for xx in range(wd):
            xrow = x[yy, xx]
            # list the non-zero channels per group, branch-free (write every offset, advance on
            # non-zeros), then look at the listed values only: is every one of them 1?
            n = 0
            for g in range(groups):
                gp[g] = n
                c0 = g * cig
                for ci in range(cig):
                    nzc[n] = ci
                    n += xrow[c0 + ci] != 0
            gp[groups] = n
            other = 0
            for g in range(groups):
                c0 = g * cig
                for k in range(gp[g], gp[g + 1]):
                    other += xrow[c0 + nzc[k]] != 1
            ones = other == 0
            total = n
            if not ones:         # counts (or a bad value): the values, checked to be whole numbers
                total = 0
                for g in range(groups):
                    for k in range(gp[g], gp[g + 1]):
                        c = g * cig + nzc[k]
                        v = xrow[c]
                        iv = np.int64(v)
                        if iv != v and bad < 0:
                            bad = (yy * wd + xx) * cin + c
                        vals[k] = iv
                        total += iv
                        vmax = max(vmax, abs(iv))
            elif n:
                vmax = max(vmax, 1)
            if n == 0:
                continue
            reach = ny[yy] * nx[xx] * cpg
            nnz += n
            pairs += n * reach
            weighted += total * reach
            for a in range(ny[yy]):
                oy = oy_t[yy, a]
                ky = ky_t[yy, a]
                for e in range(nx[xx]):
                    ox = ox_t[xx, e]
                    base = (ky * kw + kx_t[xx, e]) * cig
                    for g in range(groups):
                        k = gp[g]
                        k1 = gp[g + 1]
                        if k == k1:
                            continue
                        if ones:
                            _add_rows(acc4[oy, ox, g], q3, base, nzc, k, k1, g)
                        else:
                            _add_scaled_rows(acc4[oy, ox, g], q3, base, nzc, vals, k, k1, g)
    return nnz, pairs, weighted, bad, vmax


def conv2d_int(x, q, stride, pad, dilation, groups, acc) -> tuple[Counts, int, int]:
    """acc (Ho, Wo, Cout) <- Σ x * q (integer; acc's dtype int32 or int64, overwritten). x (H, W, Cin)
    holds spikes or counts (integer values in any dtype), q (kh, kw, Cin/groups, Cout) int8; stride,
    pad, dilation are (h, w) pairs. Returns (Counts, flat index of the first non-integer input or -1,
    largest |input|). The caller picks acc's dtype: int32 holds any sum while
    largest |input| * kh * kw * Cin/groups * 128 < 2**31 (`int32_holds`)."""
    kh, kw, cig, cout = q.shape
    if x.shape[2] != cig * groups or cout % groups:
        raise ValueError(f"conv2d_int: x has {x.shape[2]} channels, q {q.shape} with groups={groups}")
    acc[...] = 0
    q3 = np.ascontiguousarray(q).reshape(kh * kw * cig, groups, cout // groups)
    a4 = acc.reshape(acc.shape[0], acc.shape[1], groups, cout // groups)
    nnz, pairs, weighted, bad, vmax = _conv_int(np.ascontiguousarray(x), q3, kh, kw, stride[0], stride[1],
                                                pad[0], pad[1], dilation[0], dilation[1], a4)
    return Counts(int(nnz), int(pairs), float(weighted)), int(bad), int(vmax)


def int32_holds(vmax: int, terms: int) -> bool:
    """Whether every sum of `terms` products of an input of magnitude <= vmax and an int8 weight
    (|q| <= 128) fits an int32 accumulator."""
    return vmax * terms * 128 < 2 ** 31


def linear_int(x, q, acc) -> tuple[Counts, int, int]:
    """acc (N, Cout) <- x (N, Cin) @ q (Cin, Cout), integer: the 1x1 conv on the (N, 1, Cin) view."""
    n, cin = x.shape
    if cin != q.shape[0]:
        raise ValueError(f"linear_int: x has {cin} channels, q is {q.shape}")
    return conv2d_int(x.reshape(n, 1, cin), q.reshape(1, 1, cin, q.shape[1]), (1, 1), (0, 0), (1, 1), 1,
                      acc.reshape(n, 1, q.shape[1]))


@njit(cache=True, nogil=True)
def _conv_events_int(ys, xs, cs, q, sh, sw, ph, pw, dh, dw, acc):
    kh, kw, _, cout = q.shape
    ho, wo, _ = acc.shape
    pairs = 0
    for e in range(ys.shape[0]):
        y = np.int64(ys[e])
        x = np.int64(xs[e])
        c = np.int64(cs[e])
        for ky in range(kh):
            t = y + ph - ky * dh
            if t < 0:
                break
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
                arow = acc[oy, ox]
                qrow = q[ky, kx, c]
                for j in range(cout):
                    arow[j] += np.int32(qrow[j])
                pairs += cout
    return pairs


def conv2d_events_int(ys, xs, cs, q, stride, pad, dilation, acc) -> Counts:
    """First layer fed by raw events (groups 1): acc <- Σ_events q[:, :, c] placed at (y, x); each event
    adds its int8 weight slice once. Counts as conv2d_events: nnz = events, pairs = weighted."""
    acc[...] = 0
    pairs = int(_conv_events_int(ys, xs, cs, q, stride[0], stride[1], pad[0], pad[1],
                                 dilation[0], dilation[1], acc))
    return Counts(len(ys), pairs, float(pairs))


@njit(cache=True, nogil=True)
def _apply_scale(acc2, scale, b, out2):
    for i in range(acc2.shape[0]):
        for j in range(acc2.shape[1]):
            out2[i, j] = np.float64(acc2[i, j]) * scale[j] + b[j]


def apply_scale(acc, scale, b, out) -> None:
    """out[..., c] <- acc[..., c] * scale[c] + b[c], computed in float64 and rounded once into out's
    dtype: the one multiply per output neuron and step (scale, b float64 (Cout,))."""
    c = acc.shape[-1]
    _apply_scale(acc.reshape(-1, c), scale, b, out.reshape(-1, c))
