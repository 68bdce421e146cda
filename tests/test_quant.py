"""The int8 weight mode: quantiser bounds, integer kernels against their NumPy twins (exact), the AC
counting rule, hostile int8 files, and whole models against a dequantised-float reference."""
import io
import json
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from evrt import kernels as K
from evrt.cli import main
from evrt.engine import Session
from evrt.errors import GraphError
from evrt.graph import GRAPH_KEY, Graph
from evrt.kernels import quant as KQ
from evrt.kernels import quant_dense as DQ
from evrt.ops import Kind
from evrt.quant import dequantise, expand, quantise, quantise_graph, weight_bytes
from evrt.toy import toy_graph

RNG = np.random.default_rng(7)


# ------------------------------------------------------------------------------------------ quantiser

@pytest.mark.parametrize("shape,per_step", [((3, 3, 8, 16), False), ((24, 10), False), ((4, 12, 6), True),
                                            ((2, 3, 3, 4, 5), True)])
def test_quantise_round_trip_is_within_half_a_step(shape, per_step):
    w = RNG.normal(0, 0.3, shape) * RNG.uniform(0.01, 10, shape[-1])   # channels of very different size
    w[..., 1] = 0.0                                                      # an all-zero channel
    q, s = quantise(w, per_step)
    assert q.dtype == np.int8 and s.dtype == np.float32
    assert s.shape == ((shape[0],) if per_step else ()) + (shape[-1],)
    assert np.all(s > 0) and np.all(np.abs(q) <= 127)
    err = np.abs(w - dequantise(q, s))
    step = np.broadcast_to(np.asarray(s, np.float64).reshape(s.shape[:-1] + (1,) * (w.ndim - s.ndim) + s.shape[-1:]),
                           w.shape)
    assert np.all(err <= step / 2 * (1 + 1e-6))
    assert np.all(q[..., 1] == 0)
    # every non-zero channel uses the full range: its largest weight maps to +-127
    red = tuple(range(1 if per_step else 0, w.ndim - 1))
    top = np.max(np.abs(q.astype(int)), axis=red)
    nonzero = np.max(np.abs(w), axis=red) > 0
    assert np.all(top[nonzero] == 127)


# --------------------------------------------------------------------------------- kernels vs twins

def _spikes(shape, p):
    return (RNG.random(shape) < p).astype(np.float32)


GEOMETRIES = [  # (kh, kw, cin, cout, groups, stride, pad, dilation)
    (3, 3, 8, 16, 1, (1, 1), (1, 1), (1, 1)),
    (3, 3, 8, 16, 1, (2, 2), (1, 1), (1, 1)),
    (1, 1, 12, 20, 1, (1, 1), (0, 0), (1, 1)),
    (3, 3, 8, 8, 8, (1, 1), (1, 1), (1, 1)),      # depthwise
    (3, 3, 8, 12, 2, (1, 2), (0, 1), (2, 1)),     # grouped, per-axis stride/pad, dilated
    (5, 3, 6, 9, 3, (2, 1), (2, 1), (1, 1)),
]


@pytest.mark.parametrize("geo", GEOMETRIES)
@pytest.mark.parametrize("kind", ["spike", "count"])
@pytest.mark.parametrize("acc_dtype", [np.int32, np.int64])
def test_conv2d_int_equals_twin_and_counts_like_the_float_kernel(geo, kind, acc_dtype):
    kh, kw, cin, cout, groups, stride, pad, dil = geo
    x = _spikes((11, 13, cin), 0.2)
    if kind == "count":
        x *= RNG.integers(1, 6, x.shape)
    q = RNG.integers(-127, 128, (kh, kw, cin // groups, cout)).astype(np.int8)
    want = DQ.conv2d_int(x, q, stride, pad, dil, groups)
    acc = np.full(want.shape, 99, acc_dtype)          # the kernel overwrites, never adds to old values
    c, bad, vmax = KQ.conv2d_int(x, q, stride, pad, dil, groups, acc)
    assert bad == -1 and vmax == int(x.max())
    np.testing.assert_array_equal(acc, want)
    # the counting rule is the float kernel's: same nnz, pairs, weighted on the same input
    out = np.zeros(want.shape, np.float32)
    fc = K.conv2d_general(x, q.astype(np.float32), np.zeros(cout, np.float32), stride, pad, dil, groups, out)
    assert (c.nnz, c.pairs, c.weighted) == (fc[0], fc[1], fc[2])


@st.composite
def _geometry(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pad = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    dil = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    h = draw(st.integers(max(1, dil[0] * (kh - 1) + 1 - 2 * pad[0]), 10))
    w = draw(st.integers(max(1, dil[1] * (kw - 1) + 1 - 2 * pad[1]), 10))
    groups = draw(st.integers(1, 3))
    cig, cpg = draw(st.integers(1, 12)), draw(st.integers(1, 20))   # > 8 rows: the eight-row path runs
    return kh, kw, stride, pad, dil, h, w, groups, cig, cpg, draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])), \
        draw(st.booleans()), draw(st.integers(0, 2**32 - 1))


@settings(max_examples=60, deadline=None)
@given(_geometry())
def test_conv2d_int_equals_twin_on_any_geometry(c):
    kh, kw, stride, pad, dil, h, w, groups, cig, cpg, density, counts, seed = c
    rng = np.random.default_rng(seed)
    x = (rng.random((h, w, cig * groups)) < density).astype(np.float64)
    if counts:
        x *= rng.integers(-3, 7, x.shape)
    q = rng.integers(-128, 128, (kh, kw, cig, cpg * groups)).astype(np.int8)   # -128 too
    want = DQ.conv2d_int(x, q, stride, pad, dil, groups)
    acc = np.full(want.shape, -7, np.int32)
    cnt, bad, vmax = KQ.conv2d_int(x, q, stride, pad, dil, groups, acc)
    np.testing.assert_array_equal(acc, want)
    assert bad == -1 and vmax == int(np.abs(x).max(initial=0))
    out = np.zeros(want.shape)
    fc = K.conv2d_general(x, q.astype(np.float64), np.zeros(cpg * groups), stride, pad, dil, groups, out)
    assert (cnt.nnz, cnt.pairs, cnt.weighted) == (fc[0], fc[1], fc[2])


def test_linear_int_equals_twin_and_counts_like_linear_scatter():
    for kind in ("spike", "count"):
        x = _spikes((37, 48), 0.15)
        if kind == "count":
            x *= RNG.integers(1, 9, x.shape)
        q = RNG.integers(-127, 128, (48, 33)).astype(np.int8)
        acc = np.zeros((37, 33), np.int32)
        c, bad, _ = KQ.linear_int(x, q, acc)
        np.testing.assert_array_equal(acc, DQ.linear_int(x, q))
        fc = K.linear_scatter(x, q.astype(np.float32), np.zeros(33, np.float32), np.zeros((37, 33), np.float32))
        assert bad == -1 and (c.nnz, c.pairs, c.weighted) == (fc.nnz, fc.pairs, fc.weighted)


@pytest.mark.parametrize("stride,pad,dil", [((1, 1), (1, 1), (1, 1)), ((2, 2), (1, 1), (1, 1)),
                                            ((2, 1), (0, 2), (1, 2))])
def test_conv2d_events_int_equals_twin_and_counts_like_conv2d_events(stride, pad, dil):
    h, w, n = 16, 12, 500
    ys, xs, cs = RNG.integers(0, h, n), RNG.integers(0, w, n), RNG.integers(0, 2, n)
    q = RNG.integers(-127, 128, (3, 3, 2, 7)).astype(np.int8)
    want = DQ.conv2d_events_int(ys, xs, cs, q, stride, pad, dil, (h, w))
    acc = np.ones(want.shape, np.int32)
    c = KQ.conv2d_events_int(ys, xs, cs, q, stride, pad, dil, acc)
    np.testing.assert_array_equal(acc, want)
    out = np.zeros(want.shape, np.float32)
    fc = K.conv2d_general_events(ys, xs, cs, q.astype(np.float32), np.zeros(7, np.float32), stride, pad, dil, out)
    assert (c.nnz, c.pairs) == (fc.nnz, fc.pairs)


def test_apply_scale_equals_twin():
    acc = RNG.integers(-50000, 50000, (9, 7, 5)).astype(np.int32)
    scale, b = RNG.uniform(1e-4, 1e-1, 5), RNG.normal(0, 1, 5)
    for dtype in (np.float32, np.float64):
        out = np.zeros(acc.shape, dtype)
        KQ.apply_scale(acc, scale, b, out)
        np.testing.assert_array_equal(out, DQ.apply_scale(acc, scale, b, dtype))


def test_non_integer_input_is_reported_and_int32_bound():
    x = np.zeros((4, 4, 3), np.float32)
    x[2, 1, 2] = 0.5
    c, bad, _ = KQ.conv2d_int(x, np.ones((1, 1, 3, 2), np.int8), (1, 1), (0, 0), (1, 1), 1, np.zeros((4, 4, 2), np.int32))
    assert bad == (2 * 4 + 1) * 3 + 2
    assert KQ.int32_holds(1, 9 * 768) and not KQ.int32_holds(10 ** 6, 9 * 768)


def test_counts_too_large_for_int32_are_summed_in_int64(tmp_path):
    """A count input whose sums could pass 2**31 is redone in an int64 accumulator: the result is the twin's."""
    g = toy_graph(seed=3, T=2, sensor=(8, 8), channels=4)
    sess = Session(quantise_graph(g), precision="int8")
    conv = next(i for i in sess.impls if i.name == "conv1")
    frame = np.zeros((8, 8, 2), np.float32)
    frame[3, 4, 1] = 3e7                                       # 3e7 events on one pixel: x*q passes 2**31
    ctx = type("C", (), {"t": 0})()
    out = conv.run_int8(frame, ctx, ((1, 1), (1, 1), (1, 1), 1))
    want = DQ.apply_scale(DQ.conv2d_int(frame, conv.q8, (1, 1), (1, 1), (1, 1), 1), conv.q_scale, conv.q_bias, np.float32)
    np.testing.assert_array_equal(out, want)
    assert np.abs(DQ.conv2d_int(frame, conv.q8, (1, 1), (1, 1), (1, 1), 1)).max() > 2 ** 31


# ------------------------------------------------------------------------------------- whole models

def _pow2_int8_graph(g):
    """g quantised with power-of-two scales and biases on each channel's grid: then q * scale, every
    partial sum and the bias add are exact in float32, so the dequantised-float model and the int8 model
    must agree bit for bit."""
    gq = quantise_graph(g)
    for op in gq.ops:
        if "w_scale" in op.params:
            s = op.params["w_scale"].astype(np.float64)
            s2 = 2.0 ** np.floor(np.log2(s))
            w = dequantise(op.params["w"], s)
            op.params["w"] = np.clip(np.rint(w / expand(s2, w.ndim)), -127, 127).astype(np.int8)
            op.params["w_scale"] = s2.astype(np.float32)
            if "b" in op.params:
                op.params["b"] = np.rint(op.params["b"] / s2) * s2
    gq.check()
    return gq


def _dequantised(gq):
    g = Graph(dict(gq.meta), [type(op)(op.name, op.type, list(op.inputs), dict(op.attrs), dict(op.params))
                              for op in gq.ops])
    for op in g.ops:
        if "w_scale" in op.params:
            op.params["w"] = dequantise(op.params["w"], op.params.pop("w_scale"))
    g.check()
    return g


def _events(seed, n=6000, size=32):
    from evrt.events import make_events
    rng = np.random.default_rng(seed)
    return make_events(np.sort(rng.integers(0, 10 ** 6, n)), rng.integers(0, size, n), rng.integers(0, size, n),
                       rng.integers(0, 2, n).astype(bool))


def test_int8_model_equals_dequantised_float_reference_exactly(tmp_path):
    gq = _pow2_int8_graph(toy_graph(seed=1, T=4))
    path = tmp_path / "toy8.evrt"
    gq.save(path)
    i8 = Session(Graph.load(path), precision="int8")
    assert all(i.int8 for i in i8.impls if i.op.type in ("conv2d", "linear") and i.a["in_kind"] != "real")
    ref = Session(_dequantised(gq), precision="float32")
    for seed in range(3):
        ev = _events(seed)
        i8.trace = ref.trace = True
        a, b = i8.run_clip(ev), ref.run_clip(ev)
        np.testing.assert_array_equal(a.step_logits, b.step_logits)
        assert a.acs == b.acs and a.macs == b.macs
        for name, steps in ref.traces.items():
            for (s1, _), (s2, _) in zip(i8.traces[name], steps):
                np.testing.assert_array_equal(s1, s2)
        # identical spikes -> every layer counts the same ACs
        assert [l.acs for l in i8.report().layers] == [l.acs for l in ref.report().layers]
        assert a.acs > 0


def test_a_float_model_quantised_at_load_equals_the_int8_file(tmp_path):
    g = toy_graph(seed=2, T=4)
    gq = quantise_graph(g)
    ev = _events(5)
    a = Session(g, precision="int8").run_clip(ev)
    b = Session(gq, precision="int8").run_clip(ev)
    np.testing.assert_array_equal(a.step_logits, b.step_logits)
    # a float session on the int8 file runs the dequantised weights
    c = Session(gq, precision="float64").run_clip(ev)
    d = Session(_dequantised(gq), precision="float64").run_clip(ev)
    np.testing.assert_array_equal(c.step_logits, d.step_logits)


def test_ac_counts_differ_only_through_spikes_on_a_zoo_model():
    """sdt-nmnist on a real recording: forcing the int8 run's neurons to the float32 run's spikes makes
    every layer's AC count equal to float32's, so a difference in ACs comes only from changed spikes."""
    from evrt.datasets import open_dataset
    from evrt.zoo import resolve_model
    g = Graph.load(resolve_model("sdt-nmnist"))
    ev = open_dataset("nmnist", "examples/data/nmnist", "test")[0].events
    f32 = Session(g, precision="float32")
    f32.trace = True
    f32.run_clip(ev)
    ref = f32.reference_traces()
    from evrt.framing import event_bins
    i8 = Session(g, precision="int8")
    i8.reset()
    for t, x in enumerate(event_bins(ev, i8.T)):
        i8.step(x, force={n: s[t] for n, (s, _) in ref.items()})
    f32.reset_counters()
    f32.reset()
    for t, x in enumerate(event_bins(ev, f32.T)):
        f32.step(x, force={n: s[t] for n, (s, _) in ref.items()})
    got = {l.name: l.acs for l in i8.report().layers}
    want = {l.name: l.acs for l in f32.report().layers}
    assert got == want and sum(want.values()) > 0
    # unforced, the spikes (and so the ACs) may differ
    assert any(getattr(i, "int8", False) for i in i8.impls)


def test_weight_bytes_int8_is_a_quarter_of_float32_plus_scales():
    g = toy_graph(seed=0)
    f32, i8 = weight_bytes(g, "float32"), weight_bytes(g, "int8")
    scales = sum(op.params["w"].shape[-1] for op in g.ops if op.type in ("conv2d", "linear"))
    assert i8 == f32 // 4 + 4 * scales


# ------------------------------------------------------------------------------------ hostile files

@pytest.fixture(scope="module")
def int8_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("int8") / "toy8.evrt"
    quantise_graph(toy_graph(seed=0, T=4)).save(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != GRAPH_KEY}
        doc = json.loads(z[GRAPH_KEY].tobytes().decode())
    return doc, arrays


def _write(path, doc, arrays):
    with zipfile.ZipFile(path, "w") as zf:
        for k, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(a))
            zf.writestr(k + ".npy", buf.getvalue())
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.frombuffer(json.dumps(doc).encode(), np.uint8))
        zf.writestr(GRAPH_KEY + ".npy", buf.getvalue())
    return path


def _drop_param(doc, op, key):
    doc = json.loads(json.dumps(doc))
    d = next(d for d in doc["ops"] if d["name"] == op)
    d["params"].remove(key)
    return doc


HOSTILE = {
    "float w with scales": (lambda a: a.update({"conv2/w": a["conv2/w"].astype(np.float32)}), "dtype float32"),
    "int16 w": (lambda a: a.update({"conv2/w": a["conv2/w"].astype(np.int16)}), "dtype int16"),
    "scale NaN": (lambda a: a["conv2/w_scale"].__setitem__(0, np.nan), "non-finite"),
    "scale inf": (lambda a: a["attn.q/w_scale"].__setitem__(3, np.inf), "non-finite"),
    "scale zero": (lambda a: a["conv2/w_scale"].__setitem__(1, 0.0), "must be > 0"),
    "scale negative": (lambda a: a["attn.q/w_scale"].__setitem__(0, -0.5), "must be > 0"),
    "scale too short": (lambda a: a.update({"conv2/w_scale": a["conv2/w_scale"][:-1]}), "axis cout"),
    "scale per step but w not": (lambda a: a.update({"conv2/w_scale": np.stack([a["conv2/w_scale"]] * 2)}),
                                 "leading timestep axis"),
    "integer scales": (lambda a: a.update({"conv2/w_scale": np.ones(a["conv2/w_scale"].shape, np.int32)}),
                       "float scales"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_int8_files_are_refused_in_one_line(tmp_path, int8_file, case):
    doc, arrays = int8_file
    arrays = {k: v.copy() for k, v in arrays.items()}
    mutate, needle = HOSTILE[case]
    mutate(arrays)
    path = _write(tmp_path / "bad.evrt", doc, arrays)
    with pytest.raises(GraphError) as exc:
        Graph.load(path)
    msg = str(exc.value)
    assert "\n" not in msg and needle in msg and ("conv2" in msg or "attn.q" in msg), msg


def test_int8_weights_without_scales_are_refused(tmp_path, int8_file, capsys):
    doc, arrays = int8_file
    arrays = {k: v for k, v in arrays.items() if k != "conv2/w_scale"}
    path = _write(tmp_path / "noscale.evrt", _drop_param(doc, "conv2", "w_scale"), arrays)
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "conv2" in err and "without 'w_scale'" in err


def test_the_unmodified_int8_file_loads(tmp_path, int8_file):
    doc, arrays = int8_file
    g = Graph.load(_write(tmp_path / "ok.evrt", doc, arrays))
    assert g.op("conv2").params["w"].dtype == np.int8


# ------------------------------------------------------------------------------------------ the CLI

def test_convert_evrt_to_int8_and_predict_with_precision_int8(tmp_path, capsys):
    src = tmp_path / "toy.evrt"
    toy_graph(seed=0, T=4).save(src)
    out = tmp_path / "toy8.evrt"
    assert main(["convert", str(src), "--precision", "int8", "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["weight_bytes"] == weight_bytes(Graph.load(src), "int8")
    assert Graph.load(out).op("conv1").params["w"].dtype == np.int8
    assert main(["convert", str(src), "--precision", "int8", "-o", str(src), "--force"]) == 2   # never its input
    from evrt.formats.npz import write_npz
    rec = tmp_path / "ev.npz"
    write_npz(rec, _events(0), sensor_size=(32, 32))
    assert main(["predict", str(out), str(rec), "--precision", "int8", "--json"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert main(["predict", str(src), str(rec), "--precision", "int8", "--json"]) == 0
    b = json.loads(capsys.readouterr().out)
    assert a["logits"] == b["logits"] and a["acs"] == b["acs"]


def test_only_synaptic_ops_change_in_int8_mode():
    g = toy_graph(seed=0)
    sess = Session(g, precision="int8")
    for impl in sess.impls:
        if getattr(impl, "int8", False):
            assert impl.kind is Kind.SYNAPTIC and impl.op.type in ("conv2d", "linear")
    assert sess.dtype == np.float32


def _per_step_graph(T=4, seed=0):
    """A small model with RTFormer-style per-step weight tables (a leading T axis) on a conv, a count
    linear and a spike linear: the int8 mode picks row min(t, T-1) of the int8 table and its scales."""
    from evrt.graph import GraphBuilder
    rng = np.random.default_rng(seed)
    g = GraphBuilder()
    x = g.input(T=T, width=16, height=16)
    y = g.add("conv1", "conv2d", [x], {"w": rng.normal(0, 0.5, (3, 3, 2, 8)), "b": rng.normal(0.1, 0.1, 8)},
              stride=2, pad=1, in_kind="events")
    s = g.lif("lif1", y)
    y = g.add("conv2", "conv2d", [s], {"w": rng.normal(0, 0.4, (T, 3, 3, 8, 12)), "b": rng.normal(0.2, 0.1, (T, 12))},
              pad=1, in_kind="spike")
    s = g.lif("lif2", y)
    t = g.add("tokens", "reshape", [s], shape=[64, 12])
    y = g.add("fc", "linear", [t], {"w": rng.normal(0, 0.5, (T, 12, 10)), "b": rng.normal(0.3, 0.1, (T, 10))})
    s = g.lif("lif3", y)
    f = g.add("features", "mean", [s])
    g.add("head", "linear", [f], {"w": rng.normal(0, 1.0, (10, 3))}, in_kind="real")
    return g.graph({"family": "toy", "T": T, "output": "head", "classes": ["a", "b", "c"]})


def test_per_step_weight_tables_in_int8_match_the_dequantised_reference():
    gq = _pow2_int8_graph(_per_step_graph())
    assert gq.op("conv2").params["w_scale"].shape == (4, 12) and gq.op("fc").params["w_scale"].shape == (4, 10)
    i8, ref = Session(gq, precision="int8"), Session(_dequantised(gq), precision="float32")
    for seed in range(3):
        ev = _events(seed, n=3000, size=16)
        a, b = i8.run_clip(ev), ref.run_clip(ev)
        np.testing.assert_array_equal(a.step_logits, b.step_logits)
        assert a.acs == b.acs > 0
    # a step beyond T uses the last table row, as the float path does
    s8 = Session(gq, precision="int8", mode="continuous", reset_every=None)
    sf = Session(_dequantised(gq), precision="float32", mode="continuous", reset_every=None)
    from evrt.framing import event_bins
    for x in event_bins(_events(9, n=4000, size=16), 7):
        np.testing.assert_array_equal(s8.step(x).logits, sf.step(x).logits)


def test_convert_a_checkpoint_with_precision_int8(tmp_path, capsys):
    """`evrt convert CKPT --precision int8` writes the same int8 weights as quantising the float
    conversion, and refuses .nir input with a one-line hint."""
    import argparse

    from conftest import require_torch
    torch = require_torch()
    from tools.reference.checkpoints import randomize_for_firing, save_sdt_checkpoint
    from tools.reference.sdt import SDT
    torch.manual_seed(0)
    model = SDT(num_classes=11, embed_dims=32, num_heads=2, depths=1, T=4)
    randomize_for_firing(model, seed=1)
    ckpt = tmp_path / "model_best.pth.tar"
    save_sdt_checkpoint(model, ckpt, argparse.Namespace(time_steps=4, num_heads=2, pooling_stat="0111"))
    f64, i8 = tmp_path / "m.evrt", tmp_path / "m8.evrt"
    assert main(["convert", str(ckpt), "--arch", "sdt", "-o", str(f64), "--sensor", "64x64"]) == 0
    assert main(["convert", str(ckpt), "--arch", "sdt", "-o", str(i8), "--sensor", "64x64", "--precision", "int8"]) == 0
    want, got = quantise_graph(Graph.load(f64)), Graph.load(i8)
    for a, b in zip(want.ops, got.ops):
        assert sorted(a.params) == sorted(b.params)
        for k in a.params:
            np.testing.assert_array_equal(a.params[k], b.params[k])
            assert a.params[k].dtype == b.params[k].dtype
    capsys.readouterr()
    assert main(["convert", str(tmp_path / "x.nir"), "--precision", "int8", "-o", str(tmp_path / "n.evrt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--precision int8" in err


def test_nir_export_of_an_int8_model_writes_the_dequantised_weights():
    from conftest import require
    require("nir")
    from evrt.nir.exporter import export_nir
    from evrt.quant import dequantise_graph
    from evrt.zoo import resolve_model
    gq = quantise_graph(Graph.load(resolve_model("nir-nmnist-cnn")))
    a, b = export_nir(gq), export_nir(dequantise_graph(gq))
    checked = 0
    for name, node in b.nodes.items():
        if hasattr(node, "weight"):
            w = np.asarray(a.nodes[name].weight)
            np.testing.assert_array_equal(w, np.asarray(node.weight))
            assert w.dtype.kind == "f"
            checked += 1
    assert checked >= 4


def test_quant_report_tool_agrees_with_the_sessions(capsys, tmp_path):
    """tools/quant_report.py on two N-MNIST recordings: its per-sample predictions and ACs are the
    Sessions' own, and --update-doc rewrites only the marked blocks."""
    from evrt.datasets import open_dataset
    from evrt.zoo import resolve_model
    from tools import quant_report
    doc = tmp_path / "Q.md"
    doc.write_text("intro\n<!-- quant_report:models -->\nold\n<!-- /quant_report:models -->\nmiddle\n"
                   "<!-- quant_report:flips -->\nold\n<!-- /quant_report:flips -->\nend\n")
    assert quant_report.main(["--models", "sdt-nmnist", "--limit", "2", "--json", "--update-doc", str(doc)]) == 0
    rep = json.loads(capsys.readouterr().out)["models"][0]
    ds = open_dataset("nmnist", "examples/data/nmnist", "test")
    for mode in ("float32", "int8"):
        sess = Session(resolve_model("sdt-nmnist"), precision=mode)
        for i, row in enumerate(rep["per_sample"]):
            res = sess.run_clip(ds[i].events)
            assert row[mode]["acs"] == res.acs and row[mode]["pred"] == res.class_index
    assert rep["weight_bytes"]["int8"] * 3 < rep["weight_bytes"]["float32"]
    text = doc.read_text()
    assert "old" not in text and text.startswith("intro\n") and "\nmiddle\n" in text and text.endswith("end\n")
    assert "| sdt-nmnist | 2 |" in text
