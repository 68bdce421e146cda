"""Spike lists (docs/INTERNALS.md "Spike lists"): a neuron step lists its fired indices exactly, and
conv/linear kernels fed the list give the scan path's outputs and counts bit for bit, at 1 and 2
threads, alone and in whole models."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import evrt.kernels as K
from evrt.kernels import conv as KC
from evrt.kernels import dense as D
from evrt.kernels import linear as KL
from evrt.kernels import neurons as KN
from evrt.kernels import threads as T
from evrt.ops import neurons as ON

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _threads(monkeypatch):
    """Restore the thread count; let the small arrays take the parallel paths real layers take."""
    before = T.get_threads()
    monkeypatch.setattr(KN, "PAR_MIN_NEURONS", 1)
    monkeypatch.setattr(KN, "PAR_MIN_NEURONS_PER_ELEMENT", 1)
    monkeypatch.setattr(KC, "PAR_MIN_ELEMENTS", 1)
    monkeypatch.setattr(KC, "PAR_MIN_PAIRS", 0)
    monkeypatch.setattr(KL, "PAR_MIN_PAIRS", 0)
    monkeypatch.setattr(ON, "LIST_BELOW", 1.0)        # list at every density the consumers take events at
    yield
    T.set_threads(before)


def _fire(rng, shape, kind, threads, trace=False):
    """One neuron step with a list; returns (spikes, idx, n, dense twin's spikes)."""
    T.set_threads(threads)
    x = rng.normal(0.9, 1.0, shape).astype(np.float32)
    v = rng.normal(0, 0.5, shape).astype(np.float32)
    v0 = v.copy()
    s = np.zeros(shape, np.float32)
    h = np.zeros(shape if trace else 0, np.float32)
    idx = np.full(x.size, -7, np.int32)
    c = shape[-1]
    if kind == "lif":
        vth = rng.uniform(0.5, 1.5, c).astype(np.float32)
        n = K.lif_step(x, v, 0.5, vth, s, h, idx)
        want = D.lif_step(x, v0, 0.5, vth)[0]
    elif kind == "if":
        vth = rng.uniform(0.5, 1.5, c).astype(np.float32)
        n = K.if_step(x, v, vth, s, h, idx)
        want = D.if_step(x, v0, vth)[0]
    else:
        r, cc, th = (rng.uniform(0.2, 1, c).astype(np.float32) for _ in range(3))
        sg = np.where(rng.random(c) < 0.3, -1.0, 1.0).astype(np.float32)
        n = K.table_step(x, v, r, cc, th, sg, 0.5, s, h, idx)
        want = D.table_step(x, v0, r, cc, th, sg, 0.5)[0]
    return s, idx, n, want


@pytest.mark.parametrize("kind", ["lif", "if", "table"])
@pytest.mark.parametrize("shape", [(5, 7, 3), (33, 17, 24), (2, 50, 4099)])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("trace", [False, True])
def test_neuron_lists_its_spikes(kind, shape, threads, trace):
    s, idx, n, want = _fire(np.random.default_rng(len(shape) + shape[-1]), shape, kind, threads, trace)
    assert np.array_equal(s, np.asarray(want, np.float32))              # the dense map is still written
    assert n > 0 and np.array_equal(idx[:n], np.flatnonzero(s))          # the twin of the list


def test_forced_steps_and_bad_buffers_take_no_list():
    x = np.ones((4, 4, 2), np.float32)
    v, s = np.zeros_like(x), np.zeros_like(x)
    with pytest.raises(ValueError):
        K.lif_step(x, v, 0.5, np.ones(2, np.float32), s, x[:0], np.zeros(5, np.int32))
    with pytest.raises(ValueError):
        K.lif_step(x, v, 0.5, np.ones(2, np.float32), s, x[:0], np.zeros(x.size, np.int64))


CONVS = [  # h, w, cin, cout, groups, k, stride, pad
    (17, 13, 24, 40, 1, 3, 1, 1), (16, 16, 64, 64, 2, 3, 2, 1), (12, 9, 96, 96, 3, 3, 1, 1),
    (20, 20, 16, 48, 1, 1, 1, 0), (33, 7, 5, 7, 1, 5, 2, 2), (9, 11, 32, 32, 32, 3, 1, 1)]


@pytest.mark.parametrize("case", CONVS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("path", [2.0, None])      # forced event path, the measured choice
def test_conv_list_equals_scan(case, threads, path):
    h, w, cin, cout, groups, k, stride, pad = case
    rng = np.random.default_rng(h * w + cin)
    s, idx, n, _ = _fire(rng, (h, w, cin), "lif", threads)
    wt = rng.standard_normal((k, k, cin // groups, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    o1 = np.full((ho, wo, cout), np.nan, np.float32)
    o2 = o1.copy()
    c1 = K.conv2d_scatter(s, wt, b, stride, pad, groups, o1, path)
    c2 = K.conv2d_scatter(s, wt, b, stride, pad, groups, o2, path, spikes=(idx, n))
    assert c1 == c2 and c1.nnz == n
    assert o1.tobytes() == o2.tobytes()
    assert np.allclose(o2, D.conv2d(s, wt, b, stride, pad, groups), atol=1e-4)
    # small weight blocks: several channel segments and tap blocks per pixel
    o3, o4 = np.full_like(o1, np.nan), np.zeros_like(o1)
    KC.conv2d_scatter_only(s, wt, b, stride, pad, groups, o3, block_bytes=2048)
    KC.conv2d_scatter_only(s, wt, b, stride, pad, groups, o4, block_bytes=2048, spikes=(idx, n))
    assert o3.tobytes() == o4.tobytes()


@pytest.mark.parametrize("n_tok,cin,cout", [(1, 33, 8), (64, 256, 96), (300, 40, 17)])
@pytest.mark.parametrize("threads", [1, 2])
def test_linear_list_equals_scan(n_tok, cin, cout, threads):
    rng = np.random.default_rng(n_tok + cin)
    s, idx, n, _ = _fire(rng, (n_tok, cin), "table", threads)
    wt = rng.standard_normal((cin, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    o1, o2 = np.zeros((n_tok, cout), np.float32), np.ones((n_tok, cout), np.float32)
    c1 = K.linear_scatter(s, wt, b, o1, 2.0)
    c2 = K.linear_scatter(s, wt, b, o2, 2.0, spikes=(idx, n))
    assert c1 == c2 and o1.tobytes() == o2.tobytes()
    assert np.allclose(o2, D.linear(s, wt, b), atol=1e-4)


def test_list_counts_equal_scan_counts():
    rng = np.random.default_rng(3)
    s, idx, n, _ = _fire(rng, (19, 23, 12), "lif", 1)
    for k, stride, pad in [(3, 1, 1), (3, 2, 1), (5, 2, 0), (1, 1, 0)]:
        ho, wo = (19 + 2 * pad - k) // stride + 1, (23 + 2 * pad - k) // stride + 1
        want = KC.conv2d_counts(s, k, k, stride, pad, ho, wo, 7)
        got = KC.list_counts(idx, n, 19, 23, 12, k, k, stride, pad, ho, wo, 7)
        assert got[:3] == want
        assert np.array_equal(got[3], (s != 0).sum(axis=(1, 2)))


# ------------------------------------------------------------------------------------------ models

ZOO = [p.parent.name for p in sorted((ROOT / "models").glob("*/model.evrt"))
       if p.parent.name in ("sdt-synth-gesture", "spikingresformer-synth-gesture", "spikformer-synth-gesture")]


def _run(path, lists, threads, force_from=None):
    from evrt.engine import Session
    from tests.test_threads import _model_input
    sess = Session(path, threads=threads, spike_lists=lists)
    linked = sum(getattr(i, "source", None) is not None for i in sess.impls)
    sess.trace = True
    outs = []
    for x in _model_input(sess, np.random.default_rng(5)):
        outs.append(sess.step(x))
        linked += sum(getattr(i, "source", None) is not None and i.spike_list() is not None for i in sess.impls)
    rows = [(r["name"], r["acs"], r["macs"], r["spikes"]) for r in sess.report().rows()]
    return linked, [o.logits for o in outs], [(o.acs, o.macs) for o in outs], rows, \
        {k: [s for s, _ in v] for k, v in sess.traces.items()}


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("threads", [1, 2])
def test_zoo_model_lists_bit_identical(name, threads):
    """Step outputs, AC/MAC counts and every layer's spikes with and without spike lists."""
    path = ROOT / "models" / name / "model.evrt"
    n0, l0, c0, r0, t0 = _run(path, False, threads)
    n1, l1, c1, r1, t1 = _run(path, True, threads)
    assert n0 == 0 and n1 > 4                         # the lists are really used
    assert all(a.tobytes() == b.tobytes() for a, b in zip(l0, l1))
    assert c0 == c1 and r0 == r1
    assert t0.keys() == t1.keys()
    for key in t0:
        assert all(np.array_equal(a, b) for a, b in zip(t0[key], t1[key])), key


def test_density_gate_keeps_results(monkeypatch):
    """A gate that lists on some steps only (the default rule, at a low bar) changes no bit."""
    monkeypatch.setattr(ON, "LIST_BELOW", 0.08)
    graph = _random_graph(7)
    runs = [_run(graph, on, 1) for on in (False, True)]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(runs[0][1], runs[1][1]))
    assert runs[0][2:4] == runs[1][2:4]


def _random_graph(seed):
    """A random chain of spiking convs and linears (random widths, groups, strides, thresholds), with a
    reshape between a neuron and a linear and a max-pool (no list) in the middle."""
    from evrt.graph import GraphBuilder
    rng = np.random.default_rng(seed)
    g = GraphBuilder()
    x = g.input(T=4, width=24, height=20)
    c = int(rng.choice([8, 12, 16]))
    y = g.conv_bn("c0", x, rng.normal(0, 3.0 / np.sqrt(18), (c, 2, 3, 3)), rng.normal(0.1, 0.1, c), None, pad=1,
                  in_kind="events")
    s = g.lif("l0", y, vth=float(rng.uniform(0.5, 1.2)))
    for i in range(1, 4):
        if i == 2:
            s = g.add("pool", "maxpool", [s], k=2, stride=2, pad=0)
        groups = int(rng.choice([1, 2, 4]))
        cout = 4 * groups * int(rng.integers(2, 6))
        stride = int(rng.integers(1, 3))
        y = g.conv_bn(f"c{i}", s, rng.normal(0, 4.0 / np.sqrt(9 * c / groups), (cout, c // groups, 3, 3)),
                      rng.normal(0.2, 0.1, cout), None, stride=stride, pad=1, groups=groups)
        s = g.lif(f"l{i}", y, vth=float(rng.uniform(0.3, 1.0)))
        c = cout
    h, w, _ = g.shape(s)
    tok = g.add("tok", "reshape", [s], shape=[h * w, c])
    y = g.linear_bn("fc", tok, rng.normal(0, 3.0 / np.sqrt(c), (c, c)), rng.normal(0.3, 0.2, c), None)
    s = g.lif("lf", y)
    f = g.add("features", "mean", [s])
    g.linear_bn("head", f, rng.normal(0, 1.0, (3, c)), np.zeros(3), None, in_kind="real")
    return g.graph({"family": "toy", "T": 4, "output": "head", "classes": ["a", "b", "c"],
                    "readout": "mean_logits"})


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threads", [1, 2])
def test_random_graph_lists_bit_identical(seed, threads):
    graph = _random_graph(seed)
    n0, l0, c0, r0, t0 = _run(graph, False, threads)
    n1, l1, c1, r1, t1 = _run(graph, True, threads)
    assert n0 == 0 and n1 > 3                         # 3 links, and lists used on some steps
    assert all(a.tobytes() == b.tobytes() for a, b in zip(l0, l1))
    assert c0 == c1 and r0 == r1 and sum(a for a, _ in c1) > 0
    for key in t0:
        assert all(np.array_equal(a, b) for a, b in zip(t0[key], t1[key])), key
