"""Kernels for converted (IF/DIF) models: temporally decomposed products and max-pooling, and the
delayed integrate-and-fire neuron. Each numba kernel has a NumPy twin in evrt/kernels/dense.py.

Temporal decomposition: a layer that combines two spike streams a(t), b(t) non-linearly works on their
cumulative counts A_t = Σ_{τ≤t} a(τ). It emits, each step, the increment of its output over the
counts seen so far, so after the last step the emitted total equals the layer applied to the final
counts (docs/SEMANTICS.md "Converted models"):
  product:  A_t B_tᵀ − A_{t−1} B_{t−1}ᵀ = a_t B_tᵀ + A_{t−1} b_tᵀ   (B_t = B_{t−1} + b_t)
  max-pool: max(A_t) − max(A_{t−1}) over each window (0 or 1 when a is binary).
Both loop over the spikes that arrived, never over silent inputs; the cumulative counts are state.
ACs of a product are the non-zero terms added (a spike meeting a non-zero count adds that count once).
"""
from __future__ import annotations

from numba import njit


# ------------------------------------------------------------------------------------------ neuron

@njit(cache=True, nogil=True)
def dif_step(x, v, vth, fired, cap, may_fire, s, h):
    """Integrate-and-fire, soft reset, at most `cap` spikes per sample. All arrays flat, same length
    (vth per element). may_fire=False: the delay phase — integrate only. h (size 0 or n) records the
    pre-fire membrane. Returns the number of spikes."""
    rec = h.size > 0
    n = 0
    for i in range(x.size):
        hv = v[i] + x[i]
        if rec:
            h[i] = hv
        if may_fire and hv >= vth[i] and fired[i] < cap:
            s[i] = 1.0
            v[i] = hv - vth[i]
            fired[i] += 1
            n += 1
        else:
            s[i] = 0.0
            v[i] = hv
    return n


@njit(cache=True, nogil=True)
def dif_step_forced(x, v, vth, fired, f, s, h):
    """Teacher forcing: the given spikes f replace the decision (and drive the reset)."""
    rec = h.size > 0
    n = 0
    for i in range(x.size):
        hv = v[i] + x[i]
        if rec:
            h[i] = hv
        if f[i] != 0:
            s[i] = 1.0
            v[i] = hv - vth[i]
            fired[i] += 1
            n += 1
        else:
            s[i] = 0.0
            v[i] = hv
    return n


# ----------------------------------------------------------------------------------------- products

@njit(cache=True, nogil=True)
def tprod_qk(a, b, A, B, heads, out):
    """Increment of per-head A Bᵀ this step. a, b (N, D): this step's spikes; A, B (N, D): cumulative
    counts before this step, advanced in place. out (heads, N, N) overwritten. Returns ACs."""
    n_a, d_all = a.shape
    n_b = b.shape[0]
    d = d_all // heads
    out[...] = 0
    acs = 0
    for j in range(n_b):                # B_t = B_{t-1} + b_t
        for c in range(d_all):
            B[j, c] += b[j, c]
    for i in range(n_a):                # a_t · B_tᵀ
        for c in range(d_all):
            ai = a[i, c]
            if ai != 0:
                h = c // d
                for j in range(n_b):
                    bj = B[j, c]
                    if bj != 0:
                        out[h, i, j] += bj if ai == 1 else ai * bj
                        acs += 1
    for j in range(n_b):                # A_{t-1} · b_tᵀ
        for c in range(d_all):
            bj = b[j, c]
            if bj != 0:
                h = c // d
                for i in range(n_a):
                    ai = A[i, c]
                    if ai != 0:
                        out[h, i, j] += ai if bj == 1 else ai * bj
                        acs += 1
    for i in range(n_a):
        for c in range(d_all):
            A[i, c] += a[i, c]
    return acs


@njit(cache=True, nogil=True)
def tprod_av(a, v, A, V, out):
    """Increment of per-head A V this step: a (heads, N, M) spikes, v (M, D) spikes; A, V their
    cumulative counts before this step (advanced in place); out (N, D) overwritten. Returns ACs."""
    heads, n, m = a.shape
    d_all = v.shape[1]
    d = d_all // heads
    out[...] = 0
    acs = 0
    for j in range(m):                  # V_t = V_{t-1} + v_t
        for c in range(d_all):
            V[j, c] += v[j, c]
    for h in range(heads):              # a_t · V_t
        for i in range(n):
            for j in range(m):
                aij = a[h, i, j]
                if aij != 0:
                    for c in range(h * d, (h + 1) * d):
                        vv = V[j, c]
                        if vv != 0:
                            out[i, c] += vv if aij == 1 else aij * vv
                            acs += 1
    for j in range(m):                  # A_{t-1} · v_t
        for c in range(d_all):
            vj = v[j, c]
            if vj != 0:
                h = c // d
                for i in range(n):
                    aa = A[h, i, j]
                    if aa != 0:
                        out[i, c] += aa if vj == 1 else aa * vj
                        acs += 1
    for h in range(heads):
        for i in range(n):
            for j in range(m):
                A[h, i, j] += a[h, i, j]
    return acs


# ------------------------------------------------------------------------------------------ pooling

@njit(cache=True, nogil=True)
def maxpool_delta(s, A, M, k, stride, pad, out):
    """Temporally decomposed max-pool (floor mode; padding never wins since counts are >= 0).
    s (H, W, C) this step's spikes; A (H, W, C) cumulative counts, M (Ho, Wo, C) window maxima of the
    counts so far — both advanced in place. out (Ho, Wo, C) = increase of each window's maximum."""
    hh, ww, cc = s.shape
    ho, wo, _ = out.shape
    out[...] = 0
    for y in range(hh):
        for x in range(ww):
            for c in range(cc):
                sv = s[y, x, c]
                if sv == 0:
                    continue
                A[y, x, c] += sv
                val = A[y, x, c]
                # windows covering row y: oy*stride - pad <= y <= oy*stride - pad + k - 1
                oy0 = max(0, (y + pad - k + stride) // stride)
                oy1 = min(ho - 1, (y + pad) // stride)
                ox0 = max(0, (x + pad - k + stride) // stride)
                ox1 = min(wo - 1, (x + pad) // stride)
                for oy in range(oy0, oy1 + 1):
                    for ox in range(ox0, ox1 + 1):
                        m = M[oy, ox, c]
                        if val > m:
                            out[oy, ox, c] += val - m
                            M[oy, ox, c] = val
    return 0


__all__ = ["dif_step", "dif_step_forced", "tprod_qk", "tprod_av", "maxpool_delta"]
