"""Neuron steps: bit-exact against the NumPy twin (same float order) over several steps."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import evrt.kernels as K
from evrt.kernels import dense as D

DT = st.sampled_from([np.float64, np.float32])
SEED = st.integers(0, 2**32 - 1)
SHAPES = st.sampled_from([(7,), (3, 5), (4, 3, 6), (2, 3, 4, 5), (37, 11, 13)])   # the last: several tiled rows
PARAM_KIND = st.sampled_from(["channel", "element", "scalar"])
PLIF_K = float(np.float32(1 / (1 + np.exp(-0.5))))   # a k that is not a power of two


def inputs(rng, shape, dtype, steps, vth):
    """Real currents plus values placed so that H hits the threshold exactly (at t=0 with V=0:
    H = X k, so X = vth / k; k = 0.5 makes it exact)."""
    xs = (rng.standard_normal((steps,) + shape) * 1.5).astype(dtype)
    ints = rng.random((steps,) + shape) < 0.2       # integer currents: exact threshold ties later on
    xs[ints] = rng.integers(0, 3, ints.sum())
    hit = rng.random(shape) < 0.15
    hit.flat[0] = True                               # at least one exact tie
    xs[0][hit] = (2 * np.broadcast_to(vth, shape))[hit]
    return xs


def param(rng, shape, kind, dtype, lo=0.3, hi=1.5):
    size = {"channel": shape[-1], "element": int(np.prod(shape)), "scalar": 1}[kind]
    return (rng.uniform(lo, hi, size) * 4).round().astype(dtype) / 4   # quarter steps: ties happen


def check_same(a, b):
    np.testing.assert_array_equal(a, b)
    assert a.dtype == b.dtype


@settings(max_examples=50, deadline=None)
@given(shape=SHAPES, dtype=DT, k=st.sampled_from([0.5, PLIF_K]), pk=PARAM_KIND,
       record=st.booleans(), forced=st.booleans(), seed=SEED)
def test_lif_bit_exact(shape, dtype, k, pk, record, forced, seed):
    rng = np.random.default_rng(seed)
    vth = param(rng, shape, pk, dtype)
    xs = inputs(rng, shape, dtype, 6, np.resize(vth, shape))
    v, vr = np.zeros(shape, dtype), np.zeros(shape, dtype)
    s, h = np.zeros(shape, dtype), np.zeros(shape if record else (0,), dtype)
    ties = 0
    for x in xs:
        f = (rng.random(shape) < 0.3).astype(dtype) if forced else None
        sr, vr, hr = D.lif_step(x, vr, k, vth, f)
        n = K.lif_step_forced(x, v, k, vth, f, s, h) if forced else K.lif_step(x, v, k, vth, s, h)
        check_same(s, sr); check_same(v, vr)
        assert n == int(sr.sum())
        if record:
            check_same(h, hr)
        ties += int((hr == np.resize(vth, shape)).sum())
    if not forced and k == 0.5:
        assert ties > 0                          # the data really exercises H == vth


def test_lif_fires_at_threshold_and_order_matters():
    # H == vth fires (>=), and the reference order V + (X - V) k differs from (V + X) / 2 on these values
    x = np.array([2.0, 1.9999999], np.float32)
    v = np.zeros(2, np.float32); s = np.zeros(2, np.float32); h = np.zeros(2, np.float32)
    assert K.lif_step(x, v, 0.5, np.ones(1, np.float32), s, h) == 1
    np.testing.assert_array_equal(s, [1, 0])
    rng = np.random.default_rng(3)
    x = rng.standard_normal(100000).astype(np.float32)
    v0 = rng.standard_normal(100000).astype(np.float32)
    v = v0.copy(); h = np.zeros_like(v); s = np.zeros_like(v)
    K.lif_step(x, v, 0.5, np.full(1, 10, np.float32), s, h)
    np.testing.assert_array_equal(h, v0 + (x - v0) * np.float32(0.5))
    assert np.any(h != (v0 + x) / np.float32(2))       # the wrong order would be caught
    v = v0.copy()
    K.lif_step(x, v, PLIF_K, np.full(1, 10, np.float32), s, h)
    kf = np.float32(PLIF_K)
    np.testing.assert_array_equal(h, v0 + (x - v0) * kf)
    assert np.any(h != v0 * (np.float32(1) - kf) + x * kf)
    assert np.any(h != (v0.astype(np.float64) + (x - v0).astype(np.float64) * PLIF_K).astype(np.float32))


@settings(max_examples=40, deadline=None)
@given(shape=SHAPES, dtype=DT, pk=PARAM_KIND, record=st.booleans(),
       forced=st.booleans(), seed=SEED)
def test_if_bit_exact(shape, dtype, pk, record, forced, seed):
    rng = np.random.default_rng(seed)
    vth = param(rng, shape, pk, dtype)
    xs = inputs(rng, shape, dtype, 6, np.resize(vth, shape))
    v, vr = np.zeros(shape, dtype), np.zeros(shape, dtype)
    s, h = np.zeros(shape, dtype), np.zeros(shape if record else (0,), dtype)
    for x in xs:
        f = (rng.random(shape) < 0.3).astype(dtype) if forced else None
        sr, vr, hr = D.if_step(x, vr, vth, f)
        n = K.if_step_forced(x, v, vth, f, s, h) if forced else K.if_step(x, v, vth, s, h)
        check_same(s, sr); check_same(v, vr)
        assert n == int(sr.sum())
        if record:
            check_same(h, hr)


def test_if_soft_reset_keeps_remainder():
    x = np.array([1.75], np.float64); v = np.zeros(1); s = np.zeros(1); h = np.zeros(0)
    assert K.if_step(x, v, np.array([1.0]), s, h) == 1
    assert v[0] == 0.75


@settings(max_examples=50, deadline=None)
@given(shape=SHAPES, dtype=DT, k=st.sampled_from([0.5, PLIF_K]), pk=PARAM_KIND,
       record=st.booleans(), forced=st.booleans(), seed=SEED)
def test_table_bit_exact(shape, dtype, k, pk, record, forced, seed):
    rng = np.random.default_rng(seed)
    v, vr = np.zeros(shape, dtype), np.zeros(shape, dtype)
    s, h = np.zeros(shape, dtype), np.zeros(shape if record else (0,), dtype)
    for t in range(6):
        r = param(rng, shape, pk, dtype, 0.0, 1.0)
        c = param(rng, shape, pk, dtype, -0.5, 0.5)
        theta = param(rng, shape, pk, dtype, -1.5, 1.5)
        sign = np.where(rng.random(r.size) < 0.3, -1, 1).astype(dtype)
        x = np.where(rng.random(shape) < 0.5, rng.integers(0, 4, shape), rng.standard_normal(shape)).astype(dtype)
        f = (rng.random(shape) < 0.3).astype(dtype) if forced else None
        sr, vr, hr = D.table_step(x, vr, r, c, theta, sign, k, f)
        if forced:
            n = K.table_step_forced(x, v, r, c, theta, sign, k, f, s, h)
        else:
            n = K.table_step(x, v, r, c, theta, sign, k, s, h)
        check_same(s, sr); check_same(v, vr)
        assert n == int(sr.sum())
        if record:
            check_same(h, hr)


def test_table_negative_sign_fires_below():
    x = np.array([0.0, 0.0, 0.0]); v = np.zeros(3); s = np.zeros(3); h = np.zeros(3)
    r = np.ones(3); c = np.array([-1.0, -2.0, -0.5]); theta = np.full(3, -1.0); sign = np.array([-1.0, -1.0, 1.0])
    assert K.table_step(x, v, r, c, theta, sign, 0.5, s, h) == 3     # -1 <= -1, -2 <= -1, -0.5 >= -1
    np.testing.assert_array_equal(s, [1, 1, 1])
    np.testing.assert_array_equal(v, [0, 0, 0])
    c = np.array([-0.5, -0.5, -2.0])
    assert K.table_step(x, v, r, c, theta, sign, 0.5, s, h) == 0
    np.testing.assert_array_equal(v, [-0.5, -0.5, -2.0])


def test_float32_state_rounds_python_k_once():
    # a Python float k must be rounded to float32 first, not promote the arithmetic to float64
    rng = np.random.default_rng(5)
    x = rng.standard_normal(50000).astype(np.float32)
    v0 = rng.standard_normal(50000).astype(np.float32)
    k = 1 / (1 + np.exp(-0.3))           # float64
    v = v0.copy(); s = np.zeros_like(v); h = np.zeros_like(v)
    K.lif_step(x, v, k, np.full(1, 100, np.float32), s, h)
    np.testing.assert_array_equal(h, v0 + (x - v0) * np.float32(k))


def test_parameter_size_must_divide():
    with pytest.raises(ValueError):
        K.lif_step(np.zeros(6), np.zeros(6), 0.5, np.ones(4), np.zeros(6), np.zeros(0))
