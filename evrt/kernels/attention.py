"""Spike-driven attention products, channels-last (x arrays are (N, C); head h owns channels
h*d ... h*d + d - 1). Each kernel is driven by the non-zero (spike) operands and returns the number
of accumulations (ACs): the non-zero terms of the product. Values other than 0/1 are multiplied in,
so integer-valued inputs stay exact. Every output element is 0 plus its non-zero terms in a fixed
ascending order (see each kernel), in out's dtype: results do not depend on the loop layout."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .threads import get_threads, serial_and_parallel


@njit(cache=True, nogil=True)
def _head_dim(c, heads):
    if heads <= 0 or c % heads != 0:
        raise ValueError("channel count must be a multiple of heads")
    return c // heads


def _ssa_impl(q, k, v, heads, out):
    """Spikformer SSA, unscaled: out[:, head] = (Q_h K_hᵀ) V_h for q, k, v, out (N, C).
    ACs = non-zero terms q[n,j] k[m,j] of the first product + non-zero terms A[n,m] v[m,j] of the
    second.

    Worked transposed, token-major: with Qᵀ (C, N), each K event (m, j) adds the contiguous row
    k[m,j] Qᵀ[j, :] into Aᵀ[m, :], and each V event (m, j) adds v[m,j] Aᵀ[m, :] into outᵀ[j, :]:
    every inner loop is one N-long 0-based row (vectorises) instead of a walk through event lists.
    The zero terms this adds are ±0, which leave every partial sum unchanged, and each sum still
    runs over j (first product) and m (second) in ascending order, so the results equal the
    skip-zero ones bit for bit (spikes are finite)."""
    n, c = q.shape
    d = _head_dim(c, heads)
    qt = np.empty((c, n), q.dtype)
    q_nnz = np.zeros(c, np.int64)
    k_nnz = np.zeros(c, np.int64)
    for i in range(n):
        qrow = q[i]
        krow = k[i]
        for ch in range(c):
            qt[ch, i] = qrow[ch]
            q_nnz[ch] += qrow[ch] != 0
            k_nnz[ch] += krow[ch] != 0
    acs = 0
    for ch in range(c):                              # first product: nnz(Q[:,j]) nnz(K[:,j])
        acs += q_nnz[ch] * k_nnz[ch]
    ot = np.zeros((c, n), out.dtype)                 # outᵀ
    for hd in prange(heads):                         # heads are independent: the parallel twin splits them
        at = np.empty(n, out.dtype)                  # Aᵀ[m, :] of this head and token m
        c0 = hd * d
        for m in range(n):
            at[:] = 0
            krow = k[m, c0:c0 + d]
            for j in range(d):                       # A[:, m] = Σ_j k[m,j] Qᵀ[j, :]
                kv = krow[j]
                if kv != 0:
                    qrow = qt[c0 + j]
                    for i in range(n):
                        at[i] += kv * qrow[i]
            na = 0
            for i in range(n):
                na += at[i] != 0
            if na == 0:
                continue
            vrow = v[m, c0:c0 + d]
            for j in range(d):                       # outᵀ[j, :] += v[m,j] A[:, m]
                vv = vrow[j]
                if vv != 0:
                    orow = ot[c0 + j]
                    for i in range(n):
                        orow[i] += vv * at[i]
                    acs += na                        # second product: nnz(A[:,m]) per V event
    for i in range(n):
        orow = out[i]
        for ch in range(c):
            orow[ch] = ot[ch, i]
    return acs


@njit(cache=True, nogil=True)
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


def _dssa_scores_impl(y, s, heads, out, parts):
    """SpikingResformer DSSA first product (docs/SEMANTICS.md "Families", unscaled).
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
    # y1 transposed, yt[h*d + j, :] = y[:, h*2d + j]: a spike then adds one contiguous L-long row
    # (vectorises) instead of one scalar per (l, p) walked through per-pixel spike lists (7x faster)
    yt = np.empty((c, L), y.dtype)
    for l in range(L):
        yrow = y[l]
        for hd in range(heads):
            for j in range(d):
                yt[hd * d + j, l] = yrow[hd * 2 * d + j]
    # acc[q, :] = out[h, :, p0 + q] for a tile of PT pixels (16 KB at L = 256: stays in L1), written
    # back transposed, a full cache line of out per l. Each out element is still 0 plus its spikes'
    # terms in ascending j, in out's dtype: the same sums as the per-element form, bit for bit.
    PT = 16
    tiles = (hw + PT - 1) // PT
    nnz = 0
    total = heads * tiles
    per = (total + parts - 1) // parts
    for i in prange(per * parts):                    # (head, pixel tile) pairs are independent; a
        tile = (i % per) * parts + i // per          # thread's share (a block of i) is spread over them
        if tile >= total:
            continue
        hd = tile // tiles
        p0 = (tile % tiles) * PT
        c0 = hd * d
        acc = np.empty((PT, L), out.dtype)
        np_ = min(PT, hw - p0)
        for qq in range(np_):
            arow = acc[qq]
            arow[:] = 0
            srow = s[p0 + qq, c0:c0 + d]
            for j in range(d):
                sv = srow[j]
                if sv == 0:
                    continue
                nnz += 1
                yrow = yt[c0 + j]
                if sv == 1:
                    for l in range(L):
                        arow[l] += yrow[l]
                else:
                    for l in range(L):
                        arow[l] += sv * yrow[l]
        for l in range(L):
            orow = out[hd, l, p0:p0 + np_]
            for qq in range(np_):
                orow[qq] = acc[qq, l]
    return nnz * L


def _dssa_out_impl(y, sa, heads, out, parts):
    """SpikingResformer DSSA second product (docs/SEMANTICS.md "Families", unscaled).
    y (L, 2C), sa (heads, L, HW) spikes, out (HW, C):
        out[p, h*d + j] = Σ_l y[l, h*2d + d + j] * sa[h, l, p].
    Each spike sa[h, l, p] adds the contiguous row y[l, h*2d+d : h*2d+2d] into out[p, h*d : h*d+d];
    ACs = nnz(sa) * d."""
    L, c2 = y.shape
    hw, c = out.shape
    d = _head_dim(c, heads)
    if c2 != 2 * c or sa.shape[0] != heads or sa.shape[1] != L or sa.shape[2] != hw:
        raise ValueError("dssa_out: shapes do not match y (L, 2C), sa (heads, L, HW), out (HW, C)")
    nnz = 0
    PB = 64
    nblk = (hw + PB - 1) // PB
    for part in prange(parts):                 # pixel blocks dealt round-robin to the parts (threads):
        nz = np.empty(hw, np.int64)            # spread over the map whatever part of it is active
        for blk in range(part, nblk, parts):
            out[blk * PB:min(hw, blk * PB + PB), :] = 0
        for hd in range(heads):
            y0 = hd * 2 * d + d
            o0 = hd * d
            for l in range(L):
                yrow = y[l, y0:y0 + d]
                srow = sa[hd, l]
                t = 0
                for blk in range(part, nblk, parts):
                    for p in range(blk * PB, min(hw, blk * PB + PB)):
                        nz[t] = p              # branch-free list of the spiking pixels: at 3-30 %
                        t += srow[p] != 0      # density a branch per pixel mispredicts often (2x)
                nnz += t
                for u in range(t):
                    p = nz[u]
                    a = srow[p]
                    orow = out[p, o0:o0 + d]   # 0-based slices: no wraparound test, vectorises
                    if a == 1:
                        for j in range(d):
                            orow[j] += yrow[j]
                    else:
                        for j in range(d):
                            orow[j] += a * yrow[j]
    return nnz * d


_ssa, _ssa_par = serial_and_parallel(_ssa_impl)
_dssa_scores, _dssa_scores_par = serial_and_parallel(_dssa_scores_impl)
_dssa_out, _dssa_out_par = serial_and_parallel(_dssa_out_impl)


# an attention product with fewer possible terms stays on one thread (Spikformer-DVS's 64 tokens x 256
# channels, ~0.2 ms a call, gained nothing from a fork-join)
PAR_MIN_TERMS = 1 << 22


def ssa(q, k, v, heads, out):
    """See _ssa_impl; heads split between threads when more than one is set. Returns the ACs."""
    n, c = q.shape
    par = get_threads() > 1 and heads > 1 and n * n * c >= PAR_MIN_TERMS
    return (_ssa_par if par else _ssa)(q, k, v, heads, out)


def dssa_scores(y, s, heads, out):
    """See _dssa_scores_impl; (head, pixel tile) pairs split between threads. Returns the ACs."""
    n = get_threads()
    return _dssa_scores_par(y, s, heads, out, n) if n > 1 else _dssa_scores(y, s, heads, out, 1)


def dssa_out(y, sa, heads, out):
    """See _dssa_out_impl; output pixels split between threads. Returns the ACs."""
    n = get_threads()
    if n > 1 and out.shape[0] >= 64 * n:
        return _dssa_out_par(y, sa, heads, out, n)
    return _dssa_out(y, sa, heads, out, 1)
