"""Spike-driven attention products, channels-last (x arrays are (N, C); head h owns channels
h*d ... h*d + d - 1). Each kernel skips zero operands and returns the number of accumulations (ACs):
the non-zero terms it added. Values other than 0/1 are multiplied in, so integer-valued inputs
stay exact."""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _head_dim(c, heads):
    if heads <= 0 or c % heads != 0:
        raise ValueError("channel count must be a multiple of heads")
    return c // heads


@njit(cache=True)
def ssa(q, k, v, heads, out):
    """Spikformer SSA, unscaled: out[:, head] = (Q_h K_hᵀ) V_h for q, k, v, out (N, C).
    ACs = non-zero terms q[n,j] k[m,j] of the first product + non-zero terms A[n,m] v[m,j] of the
    second. Event lists: tokens of each K channel, channels of each V token."""
    n, c = q.shape
    d = _head_dim(c, heads)
    out[:, :] = 0
    a_row = np.zeros(n, out.dtype)
    k_cnt = np.zeros(d, np.int64)
    k_tok = np.empty((d, n), np.int64)
    v_cnt = np.zeros(n, np.int64)
    v_ch = np.empty((n, d), np.int64)
    acs = 0
    for hd in range(heads):
        c0 = hd * d
        k_cnt[:] = 0
        v_cnt[:] = 0
        for m in range(n):
            for j in range(d):
                if k[m, c0 + j] != 0:
                    k_tok[j, k_cnt[j]] = m
                    k_cnt[j] += 1
                if v[m, c0 + j] != 0:
                    v_ch[m, v_cnt[m]] = j
                    v_cnt[m] += 1
        for i in range(n):
            a_row[:] = 0
            for j in range(d):                       # A[i, :] = Σ_j q[i,j] K[:, j]
                qv = q[i, c0 + j]
                if qv == 0:
                    continue
                for t in range(k_cnt[j]):
                    m = k_tok[j, t]
                    a_row[m] += qv * k[m, c0 + j]
                acs += k_cnt[j]
            orow = out[i]
            for m in range(n):                       # out[i, head] = Σ_m A[i,m] V[m, :]
                am = a_row[m]
                if am == 0:
                    continue
                for t in range(v_cnt[m]):
                    j = v_ch[m, t]
                    orow[c0 + j] += am * v[m, c0 + j]
                acs += v_cnt[m]
    return acs


@njit(cache=True)
def sdsa_kv(k, v, out):
    """SDT v1 (code version): out[c] = Σ_n k[n,c] v[n,c] for k, v (N, C), out (C,).
    ACs = number of n with both k[n,c] and v[n,c] non-zero, summed over c."""
    n, c = k.shape
    out[:] = 0
    acs = 0
    for i in range(n):
        for j in range(c):
            kv = k[i, j]
            if kv != 0:
                vv = v[i, j]
                if vv != 0:
                    out[j] += kv * vv
                    acs += 1
    return acs


@njit(cache=True)
def _row_events(s, heads, d):
    """Non-zero channels of each row of s (P, C) in ascending order, and for each row the start of
    each head's run: idx (P, C), ptr (P, heads + 1)."""
    p_n, c = s.shape
    idx = np.empty((p_n, c), np.int64)
    ptr = np.zeros((p_n, heads + 1), np.int64)
    for p in range(p_n):
        t = 0
        for hd in range(heads):
            ptr[p, hd] = t
            for j in range(hd * d, hd * d + d):
                if s[p, j] != 0:
                    idx[p, t] = j
                    t += 1
        ptr[p, heads] = t
    return idx, ptr


@njit(cache=True)
def dssa_scores(y, s, heads, out):
    """SpikingResformer DSSA first product (spec §5.2 step 4, unscaled).
    y (L, 2C) real: channel h*2d + j is y1 of head h for j < d (y2 for d <= j < 2d);
    s (HW, C) spikes: channel h*d + j; out (heads, L, HW):
        out[h, l, p] = Σ_j y[l, h*2d + j] * s[p, h*d + j].
    Each spike s[p, h*d+j] adds the column y[:, h*2d+j] into out[h, :, p]; ACs = nnz(s) * L
    (they are MACs when y is real-valued: the caller decides)."""
    L = y.shape[0]
    hw, c = s.shape
    d = _head_dim(c, heads)
    if y.shape[1] != 2 * c:
        raise ValueError("dssa_scores: y must have 2C channels")
    idx, ptr = _row_events(s, heads, d)
    # gather form (loop over the spikes of column p for each (h, l)): writes stay contiguous over p
    for hd in range(heads):
        yo = hd * 2 * d - hd * d          # y channel = s channel + yo
        for l in range(L):
            yrow = y[l]
            orow = out[hd, l]
            for p in range(hw):
                orow[p] = 0                    # accumulate in out's dtype
                for t in range(ptr[p, hd], ptr[p, hd + 1]):
                    j = idx[p, t]
                    sv = s[p, j]
                    if sv == 1:
                        orow[p] += yrow[j + yo]
                    else:
                        orow[p] += sv * yrow[j + yo]
    return ptr[:, heads].sum() * L


@njit(cache=True)
def dssa_out(y, sa, heads, out):
    """SpikingResformer DSSA second product (spec §5.2 step 5, unscaled).
    y (L, 2C), sa (heads, L, HW) spikes, out (HW, C):
        out[p, h*d + j] = Σ_l y[l, h*2d + d + j] * sa[h, l, p].
    Each spike sa[h, l, p] adds the contiguous row y[l, h*2d+d : h*2d+2d] into out[p, h*d : h*d+d];
    ACs = nnz(sa) * d."""
    L, c2 = y.shape
    hw, c = out.shape
    d = _head_dim(c, heads)
    if c2 != 2 * c or sa.shape[0] != heads or sa.shape[1] != L or sa.shape[2] != hw:
        raise ValueError("dssa_out: shapes do not match y (L, 2C), sa (heads, L, HW), out (HW, C)")
    out[:, :] = 0
    acs = 0
    for hd in range(heads):
        y0 = hd * 2 * d + d
        o0 = hd * d
        for l in range(L):
            yrow = y[l, y0:y0 + d]
            srow = sa[hd, l]
            for p in range(hw):
                a = srow[p]
                if a == 0:
                    continue
                orow = out[p, o0:o0 + d]       # 0-based slices: no wraparound test, vectorises
                if a == 1:
                    for j in range(d):
                        orow[j] += yrow[j]
                else:
                    for j in range(d):
                        orow[j] += a * yrow[j]
                acs += d
    return acs
