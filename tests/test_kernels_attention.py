"""Attention products against the NumPy twin; ACs against counts made from the dense maps."""
import numpy as np
from hypothesis import given, settings, strategies as st

import evrt.kernels as K
from evrt.kernels import dense as D

DENS = st.sampled_from([0.0, 0.01, 0.3, 1.0])
DT = st.sampled_from([np.float64, np.float32])
SEED = st.integers(0, 2**32 - 1)


def spikes(rng, shape, density, dtype, counts=False):
    m = rng.random(shape) < density
    vals = rng.integers(1, 4, shape) if counts else np.ones(shape)
    return np.where(m, vals, 0).astype(dtype)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 20), heads=st.integers(1, 4), d=st.integers(1, 6), dq=DENS, dk=DENS, dv=DENS,
       counts=st.booleans(), dtype=DT, seed=SEED)
def test_ssa_exact(n, heads, d, dq, dk, dv, counts, dtype, seed):
    rng = np.random.default_rng(seed)
    q, k, v = (spikes(rng, (n, heads * d), dd, dtype, counts) for dd in (dq, dk, dv))
    ref, ref_acs = D.ssa(q, k, v, heads)
    out = np.full_like(q, np.nan)
    acs = K.ssa(q, k, v, heads, out)
    np.testing.assert_array_equal(out, ref)          # small integers: exact in both dtypes
    assert acs == ref_acs
    # brute-force count of the non-zero terms of both products
    brute = 0
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        brute += int(np.count_nonzero(q[:, None, sl] * k[None, :, sl]))
        a = q[:, sl] @ k[:, sl].T
        brute += int(np.count_nonzero(a[:, :, None] * v[None, :, sl]))
    assert acs == brute


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), c=st.integers(1, 40), dk=DENS, dv=DENS, counts=st.booleans(), dtype=DT, seed=SEED)
def test_sdsa_kv_exact(n, c, dk, dv, counts, dtype, seed):
    rng = np.random.default_rng(seed)
    k, v = spikes(rng, (n, c), dk, dtype, counts), spikes(rng, (n, c), dv, dtype, counts)
    ref, ref_acs = D.sdsa_kv(k, v)
    out = np.full(c, np.nan, dtype)
    assert K.sdsa_kv(k, v, out) == ref_acs == int(((k != 0) & (v != 0)).sum())
    np.testing.assert_array_equal(out, ref)


@settings(max_examples=50, deadline=None)
@given(L=st.integers(1, 12), hw=st.integers(1, 20), heads=st.integers(1, 3), d=st.integers(1, 5),
       ds=DENS, int_y=st.booleans(), dtype=DT, seed=SEED)
def test_dssa_matches_twin(L, hw, heads, d, ds, int_y, dtype, seed):
    rng = np.random.default_rng(seed)
    c = heads * d
    y = (rng.integers(-3, 4, (L, 2 * c)) if int_y else rng.standard_normal((L, 2 * c))).astype(dtype)
    s = spikes(rng, (hw, c), ds, dtype)
    sa = spikes(rng, (heads, L, hw), ds, dtype)
    eps = np.finfo(dtype).eps

    ref, ref_acs = D.dssa_scores(y, s, heads)
    out = np.full((heads, L, hw), np.nan, dtype)
    acs = K.dssa_scores(y, s, heads, out)
    assert acs == ref_acs == int(np.count_nonzero(s)) * L
    tol = (d + 2) * eps * D.dssa_scores(np.abs(y), s, heads)[0]
    if int_y:
        np.testing.assert_array_equal(out, ref)
    else:
        assert np.all(np.abs(out - ref) <= tol)
    # direct definition, element by element for one head/row
    h0, l0 = heads - 1, L - 1
    direct = [sum(float(y[l0, h0 * 2 * d + j]) * float(s[p, h0 * d + j]) for j in range(d)) for p in range(hw)]
    np.testing.assert_allclose(out[h0, l0], direct, rtol=1e-5, atol=1e-5)

    ref2, ref2_acs = D.dssa_out(y, sa, heads)
    out2 = np.full((hw, c), np.nan, dtype)
    acs2 = K.dssa_out(y, sa, heads, out2)
    assert acs2 == ref2_acs == int(np.count_nonzero(sa)) * d
    tol2 = (L + 2) * eps * D.dssa_out(np.abs(y), sa, heads)[0]
    if int_y:
        np.testing.assert_array_equal(out2, ref2)
    else:
        assert np.all(np.abs(out2 - ref2) <= tol2)
    direct2 = [sum(float(y[l, h0 * 2 * d + d + j]) * float(sa[h0, l, 0]) for l in range(L)) for j in range(d)]
    np.testing.assert_allclose(out2[0, h0 * d:(h0 + 1) * d], direct2, rtol=1e-5, atol=1e-5)


# Bit-exactness for real-valued operands: the kernels' loop layouts (transposed tiles, dense rows that
# add ±0 for zero operands) must give each element exactly "0 + its non-zero terms in ascending order".
def ordered_ssa(q, k, v, heads):
    n, c = q.shape
    d = c // heads
    out = np.zeros_like(q)
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        a = np.zeros((n, n), q.dtype)
        for j in range(d):                       # A[i, m]: j ascending (numpy adds elementwise)
            t = np.outer(q[:, sl][:, j], k[:, sl][:, j])
            a = np.where(t != 0, a + t, a)
        for m in range(n):                       # out[i, c]: m ascending
            t = np.outer(a[:, m], v[m, sl])
            out[:, sl] = np.where(t != 0, out[:, sl] + t, out[:, sl])
    return out


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 20), heads=st.integers(1, 3), d=st.integers(1, 6), dens=DENS, dtype=DT, seed=SEED)
def test_ssa_real_valued_bit_exact(n, heads, d, dens, dtype, seed):
    rng = np.random.default_rng(seed)
    q, k, v = (np.where(rng.random((n, heads * d)) < dens, rng.standard_normal((n, heads * d)), 0).astype(dtype)
               for _ in range(3))
    out = np.full_like(q, np.nan)
    K.ssa(q, k, v, heads, out)
    np.testing.assert_array_equal(out, ordered_ssa(q, k, v, heads))


@settings(max_examples=40, deadline=None)
@given(L=st.integers(1, 40), hw=st.integers(1, 50), heads=st.integers(1, 3), d=st.integers(1, 5),
       ds=DENS, counts=st.booleans(), dtype=DT, seed=SEED)
def test_dssa_real_valued_bit_exact(L, hw, heads, d, ds, counts, dtype, seed):
    """hw up to 50 crosses dssa_scores' 16-pixel tiles; count-valued spikes take the multiply path."""
    rng = np.random.default_rng(seed)
    c = heads * d
    y = rng.standard_normal((L, 2 * c)).astype(dtype)
    s = spikes(rng, (hw, c), ds, dtype, counts)
    sa = spikes(rng, (heads, L, hw), ds, dtype, counts)
    y4 = y.reshape(L, heads, 2, d)
    ref = np.zeros((heads, L, hw), dtype)
    for j in range(d):                           # out[h, l, p]: j ascending
        t = np.einsum("lh,ph->hlp", y4[:, :, 0, j], s.reshape(hw, heads, d)[:, :, j])
        ref = np.where(t != 0, ref + t, ref)
    out = np.full((heads, L, hw), np.nan, dtype)
    assert K.dssa_scores(y, s, heads, out) == int(np.count_nonzero(s)) * L
    np.testing.assert_array_equal(out, ref)
    ref2 = np.zeros((hw, heads, d), dtype)
    for l in range(L):                           # out[p, h*d + j]: l ascending
        t = sa[:, l, :].T[:, :, None] * y4[l, :, 1, :][None]
        ref2 = np.where(t != 0, ref2 + t, ref2)
    out2 = np.full((hw, c), np.nan, dtype)
    assert K.dssa_out(y, sa, heads, out2) == int(np.count_nonzero(sa)) * d
    np.testing.assert_array_equal(out2, ref2.reshape(hw, c))
