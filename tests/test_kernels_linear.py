"""linear_scatter against the NumPy twin and independent counts."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import evrt.kernels as K
from evrt.kernels import dense as D


def make_input(rng, shape, density, kind, dtype):
    mask = rng.random(shape) < density
    vals = {"spike": np.ones(shape), "count": rng.integers(1, 4, shape).astype(float),
            "real": rng.standard_normal(shape)}[kind]
    return np.where(mask, vals, 0.0).astype(dtype)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 40), cin=st.integers(1, 33), cout=st.integers(1, 17),
       density=st.sampled_from([0.0, 0.01, 0.3, 1.0]), kind=st.sampled_from(["spike", "count", "real"]),
       dtype=st.sampled_from([np.float64, np.float32]), int_w=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_linear_matches_twin(n, cin, cout, density, kind, dtype, int_w, seed):
    rng = np.random.default_rng(seed)
    x = make_input(rng, (n, cin), density, kind, dtype)
    if int_w:
        w = rng.integers(-3, 4, (cin, cout)).astype(dtype); b = rng.integers(-3, 4, cout).astype(dtype)
    else:
        w = rng.standard_normal((cin, cout)).astype(dtype); b = rng.standard_normal(cout).astype(dtype)
    ref = D.linear(x, w, b)
    tol = (cin + 3) * np.finfo(dtype).eps * D.linear(np.abs(x), np.abs(w), np.abs(b)) + np.finfo(dtype).tiny
    # independent count: each non-zero x[i, c] reaches the Cout outputs of token i
    want_pairs = int(np.count_nonzero(x)) * cout
    want_w = float(sum(float(v) for v in x.ravel() if v != 0)) * cout
    assert D.linear_counts(x, cout) == (want_pairs, pytest.approx(want_w))
    for thr in (2.0, -1.0, K.DENSE_ABOVE_LINEAR):
        out = np.full((n, cout), np.nan, dtype)
        nnz, pairs, weighted = K.linear_scatter(x, w, b, out, dense_above=thr)
        assert nnz == np.count_nonzero(x)
        assert pairs == want_pairs
        assert weighted == pytest.approx(want_w, rel=1e-12, abs=1e-9)
        if kind != "real":
            assert weighted == want_w
        if int_w and kind != "real":
            np.testing.assert_array_equal(out, ref)
        else:
            assert np.all(np.abs(out - ref) <= tol)


def test_linear_spike_count_by_hand():
    x = np.array([[0, 1, 0], [2, 0, 1]], np.float32)
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = np.zeros((2, 4), np.float32)
    assert K.linear_scatter(x, w, np.zeros(4, np.float32), out) == K.Counts(nnz=3, pairs=12, weighted=16.0)
    np.testing.assert_array_equal(out, [[4, 5, 6, 7], [8, 11, 14, 17]])


def test_linear_rejects_shape_mismatch():
    with pytest.raises(ValueError):
        K.linear_scatter(np.zeros((2, 3)), np.zeros((4, 5)), np.zeros(5), np.zeros((2, 5)))


def test_linear_counts_exact_on_mixed_rows():
    """Rows of spikes summed as integers must give the ordered float64 sum exactly, also after rows
    of real values (whose running sum is not an integer)."""
    rng = np.random.default_rng(5)
    rows = [np.where(rng.random(16) < 0.4, 1.0, 0.0), rng.standard_normal(16) * 1e-3,
            np.where(rng.random(16) < 0.4, 1.0, 0.0), np.zeros(16), rng.integers(0, 3, 16).astype(float)]
    for order in ([0, 1, 2], [1, 0, 2, 3], [2, 4, 0, 1, 2], [3, 0]):
        x = np.stack([rows[i] for i in order]).astype(np.float32)
        want = 0.0
        for v in x.ravel():
            want += float(v)
        nnz, pairs, weighted = K.linear_counts(x, 3)
        assert (nnz, pairs, weighted) == (np.count_nonzero(x), 3 * np.count_nonzero(x), want * 3)


def test_linear_into_non_contiguous_out():
    rng = np.random.default_rng(6)
    x = make_input(rng, (9, 12), 0.3, "spike", np.float32)
    w = rng.integers(-3, 4, (12, 5)).astype(np.float32)
    b = rng.integers(-3, 4, 5).astype(np.float32)
    for thr in (2.0, -1.0):
        big = np.full((9, 10), np.nan, np.float32)
        K.linear_scatter(x, w, b, big[:, ::2], dense_above=thr)
        np.testing.assert_array_equal(big[:, ::2], D.linear(x, w, b))
        assert np.isnan(big[:, 1::2]).all()
