"""maxpool2d (exact) and mean_tokens against NumPy."""
import numpy as np
from hypothesis import given, settings, strategies as st

import evrt.kernels as K
from evrt.kernels import dense as D


@settings(max_examples=50, deadline=None)
@given(k=st.integers(1, 4), stride=st.integers(1, 3), data=st.data(), c=st.integers(1, 6),
       kind=st.sampled_from(["spike", "real", "negative"]), density=st.sampled_from([0.0, 0.01, 0.3, 1.0]),
       dtype=st.sampled_from([np.float64, np.float32]), seed=st.integers(0, 2**32 - 1))
def test_maxpool_matches_twin_exactly(k, stride, data, c, kind, density, dtype, seed):
    pad = data.draw(st.integers(0, k // 2))
    h = data.draw(st.integers(max(1, k - 2 * pad), 12))
    w = data.draw(st.integers(max(1, k - 2 * pad), 12))
    rng = np.random.default_rng(seed)
    if kind == "spike":
        x = (rng.random((h, w, c)) < density).astype(dtype)
    elif kind == "negative":          # all values < 0: zero padding would win, -inf padding must not
        x = (-1 - rng.random((h, w, c))).astype(dtype)
    else:
        x = rng.standard_normal((h, w, c)).astype(dtype)
    ref = D.maxpool2d(x, k, stride, pad)
    out = np.full(ref.shape, np.nan, dtype)
    K.maxpool2d(x, k, stride, pad, out)
    np.testing.assert_array_equal(out, ref)
    if kind == "negative":
        assert np.all(out < 0)


def test_maxpool_halves_128():
    x = np.zeros((128, 128, 2), np.float32); x[127, 127, 1] = 1
    out = np.zeros((64, 64, 2), np.float32)
    K.maxpool2d(x, 3, 2, 1, out)
    assert out.sum() == 1 and out[63, 63, 1] == 1


def test_mean_tokens():
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    out = np.zeros(4)
    K.mean_tokens(x, out)
    np.testing.assert_allclose(out, x.reshape(6, 4).mean(0))
