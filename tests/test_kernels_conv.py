"""conv2d_scatter / conv2d_events against the NumPy twin and independent counts."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import evrt.kernels as K
from evrt.kernels import dense as D

DENSITIES = [0.0, 0.01, 0.3, 1.0]
SCATTER, DENSE, AUTO = 2.0, -1.0, None


def make_input(rng, shape, density, kind, dtype):
    """spike (0/1), count (small integers) or real (normal) values at the given density."""
    mask = rng.random(shape) < density
    if kind == "spike":
        vals = np.ones(shape)
    elif kind == "count":
        vals = rng.integers(1, 4, shape).astype(float)
    else:
        vals = rng.standard_normal(shape)
    return np.where(mask, vals, 0.0).astype(dtype)


def bound(x, w, b, stride, pad, groups, dtype):
    """Rounding-error bound for a sum of n products: n * eps * Σ|terms| (plus a few ulps)."""
    mag = D.conv2d(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64), np.abs(b).astype(np.float64),
                   stride, pad, groups)
    n = w.shape[0] * w.shape[1] * w.shape[2] + 1
    return (n + 2) * np.finfo(dtype).eps * mag + np.finfo(dtype).tiny


def brute_counts(x, kh, kw, stride, pad, groups, cout, ho, wo):
    """Σ over non-zero inputs of (#valid output rows) x (#valid output cols) x Cout/groups."""
    ys, xs, cs = np.nonzero(x)
    oy = np.arange(ho) * stride - pad            # first input row each output row sees
    ox = np.arange(wo) * stride - pad
    ny = ((ys[:, None] >= oy[None]) & (ys[:, None] < oy[None] + kh)).sum(1)
    nx = ((xs[:, None] >= ox[None]) & (xs[:, None] < ox[None] + kw)).sum(1)
    reach = ny * nx * (cout // groups)
    return int(reach.sum()), float((x[ys, xs, cs].astype(np.float64) * reach).sum())


@st.composite
def conv_case(draw):
    kh, kw = draw(st.sampled_from([1, 2, 3, 5])), draw(st.sampled_from([1, 3]))
    stride, pad = draw(st.sampled_from([1, 2])), draw(st.sampled_from([0, 1, 2]))
    h = draw(st.integers(max(1, kh - 2 * pad), 11))
    w = draw(st.integers(max(1, kw - 2 * pad), 11))
    gkind = draw(st.sampled_from(["one", "grouped", "depthwise"]))
    if gkind == "depthwise":
        groups = draw(st.integers(1, 9)); cig, cpg = 1, 1
    elif gkind == "grouped":
        groups = draw(st.integers(2, 3)); cig, cpg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    else:
        groups = 1; cig, cpg = draw(st.integers(1, 5)), draw(st.integers(1, 7))
    return dict(kh=kh, kw=kw, stride=stride, pad=pad, h=h, w=w, groups=groups, cig=cig, cpg=cpg,
                density=draw(st.sampled_from(DENSITIES)), kind=draw(st.sampled_from(["spike", "count", "real"])),
                dtype=draw(st.sampled_from([np.float64, np.float32])), seed=draw(st.integers(0, 2**32 - 1)),
                int_weights=draw(st.booleans()))


def build(c):
    rng = np.random.default_rng(c["seed"])
    dt = c["dtype"]
    x = make_input(rng, (c["h"], c["w"], c["cig"] * c["groups"]), c["density"], c["kind"], dt)
    wshape = (c["kh"], c["kw"], c["cig"], c["cpg"] * c["groups"])
    if c["int_weights"]:
        w = rng.integers(-3, 4, wshape).astype(dt); b = rng.integers(-3, 4, wshape[3]).astype(dt)
    else:
        w = rng.standard_normal(wshape).astype(dt); b = rng.standard_normal(wshape[3]).astype(dt)
    ho = (c["h"] + 2 * c["pad"] - c["kh"]) // c["stride"] + 1
    wo = (c["w"] + 2 * c["pad"] - c["kw"]) // c["stride"] + 1
    return x, w, b, (ho, wo, wshape[3])


@settings(max_examples=60, deadline=None)
@given(conv_case())
def test_conv2d_matches_twin_on_every_path(c):
    x, w, b, oshape = build(c)
    s, p, g = c["stride"], c["pad"], c["groups"]
    ref = D.conv2d(x, w, b, s, p, g)
    assert ref.shape == oshape
    tol = bound(x, w, b, s, p, g, c["dtype"])
    exact = c["int_weights"] and c["kind"] != "real"
    want_pairs, want_w = D.conv2d_counts(x, c["kh"], c["kw"], s, p, g, oshape[2])
    brute = brute_counts(x, c["kh"], c["kw"], s, p, g, oshape[2], oshape[0], oshape[1])
    assert brute[0] == want_pairs
    outs = []
    for thr in (SCATTER, DENSE, AUTO):
        out = np.full(oshape, np.nan, c["dtype"])          # must be fully overwritten
        _, pairs, weighted = K.conv2d_scatter(x, w, b, s, p, g, out, dense_above=thr)
        assert pairs == want_pairs                          # integer equality, whatever the path
        if c["kind"] == "real":
            assert weighted == pytest.approx(want_w, rel=1e-9, abs=1e-9)
        else:
            assert weighted == want_w == pairs if c["kind"] == "spike" else weighted == want_w
        if exact:
            np.testing.assert_array_equal(out, ref)
        else:
            assert np.all(np.abs(out - ref) <= tol), np.abs(out - ref).max()
        outs.append(out)
    if exact:
        np.testing.assert_array_equal(outs[0], outs[1])


def test_conv_counts_known_geometry():
    # one spike in the corner of a 4x4 map, 3x3 kernel pad 1 stride 1 reaches 2x2 outputs x Cout
    x = np.zeros((4, 4, 1)); x[0, 0, 0] = 1
    w = np.ones((3, 3, 1, 5)); out = np.zeros((4, 4, 5))
    assert K.conv2d_scatter(x, w, np.zeros(5), 1, 1, 1, out) == K.Counts(nnz=1, pairs=20, weighted=20.0)
    # a count of 3 in the centre reaches 9 outputs: 45 pairs, weighted 135
    x[0, 0, 0] = 0; x[2, 2, 0] = 3
    assert K.conv2d_scatter(x, w, np.zeros(5), 1, 1, 1, out) == K.Counts(nnz=1, pairs=45, weighted=135.0)
    np.testing.assert_array_equal(out[1:4, 1:4], 3.0)
    assert out[0].sum() == 0


def test_pointwise_conv_is_linear_on_view():
    rng = np.random.default_rng(1)
    x = make_input(rng, (6, 5, 8), 0.2, "spike", np.float64)
    w = rng.standard_normal((1, 1, 8, 12)); b = rng.standard_normal(12)
    out_c = np.zeros((6, 5, 12)); out_l = np.zeros((30, 12))
    pc = K.conv2d_scatter(x, w, b, 1, 0, 1, out_c, dense_above=SCATTER)
    pl = K.linear_scatter(x.reshape(30, 8), w[0, 0], b, out_l, dense_above=SCATTER)
    assert pc == pl
    np.testing.assert_array_equal(out_c.reshape(30, 12), out_l)


@settings(max_examples=40, deadline=None)
@given(k=st.sampled_from([1, 2, 3, 5]), stride=st.sampled_from([1, 2]), pad=st.sampled_from([0, 1, 2]),
       n=st.sampled_from([0, 1, 7, 300]), dtype=st.sampled_from([np.float64, np.float32]),
       seed=st.integers(0, 2**32 - 1))
def test_conv2d_events_matches_frame_conv(k, stride, pad, n, dtype, seed):
    rng = np.random.default_rng(seed)
    h, wd, cin, cout = 9, 8, 2, 5
    ys = rng.integers(0, h, n).astype(np.uint16)
    xs = rng.integers(0, wd, n).astype(np.uint16)
    cs = rng.integers(0, cin, n).astype(np.uint8)
    if n > 1:                                  # force duplicates
        ys[-1], xs[-1], cs[-1] = ys[0], xs[0], cs[0]
    w = rng.integers(-3, 4, (k, k, cin, cout)).astype(dtype)    # integer weights: exact sums
    b = rng.integers(-3, 4, cout).astype(dtype)
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    ref, ref_pairs = D.conv2d_events(ys, xs, cs, w, b, stride, pad, h, wd)
    out = np.full((ho, wo, cout), np.nan, dtype)
    nnz, pairs, weighted = K.conv2d_events(ys, xs, cs, w, b, stride, pad, out)
    assert nnz == n and weighted == pairs
    np.testing.assert_array_equal(out, ref)
    assert pairs == ref_pairs
    # the same frame through conv2d_scatter: its `weighted` count equals the per-event pairs
    frame = np.zeros((h, wd, cin), dtype)
    np.add.at(frame, (ys.astype(int), xs.astype(int), cs.astype(int)), 1)
    out2 = np.zeros_like(out)
    weighted = K.conv2d_scatter(frame, w, b, stride, pad, 1, out2).weighted
    assert weighted == pairs
    np.testing.assert_array_equal(out2, out)


def test_conv_rejects_bad_groups():
    with pytest.raises(ValueError):
        K.conv2d_scatter(np.zeros((3, 3, 4)), np.zeros((3, 3, 3, 4)), np.zeros(4), 1, 1, 1, np.zeros((3, 3, 4)))


@pytest.mark.parametrize("kh,stride,pad,groups,cig,cpg,block_bytes", [
    (3, 1, 1, 1, 40, 24, None),          # one block; 8-row sums (~20 non-zero channels per pixel)
    (3, 1, 1, 1, 40, 24, 8 * 24 * 8),    # channel segments of 8 (nsub = 5), one tap per block
    (3, 2, 1, 1, 24, 16, 3 * 24 * 16 * 8),   # whole channels, 3 taps per block, stride 2
    (3, 1, 1, 3, 16, 8, None),           # grouped
    (2, 2, 0, 4, 12, 8, 2 * 4 * 8 * 8),  # grouped, segments of 2 channels x 4 groups, stride = kernel
    (1, 1, 0, 1, 64, 20, 16 * 20 * 8),   # 1x1, segments of 16
])
@pytest.mark.parametrize("kind", ["spike", "real"])
def test_scatter_blocks_and_row_sums(kh, stride, pad, groups, cig, cpg, block_bytes, kind):
    """Layers wide enough for the 8-row sums and the L2 blocks (taps x channel segments), forced with a
    small block_bytes: same result as the twin (exact for integer weights and spikes)."""
    rng = np.random.default_rng(kh * 100 + cig)
    dt = np.float64
    x = make_input(rng, (7, 6, cig * groups), 0.5, kind, dt)
    w = rng.integers(-3, 4, (kh, kh, cig, cpg * groups)).astype(dt)
    b = rng.integers(-3, 4, cpg * groups).astype(dt)
    ref = D.conv2d(x, w, b, stride, pad, groups)
    out = np.full(ref.shape, np.nan, dt)
    kw = {} if block_bytes is None else dict(block_bytes=block_bytes)
    K.conv2d_scatter_only(x, w, b, stride, pad, groups, out, **kw)
    if kind == "spike":
        np.testing.assert_array_equal(out, ref)
    else:
        assert np.all(np.abs(out - ref) <= bound(x, w, b, stride, pad, groups, dt))


def test_scatter_and_dense_into_non_contiguous_out():
    rng = np.random.default_rng(3)
    x = make_input(rng, (5, 6, 8), 0.4, "spike", np.float32)
    w = rng.integers(-3, 4, (3, 3, 8, 10)).astype(np.float32)
    b = rng.integers(-3, 4, 10).astype(np.float32)
    ref = D.conv2d(x, w, b, 1, 1, 1)
    for thr in (SCATTER, DENSE):
        big = np.full((5, 6, 20), np.nan, np.float32)
        K.conv2d_scatter(x, w, b, 1, 1, 1, big[:, :, ::2], dense_above=thr)
        np.testing.assert_array_equal(big[:, :, ::2], ref)
        assert np.isnan(big[:, :, 1::2]).all()
