"""The input op hands a busy step's events on as their count frame (evrt/ops/input.py FRAME_ABOVE): the first
conv then runs its dense path; the ACs are the same as from the event list, and the output the same sums
in another order."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evrt import kernels as K
from evrt.engine import Session, _Context
from evrt.events import make_events
from evrt.ops import input as I

ROOT = Path(__file__).resolve().parents[1]


def _events(n, w, h, seed):
    rng = np.random.default_rng(seed)
    return make_events(np.sort(rng.integers(0, 10_000, n)), rng.integers(0, w, n), rng.integers(0, h, n),
                       rng.integers(0, 2, n))


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_busy_steps_become_count_frames_with_the_same_acs(factor):
    sess = Session(ROOT / "models" / "sdt-synth-gesture" / "model.evrt", threads=1, stages=1)
    inp, conv = sess.impls[0], sess.impls[1]
    h, w, c = inp.out_shape
    n = int(factor * I.FRAME_ABOVE * h * w * c)
    ev = _events(n, w, h, 1)
    x = inp.run([ev], _Context())
    assert isinstance(x, np.ndarray) == (factor > 1)         # listed below the threshold, framed above
    listed = I.EventBatch(ev["y"].astype(np.int64), ev["x"].astype(np.int64), ev["on"].astype(np.int64))
    if isinstance(x, np.ndarray):
        want = np.zeros((h, w, c), np.float32)
        np.add.at(want, (listed.ys, listed.xs, listed.cs), 1)
        assert np.array_equal(x, want)                        # exact counts per (y, x, polarity)
    out = conv.run([x], _Context()).copy()
    acs, nonzero = conv.stats.acs, conv.stats.in_nonzero
    ref = np.zeros_like(out)
    c_ev = K.conv2d_events(listed.ys, listed.xs, listed.cs, conv.w, conv.b, conv.s, conv.p, ref)
    assert acs == c_ev.pairs                                   # one AC per (event, output) pair either way
    assert nonzero == c_ev.nnz == n                            # the input rate counts events either way
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_two_channel_convs_go_dense_earlier():
    assert K.default_dense_above(3, 3, 2, 32, 1) == K.conv.DENSE_ABOVE_FEW_IN < K.DENSE_ABOVE_CONV
    assert K.default_dense_above(3, 3, 32, 64, 1) == K.DENSE_ABOVE_CONV
    assert K.default_dense_above(1, 1, 2, 32, 1) == K.DENSE_ABOVE_1X1
