"""Plain-NumPy twins of the kernels, written independently of them (no numba, no shared helpers).
Used by the tests as the reference; slow but obvious. All return new arrays (plus counts where the
kernel returns counts)."""
from __future__ import annotations

import numpy as np


def _out_size(n, k, stride, pad):
    return (n + 2 * pad - k) // stride + 1


def conv2d(x, w, b, stride, pad, groups):
    """Zero-padded conv as a sum over kernel taps of shifted strided views, per group (einsum)."""
    h, wd, cin = x.shape
    kh, kw, cig, cout = w.shape
    ho, wo = _out_size(h, kh, stride, pad), _out_size(wd, kw, stride, pad)
    cpg = cout // groups
    xp = np.zeros((h + 2 * pad, wd + 2 * pad, cin), x.dtype)
    xp[pad:pad + h, pad:pad + wd] = x
    out = np.zeros((ho, wo, cout), np.result_type(x, w))
    for ky in range(kh):
        for kx in range(kw):
            view = xp[ky:ky + stride * (ho - 1) + 1:stride, kx:kx + stride * (wo - 1) + 1:stride]
            for g in range(groups):
                out[..., g * cpg:(g + 1) * cpg] += np.einsum(
                    "hwi,io->hwo", view[..., g * cig:(g + 1) * cig], w[ky, kx, :, g * cpg:(g + 1) * cpg])
    return out + b


def conv2d_counts(x, kh, kw, stride, pad, groups, cout):
    """(pairs, weighted) by running the dense conv of the non-zero indicator (resp. of x) with an
    all-ones kernel: each output sums the inputs of its group it can see, so the total over outputs is
    the number of (non-zero input, output neuron) pairs."""
    cig = x.shape[2] // groups
    ones = np.ones((kh, kw, cig, cout))
    ind = (x != 0).astype(np.float64)
    pairs = conv2d(ind, ones, 0.0, stride, pad, groups).sum()
    weighted = conv2d(np.where(x != 0, x, 0).astype(np.float64), ones, 0.0, stride, pad, groups).sum()
    return int(round(pairs)), float(weighted)


def conv2d_events(ys, xs, cs, w, b, stride, pad, h, wd):
    """Build the (h, wd, Cin) count frame from the events, then the dense conv."""
    frame = np.zeros((h, wd, w.shape[2]), w.dtype)
    np.add.at(frame, (np.asarray(ys, np.int64), np.asarray(xs, np.int64), np.asarray(cs, np.int64)), 1)
    out = conv2d(frame, w, b, stride, pad, 1)
    # all-ones conv of the count frame: each event counts once per output neuron it reaches
    frame_pairs = conv2d(frame.astype(np.float64), np.ones(w.shape), 0.0, stride, pad, 1).sum()
    return out, int(round(frame_pairs))


def conv2d_general(x, w, b, stride, pad, dilation, groups):
    """Per-axis stride/pad/dilation (each (h, w)): pad the map, then for every tap take the strided view
    starting at the tap's dilated offset and add its product with the tap's weights, per group."""
    h, wd, cin = x.shape
    kh, kw, cig, cout = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    cpg = cout // groups
    xp = np.zeros((h + 2 * ph, wd + 2 * pw, cin), x.dtype)
    xp[ph:ph + h, pw:pw + wd] = x
    out = np.zeros((ho, wo, cout), np.result_type(x, w))
    for ky in range(kh):
        for kx in range(kw):
            view = xp[ky * dh:ky * dh + sh * (ho - 1) + 1:sh, kx * dw:kx * dw + sw * (wo - 1) + 1:sw]
            for g in range(groups):
                out[..., g * cpg:(g + 1) * cpg] += np.einsum(
                    "hwi,io->hwo", view[..., g * cig:(g + 1) * cig], w[ky, kx, :, g * cpg:(g + 1) * cpg])
    return out + b


def conv2d_general_counts(x, kh, kw, stride, pad, dilation, groups, cout):
    """(pairs, weighted) as conv2d_counts: the all-ones conv of the indicator (resp. of x), summed."""
    ones = np.ones((kh, kw, x.shape[2] // groups, cout))
    ind = (x != 0).astype(np.float64)
    pairs = conv2d_general(ind, ones, 0.0, stride, pad, dilation, groups).sum()
    weighted = conv2d_general(x.astype(np.float64), ones, 0.0, stride, pad, dilation, groups).sum()
    return int(round(pairs)), float(weighted)


def conv2d_general_events(ys, xs, cs, w, b, stride, pad, dilation, h, wd):
    """The count frame of the events through conv2d_general; pairs from the all-ones conv."""
    frame = np.zeros((h, wd, w.shape[2]), w.dtype)
    np.add.at(frame, (np.asarray(ys, np.int64), np.asarray(xs, np.int64), np.asarray(cs, np.int64)), 1)
    out = conv2d_general(frame, w, b, stride, pad, dilation, 1)
    pairs = conv2d_general(frame.astype(np.float64), np.ones(w.shape), 0.0, stride, pad, dilation, 1).sum()
    return out, int(round(pairs))


def linear(x, w, b):
    return x @ w + b


def linear_counts(x, cout):
    nz = x != 0
    return int(nz.sum()) * cout, float(x[nz].astype(np.float64).sum()) * cout


def maxpool2d(x, k, stride, pad):
    """Stack the k*k shifted strided views of the -inf padded map and take their max."""
    h, wd, c = x.shape
    ho, wo = _out_size(h, k, stride, pad), _out_size(wd, k, stride, pad)
    xp = np.full((h + 2 * pad, wd + 2 * pad, c), -np.inf, x.dtype)
    xp[pad:pad + h, pad:pad + wd] = x
    views = [xp[ky:ky + stride * (ho - 1) + 1:stride, kx:kx + stride * (wo - 1) + 1:stride]
             for ky in range(k) for kx in range(k)]
    return np.max(np.stack(views), axis=0)


def _tile(p, n, dtype):
    """Parameter of size P applied to flat element i as p[i % P], rounded to dtype."""
    p = np.asarray(p, dtype).reshape(-1)
    return np.tile(p, n // p.size)


def lif_step(x, v, k, vth, f=None):
    """Returns (spikes, new v, H). f: forced spikes (teacher forcing) or None."""
    dt = v.dtype
    k = dt.type(k)
    hm = v + (x - v) * k
    s = hm >= _tile(vth, v.size, dt).reshape(v.shape)
    if f is not None:
        s = f != 0
    return s.astype(dt), np.where(s, dt.type(0), hm), hm


def if_step(x, v, vth, f=None):
    dt = v.dtype
    th = _tile(vth, v.size, dt).reshape(v.shape)
    hm = v + x
    s = hm >= th
    if f is not None:
        s = f != 0
    return s.astype(dt), np.where(s, hm - th, hm), hm


def table_step(x, v, r, c, theta, sign, k, f=None):
    dt = v.dtype
    shp = v.shape
    r, c, theta, sign = (_tile(p, v.size, dt).reshape(shp) for p in (r, c, theta, sign))
    hm = r * v + c + dt.type(k) * x
    s = np.where(sign >= 0, hm >= theta, hm <= theta)
    if f is not None:
        s = f != 0
    return s.astype(dt), np.where(s, dt.type(0), hm), hm


def ssa(q, k, v, heads):
    """Returns (out, acs); acs from nnz counts: Σ_j nnz(Q[:,j]) nnz(K[:,j]) + Σ_m nnz(A[:,m]) nnz(V[m,:])."""
    n, c = q.shape
    d = c // heads
    out = np.zeros_like(q)
    acs = 0
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        qh, kh, vh = q[:, sl], k[:, sl], v[:, sl]
        a = qh @ kh.T
        out[:, sl] = a @ vh
        acs += int(((qh != 0).sum(0) * (kh != 0).sum(0)).sum())
        acs += int(((a != 0).sum(0) * (vh != 0).sum(1)).sum())
    return out, acs


def sdsa_kv(k, v):
    return (k * v).sum(0), int(np.count_nonzero((k != 0) & (v != 0)))


def dssa_scores(y, s, heads):
    L = y.shape[0]
    hw, c = s.shape
    d = c // heads
    y1 = y.reshape(L, heads, 2 * d)[:, :, :d]
    out = np.einsum("lhj,phj->hlp", y1, s.reshape(hw, heads, d))
    return out, int(np.count_nonzero(s)) * L


def dssa_out(y, sa, heads):
    L = y.shape[0]
    d = y.shape[1] // (2 * heads)
    y2 = y.reshape(L, heads, 2 * d)[:, :, d:]
    out = np.einsum("lhj,hlp->phj", y2, sa)
    return out.reshape(sa.shape[2], heads * d), int(np.count_nonzero(sa)) * d


# ------------------------------------------------ converted (IF/DIF) models: evrt/kernels/temporal.py

def dif_step(x, v, vth, fired, cap, may_fire):
    """NumPy twin of dif_step; returns (s, v, fired) as new arrays."""
    hv = v + x
    s = (hv >= vth) & (fired < cap) & bool(may_fire)
    return s.astype(x.dtype), hv - vth * s, fired + s


def _split(x, heads):
    n, d_all = x.shape
    return x.reshape(n, heads, d_all // heads).transpose(1, 0, 2)   # (heads, N, d)


def tprod_qk(a, b, A, B, heads):
    """Twin of tprod_qk from the cumulative counts; returns (out, acs, A_t, B_t)."""
    At, Bt = A + a, B + b
    ah, Bh, Ah, bh = (_split(x, heads) for x in (a, Bt, A, b))
    out = ah @ Bh.transpose(0, 2, 1) + Ah @ bh.transpose(0, 2, 1)
    nz = lambda x: (x != 0).astype(np.int64)   # noqa: E731
    acs = int((nz(ah) @ nz(Bh).transpose(0, 2, 1)).sum() + (nz(Ah) @ nz(bh).transpose(0, 2, 1)).sum())
    return out, acs, At, Bt


def tprod_av(a, v, A, V, heads):
    """Twin of tprod_av; returns (out, acs, A_t, V_t)."""
    At, Vt = A + a, V + v
    Vh, vh = _split(Vt, heads), _split(v, heads)
    out = (a @ Vh + A @ vh).transpose(1, 0, 2).reshape(a.shape[1], -1)
    nz = lambda x: (x != 0).astype(np.int64)   # noqa: E731
    acs = int((nz(a) @ nz(Vh)).sum() + (nz(A) @ nz(vh)).sum())
    return out, acs, At, Vt


def _maxpool_counts(A, k, stride, pad):
    hh, ww, cc = A.shape
    ho, wo = (hh + 2 * pad - k) // stride + 1, (ww + 2 * pad - k) // stride + 1
    p = np.full((hh + 2 * pad, ww + 2 * pad, cc), -np.inf)
    p[pad:pad + hh, pad:pad + ww] = A
    out = np.full((ho, wo, cc), -np.inf)
    for dy in range(k):
        for dx in range(k):
            out = np.maximum(out, p[dy:dy + stride * (ho - 1) + 1:stride, dx:dx + stride * (wo - 1) + 1:stride])
    return out


def maxpool_delta(s, A, k, stride, pad):
    """Twin of maxpool_delta: max-pool of A_t minus max-pool of A_{t-1}; returns (out, A_t)."""
    At = A + s
    return _maxpool_counts(At, k, stride, pad) - _maxpool_counts(A, k, stride, pad), At
