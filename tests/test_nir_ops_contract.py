"""The NIR op types (evrt/ops/nir.py) under the op contract, without the `nir` package: a hostile `.evrt`
with wrong-length NIR parameters or ill-typed attributes fails at load with one line naming the op;
their declared kinds drive the counters; the parity harness's independent count equals the sum-pool
kernel's ACs on a model built from them."""
from __future__ import annotations

import json

import numpy as np
import pytest

from evrt.engine import Session
from evrt.errors import GraphError
from evrt.graph import GRAPH_KEY, Graph, GraphBuilder
from evrt.ops import Kind, kind_of
from test_graph_contract import _load_error, _op
from tests.parity import random_gesture_events
from tools.parity import independent_acs

NEURON = ("a_m", "b_m", "c_m", "a_s", "b_s", "vth", "vreset", "vmin")
SENSOR = 12


def _neuron(shape, ref_shape, fire, rng, cuba=0):
    """Per-element coefficients in runtime layout, NIR fields in ref_shape (as the importer stores them)."""
    n = int(np.prod(shape))
    p = {"a_m": np.full(n, 0.9), "b_m": rng.uniform(0.5, 1.5, n), "c_m": np.zeros(n), "a_s": np.full(n, 0.8),
         "b_s": np.ones(n), "vth": np.full(n, 1.0), "vreset": np.zeros(n), "vmin": np.full(n, -1.0)}
    p = {k: v.reshape(shape) for k, v in p.items()}
    p["nir_v_threshold"] = np.ones(ref_shape)
    return p, dict(shape=list(shape), ref_shape=list(ref_shape), cuba=cuba, fire=fire, reset=2, floor=True,
                   nir_type="IF", ref_layout="channels_first" if len(shape) > 1 else "flat")


def nir_ops_graph(seed=0, T=6, conv_geometry=None) -> Graph:
    """events -> conv -> nir_neuron (several spikes per step) -> sumpool -> scale -> delay -> nir_neuron
    -> flatten -> linear -> nir_neuron (LI: membrane out)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder()
    x = b.input(T=T, width=SENSOR, height=SENSOR)
    c = b.add("conv", "conv2d", [x], {"w": rng.normal(0.3, 0.5, (3, 3, 2, 4)), "b": np.zeros(4)}, pad=1,
              in_kind="events", **(conv_geometry or {}))
    p, a = _neuron((12, 12, 4), (4, 12, 12), 3, rng)
    s1 = b.add("n1", "nir_neuron", [c], p, **a)
    pool = b.add("pool", "sumpool", [s1], k=[2, 3], stride=[2, 2], pad=[0, 1], in_kind="count")
    ho, wo, ch = b.shape(pool)
    sc = b.add("scale", "scale", [pool], {"s": rng.uniform(0.5, 1.0, (ho, wo, ch))})
    d = b.add("delay", "delay", [sc], {"d": rng.integers(0, 3, (ho, wo, ch)).astype(float),
                                       "nir_delay": np.full((ch, ho, wo), 1e-3)}, ref_shape=[ch, ho, wo])
    p, a = _neuron((ho, wo, ch), (ch, ho, wo), 1, rng, cuba=1)
    s2 = b.add("n2", "nir_neuron", [d], p, **a)
    f = b.add("flat", "reshape", [s2], shape=[ho * wo * ch])
    y = b.add("fc", "linear", [f], {"w": rng.normal(0, 0.5, (ho * wo * ch, 3))}, in_kind="spike")
    p, a = _neuron((3,), (3,), 0, rng)
    b.add("out", "nir_neuron", [y], p, **a)
    return b.graph({"family": "test", "T": T, "output": "out", "classes": ["a", "b", "c"], "readout": "mean_logits"})


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("nircontract") / "nir.evrt"
    nir_ops_graph().save(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != GRAPH_KEY}
        doc = json.loads(z[GRAPH_KEY].tobytes().decode())
    return doc, arrays


def test_declared_kinds():
    assert kind_of("nir_neuron") is Kind.NEURON and kind_of("sumpool") is Kind.SYNAPTIC
    assert kind_of("scale") is Kind.SYNAPTIC and kind_of("tensor_in") is Kind.INPUT
    assert kind_of("delay") is Kind.STRUCTURAL


@pytest.mark.parametrize("op,key,shape,words", [
    ("n1", "vth", (12, 12, 3), "'vth' has shape (12, 12, 3); it must be the output shape (12, 12, 4)"),
    ("n1", "a_m", (576,), "'a_m' has shape (576,); it must be the output shape"),
    ("n2", "b_s", (1,), "'b_s' has shape (1,)"),
    ("n1", "nir_v_threshold", (4, 12), "must be ref_shape (4, 12, 12)"),
    ("scale", "s", (6, 7), "'s' has shape (6, 7)"),
    ("delay", "d", (2,), "'d' has shape (2,)"),
    ("out", "vmin", (4,), "'vmin' has shape (4,)"),
])
def test_wrong_length_nir_parameter_fails_at_load(tmp_path, model, op, key, shape, words):
    doc, arrays = model
    bad = dict(arrays, **{f"{op}/{key}": np.ones(shape)})
    msg = _load_error(tmp_path, doc, bad)
    assert f"op {op!r}" in msg and words in msg, msg


@pytest.mark.parametrize("op,key,value,words", [
    ("n1", "fire", 7, "'fire' is 7; allowed"),
    ("n1", "cuba", "yes", "'cuba' must be an integer"),
    ("n1", "shape", [12, 12, 5], "neurons of shape (12, 12, 5) do not fit"),
    ("n1", "ref_perm", [0, 0, 1], "ref_perm is not a permutation"),
    ("n1", "floor", 1, "'floor' must be true/false"),
    ("pool", "k", [2], "'k' = [2] must be two integers"),
    ("pool", "stride", [0, 2], "must be >= 1"),
    ("pool", "pad", [-1, 0], "must be >= 0"),
    ("pool", "in_kind", "events", "allowed"),
    ("pool", "scale", "half", "'scale' must be a number"),
    ("pool", "k", None, "missing attribute 'k'"),
])
def test_bad_nir_attribute_fails_at_load(tmp_path, model, op, key, value, words):
    doc, arrays = model
    doc = json.loads(json.dumps(doc))
    if value is None:
        del _op(doc, op)["attrs"][key]
    else:
        _op(doc, op)["attrs"][key] = value
    msg = _load_error(tmp_path, doc, arrays)
    assert f"op {op!r}" in msg and words in msg, msg


@pytest.mark.parametrize("d,words", [(-1.0, "whole, non-negative"), (0.5, "whole, non-negative"),
                                     (1e9, "ring buffer above")])
def test_delay_values_are_checked_before_allocation(tmp_path, model, d, words):
    """A delay sizes a ring buffer: a negative, fractional or huge one fails at load, not in numpy."""
    doc, arrays = model
    bad = dict(arrays, **{"delay/d": np.full(arrays["delay/d"].shape, d)})
    msg = _load_error(tmp_path, doc, bad)
    assert "op 'delay'" in msg and words in msg, msg


def test_missing_nir_parameter_and_tensor_in_shape():
    b = GraphBuilder()
    with pytest.raises(GraphError, match=r"op 'x' \(tensor_in\): .*not the channels-last form \(5, 6, 2\)"):
        b.add("x", "tensor_in", ["events"], shape=[2, 5, 6], ref_shape=[2, 5, 6])
    b.add("x", "tensor_in", ["events"], shape=[5, 6, 2], ref_shape=[2, 5, 6])
    p, a = _neuron((5, 6, 2), (2, 5, 6), 1, np.random.default_rng(0))
    del p["vreset"]
    with pytest.raises(GraphError, match=r"op 'n' \(nir_neuron\): missing parameter 'vreset'"):
        b.add("n", "nir_neuron", ["x"], p, **a)


def test_zero_threshold_with_multi_spike_is_refused():
    g = nir_ops_graph()
    g.op("n1").params["vth"] = np.zeros_like(g.op("n1").params["vth"])
    with pytest.raises(GraphError, match="zero threshold"):
        Session(g, "float64")


@pytest.mark.parametrize("geometry", [None, {"pad_hw": [2, 1], "dilation": [2, 1]}])
def test_harness_counts_the_sum_pool_like_a_synapse(geometry):
    """The parity harness's count (geometry x the traced input counts) equals the kernel's ACs for the
    sum pool (count input: a count c is c ACs) and for the conv and linear around it — also for a
    dilated conv with per-axis padding (the general conv kernel; same 12 x 12 output)."""
    g = nir_ops_graph(conv_geometry=geometry)
    ev = random_gesture_events(1500, seed=2, sensor=(SENSOR, SENSOR))
    sess = Session(g, "float64")
    sess.trace = True
    sess.run_clip(ev)
    golden = {"spikes": {n: spikes for n, (spikes, _) in sess.reference_traces().items()}}
    measured = {r["name"]: r for r in sess.report().rows()}
    expected = independent_acs(g, golden, ev, sess)
    assert {"conv", "pool", "fc"} <= set(expected) and "scale" not in expected
    for name, n in expected.items():
        assert measured[name]["acs"] == n, (name, measured[name]["acs"], n)
    assert measured["scale"]["macs"] > 0 and measured["scale"]["acs"] == 0
    # several spikes per step: the counts are not all 0/1, so weighted ACs differ from pairs
    assert golden["spikes"]["n1"].max() > 1


def test_time_window_framing_runs_one_step_per_window_and_refuses_no_events():
    """The engine's hook for time-window framed models (meta["framing"], NIR imports): one step per
    window from the first event, the last incomplete window dropped, and no answer from no events."""
    from evrt.errors import EventError
    from evrt.events import make_events
    g = nir_ops_graph()
    g.meta["framing"] = {"kind": "time_window", "time_window_us": 1000, "include_incomplete": False,
                         "start": "first_event"}
    sess = Session(g, "float64")
    ev = random_gesture_events(800, seed=5, sensor=(SENSOR, SENSOR))
    span = int(ev["t"][-1]) - int(ev["t"][0])
    r = sess.run_clip(ev)
    assert r.step_logits.shape == ((span - 1000) // 1000 + 1, 3)
    with pytest.raises(EventError, match="no events"):
        sess.run_clip(make_events([], [], [], []))
