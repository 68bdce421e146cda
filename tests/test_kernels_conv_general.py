"""conv2d_general / conv2d_general_events (per-axis stride/pad, dilation) against the NumPy twin,
an index-arithmetic count, and torch's conv2d where the case is undilated-square (the fast kernels)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import evrt.kernels as K
from evrt.kernels import dense as D

from test_kernels_conv import make_input


def brute_pairs(x, kh, kw, stride, pad, dil, ho, wo, cpg):
    """Σ over non-zero inputs (y, x) of #(ky, oy): oy*s - p + ky*d == y, in bounds, times #(kx, ox), x cpg;
    and the same sum weighted by the input value."""
    ys, xs, cs = np.nonzero(x)

    def taps(i, k, s, p, d, n_out):
        t = i[:, None] + p - np.arange(k)[None, :] * d
        return ((t >= 0) & (t % s == 0) & (t // s < n_out)).sum(1)

    reach = taps(ys, kh, stride[0], pad[0], dil[0], ho) * taps(xs, kw, stride[1], pad[1], dil[1], wo) * cpg
    return int(reach.sum()), float((x[ys, xs, cs].astype(np.float64) * reach).sum())


@st.composite
def case(draw):
    kh, kw = draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([1, 3, 4]))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pad = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    dil = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    h = draw(st.integers(max(1, dil[0] * (kh - 1) + 1 - 2 * pad[0]), 12))
    w = draw(st.integers(max(1, dil[1] * (kw - 1) + 1 - 2 * pad[1]), 12))
    groups = draw(st.sampled_from([1, 2, 3]))
    cig, cpg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return dict(kh=kh, kw=kw, stride=stride, pad=pad, dil=dil, h=h, w=w, groups=groups, cig=cig, cpg=cpg,
                density=draw(st.sampled_from([0.0, 0.05, 0.4, 1.0])),
                kind=draw(st.sampled_from(["spike", "count", "real"])),
                dtype=draw(st.sampled_from([np.float64, np.float32])), seed=draw(st.integers(0, 2**32 - 1)),
                int_weights=draw(st.booleans()))


@settings(max_examples=80, deadline=None)
@given(case())
def test_conv2d_general_matches_twin_and_counts(c):
    rng = np.random.default_rng(c["seed"])
    dt = c["dtype"]
    x = make_input(rng, (c["h"], c["w"], c["cig"] * c["groups"]), c["density"], c["kind"], dt)
    wshape = (c["kh"], c["kw"], c["cig"], c["cpg"] * c["groups"])
    if c["int_weights"]:
        w = rng.integers(-3, 4, wshape).astype(dt); b = rng.integers(-3, 4, wshape[3]).astype(dt)
    else:
        w = rng.standard_normal(wshape).astype(dt); b = rng.standard_normal(wshape[3]).astype(dt)
    s, p, d, g = c["stride"], c["pad"], c["dil"], c["groups"]
    ref = D.conv2d_general(x, w, b, s, p, d, g)
    ho = (c["h"] + 2 * p[0] - d[0] * (c["kh"] - 1) - 1) // s[0] + 1
    wo = (c["w"] + 2 * p[1] - d[1] * (c["kw"] - 1) - 1) // s[1] + 1
    assert ref.shape == (ho, wo, wshape[3])
    out = np.full(ref.shape, np.nan, dt)                   # must be fully overwritten
    nnz, pairs, weighted = K.conv2d_general(x, w, b, s, p, d, g, out)
    assert nnz == int(np.count_nonzero(x))
    want_pairs, want_w = brute_pairs(x, c["kh"], c["kw"], s, p, d, ho, wo, c["cpg"])
    assert (want_pairs, want_w) == pytest.approx(D.conv2d_general_counts(x, c["kh"], c["kw"], s, p, d, g, wshape[3]))
    assert pairs == want_pairs
    assert weighted == pytest.approx(want_w, rel=1e-9, abs=1e-9)
    if c["kind"] == "spike":
        assert weighted == pairs
    if c["int_weights"] and c["kind"] != "real":
        np.testing.assert_array_equal(out, ref)
    else:
        mag = D.conv2d_general(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64),
                               np.abs(b).astype(np.float64), s, p, d, g)
        tol = (c["kh"] * c["kw"] * c["cig"] + 3) * np.finfo(dt).eps * mag + np.finfo(dt).tiny
        assert np.all(np.abs(out - ref) <= tol)


@pytest.mark.parametrize("stride,pad,dil", [((1, 1), (0, 0), (1, 1)), ((2, 1), (1, 3), (1, 2)),
                                            ((1, 2), (2, 0), (3, 1)), ((3, 3), (2, 2), (2, 2))])
@pytest.mark.parametrize("seed", [0, 1])
def test_conv2d_general_events_match_twin(stride, pad, dil, seed):
    rng = np.random.default_rng(seed)
    h, wd, cin, cout = 9, 11, 2, 4
    w = rng.integers(-3, 4, (3, 3, cin, cout)).astype(np.float32)
    b = rng.integers(-3, 4, cout).astype(np.float32)
    n = 40
    ys, xs, cs = rng.integers(0, h, n), rng.integers(0, wd, n), rng.integers(0, cin, n)
    ref, ref_pairs = D.conv2d_general_events(ys, xs, cs, w, b, stride, pad, dil, h, wd)
    out = np.full(ref.shape, np.nan, np.float32)
    nnz, pairs, weighted = K.conv2d_general_events(ys.astype(np.uint16), xs.astype(np.uint16), cs.astype(np.uint8),
                                                   w, b, stride, pad, dil, out)
    assert nnz == n and pairs == weighted == ref_pairs
    np.testing.assert_array_equal(out, ref)
    # the same events as a count frame through the frame kernel: same outputs, same pairs
    frame = np.zeros((h, wd, cin), np.float32)
    np.add.at(frame, (ys, xs, cs), 1)
    out2 = np.empty_like(out)
    assert K.conv2d_general(frame, w, b, stride, pad, dil, 1, out2).weighted == pairs
    np.testing.assert_array_equal(out2, out)


def test_conv2d_general_equals_fast_kernel_when_square_undilated():
    rng = np.random.default_rng(3)
    x = (rng.random((8, 10, 4)) < 0.3).astype(np.float32)
    w = rng.standard_normal((3, 3, 2, 6)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    o1, o2 = np.empty((4, 5, 6), np.float32), np.empty((4, 5, 6), np.float32)
    c1 = K.conv2d_general(x, w, b, (2, 2), (1, 1), (1, 1), 2, o1)
    c2 = K.conv2d_scatter(x, w, b, 2, 1, 2, o2, dense_above=2.0)
    assert c1 == c2
    np.testing.assert_allclose(o1, o2, rtol=1e-5, atol=1e-5)


def test_conv2d_general_refuses_bad_geometry():
    with pytest.raises(ValueError, match="channels"):
        K.conv2d_general(np.zeros((3, 3, 3)), np.zeros((1, 1, 2, 2)), np.zeros(2), (1, 1), (0, 0), (1, 1), 1,
                         np.zeros((3, 3, 2)))
    with pytest.raises(ValueError, match="dilation"):
        K.conv2d_general(np.zeros((3, 3, 2)), np.zeros((1, 1, 2, 2)), np.zeros(2), (1, 1), (0, 0), (0, 1), 1,
                         np.zeros((3, 3, 2)))
