"""evrt's NIR importer: graph handling and one-line errors (needs only the `nir` package), the
`evrt convert MODEL.nir` command, and the NIR paper's N-MNIST CNN on real recordings against sinabs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import require
from evrt.engine import Session
from evrt.errors import EvrtError, GraphError

ROOT = Path(__file__).resolve().parents[1]
CNN = ROOT / "models" / "nir-nmnist-cnn" / "cnn_sinabs.nir"
NMNIST = ROOT / "examples" / "data" / "nmnist" / "Test"


def _require(name):
    return require(name, "the nir-dev extra: docs/NIR.md")


@pytest.fixture
def nir():
    return _require("nir")


def _chain(nir, *nodes, edges=None):
    """type_check off: evrt's own checks are under test, not nir's."""
    names = [n for n, _ in nodes]
    return nir.NIRGraph(nodes=dict(nodes), edges=edges or list(zip(names[:-1], names[1:])), type_check=False)


def test_edges_in_any_order_and_fan_in_sum(nir):
    from evrt.nir import import_nir
    w1, w2 = np.eye(3), 2 * np.eye(3)
    g = nir.NIRGraph(type_check=False, nodes={"out": nir.Output(np.array([3])), "a": nir.Linear(w1), "b": nir.Linear(w2),
                            "if": nir.IF(r=np.ones(3), v_threshold=np.full(3, 2.5)),
                            "in": nir.Input(np.array([3]))},
                     edges=[("if", "out"), ("b", "if"), ("in", "a"), ("a", "if"), ("in", "b")])
    s = Session(import_nir(g, profile="sinabs"), precision="float64", reset_every=None)
    outs = [s.step(np.array([1.0, 0.0, 1.0])).logits for _ in range(2)]
    # each step adds 1 + 2 = 3 to neurons 0 and 2: 3 -> one spike (rest 0.5), then 3.5 -> one spike
    np.testing.assert_array_equal(outs, [[1, 0, 1], [1, 0, 1]])


@pytest.mark.parametrize("profile", ["euler", "sinabs", "snntorch", "norse"])
def test_lif_profiles_follow_their_documented_recurrence(nir, profile):
    from evrt.nir import import_nir
    # a time constant that gives each profile a decay of about 1/4 per step
    tau = {"euler": 4e-3, "sinabs": 4.0, "snntorch": 4e-4, "norse": 4e-6}[profile]
    th, x, steps = 0.9, 0.95, 14
    g = _chain(nir, ("in", nir.Input(np.array([1]))),
               ("lif", nir.LIF(tau=np.array([tau]), r=np.array([1.5]), v_leak=np.zeros(1), v_threshold=np.array([th]))),
               ("out", nir.Output(np.array([1]))))
    s = Session(import_nir(g, profile=profile), precision="float64", reset_every=None)
    got = [s.step(np.array([x])).logits[0] for _ in range(steps)]
    # the recurrences as docs/NIR.md writes them, computed here independently
    dt = {"euler": 1e-3, "sinabs": 1.0, "snntorch": 1e-4, "norse": 1e-3}[profile]
    v, prev, want = 0.0, 0.0, []
    for _ in range(steps):
        if profile == "sinabs":
            v = np.exp(-1 / tau) * v + 1.5 * x
            n = np.trunc(v / th) if v > 0 else 0.0
            v -= n * th
        elif profile == "snntorch":
            v = (1 - dt / tau) * v + dt * 1.5 / tau * x - th * prev
            n = float(v > th)
        else:
            k = dt / tau if profile == "euler" else dt * dt / tau
            v = (1 - k) * v + k * 1.5 * x
            n = float(v > th)
            v = 0.0 if n else v
        prev = n
        want.append(n)
    assert got == want and sum(want) > 0


def test_delay_shifts_each_element_by_its_steps(nir, tmp_path):
    from evrt.nir import export_nir, import_nir
    g = _chain(nir, ("in", nir.Input(np.array([4]))), ("d", nir.Delay(np.array([0.0, 1.0, 2.0, 3.0]) * 1e-3)),
               ("out", nir.Output(np.array([4]))))
    xs = np.random.default_rng(5).normal(size=(8, 4))
    for graph in (import_nir(g), None):
        if graph is None:       # and the same after a round trip through `evrt export`
            export_nir(import_nir(g), tmp_path / "d.nir")
            graph = import_nir(tmp_path / "d.nir")
        s = Session(graph, precision="float64", reset_every=None)
        got = np.stack([s.step(x).logits for x in xs])
        want = np.zeros_like(xs)
        for j in range(4):
            want[j:, j] = xs[: len(xs) - j, j]
        np.testing.assert_array_equal(got, want)
    with pytest.raises(GraphError, match=r"'d' \(Delay\): delays must be whole multiples"):
        import_nir(_chain(nir, ("in", nir.Input(np.array([1]))), ("d", nir.Delay(np.array([1.5e-3]))),
                          ("out", nir.Output(np.array([1])))))


def test_flatten_permutes_affine_columns(nir):
    """A (C, H, W) map flattened in NIR order must meet the Affine's columns in that order."""
    from evrt.nir import import_nir
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 2 * 3 * 4))
    g = _chain(nir, ("in", nir.Input(np.array([2, 3, 4]))), ("flat", nir.Flatten({"input": np.array([2, 3, 4])}, start_dim=0)),
               ("fc", nir.Linear(w)), ("out", nir.Output(np.array([5]))))
    x = rng.normal(size=(2, 3, 4))
    out = Session(import_nir(g), precision="float64").step(x).logits
    np.testing.assert_allclose(out, w @ x.reshape(-1), rtol=1e-12)


@pytest.mark.parametrize("case,msg", [
    ("unsupported", "is a sub-graph"),
    ("cycle", "cycle through node"),
    ("shape", "does not fit"),
    ("same", "padding 'same' is not supported"),
])
def test_bad_graphs_get_one_line_errors_naming_the_node(nir, case, msg):
    from evrt.nir import import_nir
    inp, out = ("in", nir.Input(np.array([4]))), ("out", nir.Output(np.array([4])))
    if case == "unsupported":
        sub = _chain(nir, ("i", nir.Input(np.array([4]))), ("o", nir.Output(np.array([4]))))
        g = _chain(nir, inp, ("d", sub), out)
    elif case == "cycle":
        g = _chain(nir, inp, ("a", nir.Linear(np.eye(4))), ("b", nir.Linear(np.eye(4))), out,
                   edges=[("in", "a"), ("a", "b"), ("b", "a"), ("b", "out")])
    elif case == "shape":
        g = _chain(nir, inp, ("fc", nir.Linear(np.ones((3, 5)))), ("out", nir.Output(np.array([3]))))
    else:
        g = _chain(nir, ("in", nir.Input(np.array([1, 8, 8]))),
                   ("conv", nir.Conv2d(input_shape=(8, 8), weight=np.ones((1, 1, 2, 2)), stride=1, padding="same",
                                       dilation=1, groups=1, bias=np.zeros(1))),
                   ("out", nir.Output(np.array([1, 8, 8]))))
    with pytest.raises(GraphError) as err:
        import_nir(g)
    text = str(err.value)
    assert msg in text and "\n" not in text
    if case != "cycle":
        assert repr({"unsupported": "d", "shape": "fc", "same": "conv"}[case]) in text


def test_missing_nir_package_message(monkeypatch):
    import builtins
    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "nir":
            raise ImportError("no nir")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", fake)
    from evrt.nir import require_nir
    with pytest.raises(EvrtError, match=r'pip install "evrt\[nir\]"'):
        require_nir()


def test_cli_convert_nir_writes_profile_and_framing(nir, tmp_path):
    out = tmp_path / "cnn.evrt"
    res = subprocess.run([sys.executable, "-m", "evrt", "convert", str(CNN), "-o", str(out), "--nir-profile",
                          "sinabs", "--time-window-us", "1000", "--json"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["profile"] == "sinabs" and summary["framing"]["time_window_us"] == 1000
    from evrt.graph import Graph
    meta = Graph.load(out).meta
    assert meta["nir"]["profile"] == "sinabs" and meta["frame"]["sensor_size"] == [34, 34]
    assert meta["framing"] == {"kind": "time_window", "time_window_us": 1000, "include_incomplete": False,
                               "start": "first_event"}
    bad = subprocess.run([sys.executable, "-m", "evrt", "convert", str(CNN), "-o", str(CNN)], capture_output=True,
                         text=True, cwd=ROOT)
    assert bad.returncode == 2 and "overwrite" in bad.stderr and "Traceback" not in bad.stderr


def test_time_windows_match_tonic():
    _require("tonic")
    from nir_reference import tonic_frames
    from nir_reference import nmnist_recordings, read_events
    from evrt.nir.run import time_window_frames
    for path, _ in nmnist_recordings(NMNIST)[:5]:
        ref = tonic_frames(path)
        mine = time_window_frames(read_events(path), 1000, (34, 34))
        np.testing.assert_array_equal(mine, ref)


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_nir_paper_cnn_matches_sinabs_on_real_nmnist(precision):
    """A subset here (the report tool runs all 100 recordings: docs/NIR.md): same prediction, same output
    spike counts, and every neuron layer's spikes at every step."""
    nir = _require("nir")
    _require("sinabs")
    _require("tonic")
    from nir_reference import sinabs_run, tonic_frames
    from evrt.nir import import_nir
    from nir_reference import nmnist_recordings, read_events
    graph = nir.read(str(CNN))
    s = Session(import_nir(CNN, profile="sinabs", time_window_us=1000), precision=precision)
    for path, label in nmnist_recordings(NMNIST)[:3]:
        out, layers = sinabs_run(graph, tonic_frames(path), double=precision == "float64")
        s.trace = True
        r = s.run_clip(read_events(path))
        assert r.class_index == int(np.argmax(out)) == label
        np.testing.assert_array_equal(r.step_logits.sum(axis=0), out)
        tr = s.reference_traces()
        assert sorted(layers) == sorted(k for k in tr if k in layers) and len(layers) == 5
        for name, sp in layers.items():
            agree = float((tr[name][0].reshape(sp.shape) == sp).mean())
            assert agree == 1.0 if precision == "float64" else agree >= 0.999, (name, agree)


def test_counts_cross_checked_against_neurobench():
    """NeuroBench's per-layer synaptic operations on the sinabs model equal NeuroBench's definition
    applied to evrt's own layer inputs (the spikes agree), its Benchmark totals equal the per-layer
    sum, and evrt's counted ACs are >= NeuroBench's (a count c is c ACs for evrt, one operation for
    NeuroBench); pooling is evrt-only."""
    nir = _require("nir")
    for mod in ("sinabs", "tonic", "neurobench"):
        _require(mod)
    from nir_reference import tonic_frames
    from tools.nir_neurobench import evrt_side, neurobench_side
    from evrt.nir import import_nir
    from nir_reference import nmnist_recordings, read_events
    path, _ = nmnist_recordings(NMNIST)[0]
    nb, totals = neurobench_side(nir.read(str(CNN)), tonic_frames(path))
    sess = Session(import_nir(CNN, profile="sinabs", time_window_us=1000), precision="float64")
    ev, _ = evrt_side(sess, read_events(path))
    assert sorted(nb) == sorted(k for k, v in ev.items() if v["nb_def"] is not None) and len(nb) == 5
    for name, (ops, spiking, dense) in nb.items():
        assert ops == ev[name]["nb_def"] > 0, name
        assert ev[name]["acs"] >= ops and ev[name]["zero_weights"] == 0
        assert dense <= ev[name]["dense"]          # evrt's dense count includes padded taps
    assert totals["Effective_ACs"] + totals["Effective_MACs"] == sum(v[0] for v in nb.values())
    assert totals["Dense"] == sum(v[2] for v in nb.values())
    pools = [k for k, v in ev.items() if v["nb_def"] is None]
    assert len(pools) == 2 and all(ev[k]["acs"] > 0 for k in pools)


# ---------------------------------------------------------------------------------- the zoo card
ZOO = ROOT / "models" / "nir-nmnist-cnn"
NMNIST_ROOT = NMNIST.parent


def _card():
    return json.loads((ZOO / "card.json").read_text())


def _evrt_eval(*extra):
    """The README-style command, run as a user runs it: `evrt eval --dataset nmnist --model nir-nmnist-cnn`."""
    out = subprocess.run([sys.executable, "-m", "evrt", "eval", "--dataset", "nmnist", "--root",
                          str(NMNIST_ROOT), "--model", "nir-nmnist-cnn", "--json", *extra],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_zoo_card_lists_the_shipped_model_and_it_is_the_nir_file_converted(nir):
    """`evrt models` shows the card; the shipped model.evrt is what the card's convert command makes
    from cnn_sinabs.nir (every op, attribute and parameter)."""
    from evrt.graph import Graph
    from evrt.nir import import_nir
    card = _card()
    res = subprocess.run([sys.executable, "-m", "evrt", "models", "--json"], capture_output=True, text=True, cwd=ROOT)
    listed = {c["name"]: c for c in json.loads(res.stdout)}
    assert listed["nir-nmnist-cnn"]["dataset"] == "nmnist" and Path(listed["nir-nmnist-cnn"]["path"]).is_file()
    shipped = Graph.load(ZOO / card["file"])
    fresh = import_nir(ZOO / "cnn_sinabs.nir", profile="sinabs", time_window_us=card["framing"]["time_window_us"])
    assert [(o.name, o.type, o.inputs, o.attrs) for o in shipped.ops] == \
        [(o.name, o.type, o.inputs, json.loads(json.dumps(o.attrs))) for o in fresh.ops]
    for a, b in zip(shipped.ops, fresh.ops):
        assert sorted(a.params) == sorted(b.params)
        for k in a.params:   # a float32 model file holds the fresh parameters rounded once
            np.testing.assert_array_equal(a.params[k], b.params[k].astype(a.params[k].dtype))
    runtime = sum(p.size for o in shipped.ops for k, p in o.params.items() if not k.startswith("nir_"))
    assert runtime == card["params"] == shipped.num_params and shipped.meta["classes"] == card["classes"]
    # `evrt inspect` prints that count, and its synaptic part is the NIR file's own weights and biases
    res = subprocess.run([sys.executable, "-m", "evrt", "inspect", str(ZOO / card["file"]), "--json"],
                         capture_output=True, text=True, cwd=ROOT)
    counts = json.loads(res.stdout)["param_counts"]
    g = nir.read(str(ZOO / "cnn_sinabs.nir"))
    weights = sum(np.asarray(getattr(n, a)).size for n in g.nodes.values()
                  if type(n).__name__ in ("Conv2d", "Affine", "Linear") for a in ("weight", "bias") if hasattr(n, a))
    assert counts["total"] == card["params"] and counts["synaptic"] == weights


def test_zoo_card_accuracy_on_a_subset():
    """Recomputed from the shipped model and recordings only (no nir/sinabs needed): on the first
    recording of every digit and on each recording the card names as misclassified, evrt predicts what
    the card says (correct, or the stated wrong digit)."""
    from evrt.datasets.nmnist import NMNIST
    card = _card()
    wrong = card["accuracy"]["misclassified"]
    ds = NMNIST(NMNIST_ROOT, split="test")
    first = {}
    for i, (name, label) in enumerate(zip(ds.names, ds.labels)):
        first.setdefault(label, i)
    idx = sorted(set(first.values()) | {ds.names.index(n) for n in wrong})
    assert len(first) == 10 and len(wrong) == 4 and len(idx) >= 10
    sess = Session(str(ZOO / card["file"]), precision=card["precision"])
    for i in idx:
        s = ds[i]
        pred = card["classes"][sess.run_clip(s.events).class_index]
        assert pred == wrong.get(s.name, card["classes"][s.label]), s.name


@pytest.mark.slow
def test_zoo_card_accuracy_on_all_100_recordings():
    """The card's accuracy claims, all recomputed: evrt through `evrt eval` (float32, the card's
    precision) and sinabs (float32, the paper's pipeline) on the 100 shipped recordings."""
    nir = _require("nir")
    _require("sinabs")
    _require("tonic")
    from nir_reference import nmnist_recordings, sinabs_run, tonic_frames
    card = _card()
    acc = card["accuracy"]
    res = _evrt_eval("--precision", card["precision"])
    assert res["n"] == acc["n_samples"] == 100
    assert res["correct"] == acc["evrt_correct"] and res["accuracy"] == acc["evrt"]
    assert {p["name"]: p["pred"] for p in res["predictions"] if not p["correct"]} == acc["misclassified"]
    evrt_pred = {p["name"]: p["pred"] for p in res["predictions"]}
    graph = nir.read(str(ZOO / "cnn_sinabs.nir"))
    ref_correct = agree = 0
    for path, label in nmnist_recordings(NMNIST):
        out, _ = sinabs_run(graph, tonic_frames(path), double=False)
        pred = card["classes"][int(np.argmax(out))]
        ref_correct += pred == str(label)
        agree += pred == evrt_pred[f"Test/{label}/{path.stem}"]
    assert ref_correct == acc["reference_correct"] and ref_correct / 100 == acc["reference"]
    assert agree / 100 == acc["agreement"]
