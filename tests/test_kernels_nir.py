"""The NIR kernels against their NumPy twins, for every flag combination and both dtypes."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from evrt.kernels.nir import nir_neuron_step, nir_neuron_step_np, sumpool2d, sumpool2d_np


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cuba,fire,reset,floor", list(itertools.product((0, 1), (0, 1, 2, 3), (0, 1, 2, 3), (False, True))))
def test_neuron_step_matches_twin(dtype, cuba, fire, reset, floor):
    rng = np.random.default_rng(cuba * 100 + fire * 10 + reset + floor * 1000)
    n = 257
    p = [rng.uniform(0.5, 1.0, n), rng.uniform(0.5, 1.5, n), rng.uniform(-0.05, 0.05, n),
         rng.uniform(0.3, 0.9, n), rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.0, n),
         rng.uniform(-0.2, 0.2, n), -rng.uniform(0.5, 1.0, n)]
    p = [np.ascontiguousarray(a, dtype) for a in p]
    v, i, s = np.zeros(n, dtype), np.zeros(n, dtype), np.zeros(n, dtype)
    v_np, i_np, s_np = v.copy(), i.copy(), s.copy()
    fired = 0
    for t in range(12):
        x = (rng.random(n) < 0.4).astype(dtype) * rng.integers(1, 4, n).astype(dtype)
        h = np.zeros(n, dtype)
        tot = nir_neuron_step(x, v, i, *p, cuba, fire, reset, floor, np.zeros(0, dtype), s, h)
        s_ref, h_ref, v_np, i_np, tot_ref = nir_neuron_step_np(x, v_np, i_np, *p, cuba, fire, reset, floor,
                                                               s_prev=s_np)
        s_np = s_ref
        np.testing.assert_array_equal(h, h_ref)
        np.testing.assert_array_equal(s, s_ref)
        np.testing.assert_array_equal(v, v_np)
        np.testing.assert_array_equal(i, i_np)
        assert tot == pytest.approx(tot_ref, rel=1e-6)
        fired += tot if fire else 0
    if fire:
        assert fired > 0


def test_neuron_step_forced_follows_given_spikes():
    n = 16
    one, zero = np.ones(n), np.zeros(n)
    v, i, s, h = zero.copy(), zero.copy(), zero.copy(), np.zeros(n)
    forced = np.zeros(n)
    forced[::2] = 1
    x = np.full(n, 0.5)          # below threshold: the neuron alone would not fire
    nir_neuron_step(x, v, i, one, one, zero, zero, zero, one, zero, zero, 0, 1, 2, False, forced, s, h)
    np.testing.assert_array_equal(s, forced)
    np.testing.assert_array_equal(v, np.where(forced > 0, -0.5, 0.5))   # subtract reset followed the forced spikes


def test_multi_spike_counts_and_floor():
    n = 4
    one, zero = np.ones(n), np.zeros(n)
    v, i, s, h = zero.copy(), zero.copy(), zero.copy(), np.zeros(n)
    x = np.array([3.7, 0.99, -5.0, 1.0])
    tot = nir_neuron_step(x, v, i, one, one, zero, zero, zero, one, zero, -one, 0, 3, 2, True, np.zeros(0), s, h)
    np.testing.assert_array_equal(s, [3, 0, 0, 1])
    np.testing.assert_allclose(v, [0.7, 0.99, -1.0, 0.0])
    assert tot == 2          # neurons that fired; the 3 spikes of the first one travel as the count 3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k,s,p", [((2, 2), (2, 2), (0, 0)), ((3, 3), (1, 1), (1, 1)), ((2, 3), (1, 2), (1, 0))])
def test_sumpool_matches_twin(dtype, k, s, p):
    rng = np.random.default_rng(3)
    x = ((rng.random((9, 11, 5)) < 0.3) * rng.integers(1, 3, (9, 11, 5))).astype(dtype)
    ref, pairs_ref, w_ref = sumpool2d_np(x, *k, *s, *p)
    out = np.full(ref.shape, 7.0, dtype)
    c = sumpool2d(x, *k, *s, *p, out)
    np.testing.assert_array_equal(out, ref)
    assert (c.nnz, c.pairs, c.weighted) == (int(np.count_nonzero(x)), pairs_ref, w_ref)
