"""`evrt export`: round trips through NIR and the one-line refusal of what NIR cannot express."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import require
from evrt.archs.common import GraphBuilder
from evrt.engine import Session
from evrt.errors import GraphError
from evrt.events import make_events
from evrt.framing import FrameSpec

ROOT = Path(__file__).resolve().parents[1]
CNN = ROOT / "models" / "nir-nmnist-cnn" / "cnn_sinabs.nir"


@pytest.fixture
def nir():
    return require("nir")


def _native_graph(seed=0):
    """evrt's own ops: events -> conv -> LIF -> sum pool -> conv -> IF -> flatten -> linear -> LIF."""
    rng = np.random.default_rng(seed)
    g = GraphBuilder()
    x = g.add("input", "events_in", ["events"], width=12, height=12, channels=2, sensor_width=12, sensor_height=12, bin=1)
    y = g.conv_bn("conv1", x, rng.normal(0, 0.6, (6, 2, 3, 3)), rng.normal(0.1, 0.1, 6), None, pad=1, in_kind="events")
    s = g.lif("lif1", y, k=0.5, vth=0.8, ref_shape=[6, 12, 12])
    p = g.add("pool", "sumpool", [s], k=[2, 2], stride=[2, 2], pad=[0, 0], scale=1.0, in_kind="spike")
    y = g.conv_bn("conv2", p, rng.normal(0, 0.5, (8, 6, 3, 3)), rng.normal(0.0, 0.1, 8), None, stride=2, pad=1,
                  in_kind="count")
    s = g.add("if2", "dif", [y], {"vth": np.ones(1), "v_init": np.zeros(1)}, ref_shape=[8, 3, 3])
    f = g.add("flat", "reshape", [s], shape=[72])
    y = g.linear_bn("fc", f, rng.normal(0, 0.5, (5, 72)), rng.normal(0.2, 0.1, 5), None)
    g.lif("out_lif", y, k=0.25, vth=0.5, ref_shape=[5], ref_layout="flat")
    return g.graph({"family": "test", "T": 6, "output": "out_lif", "frame": FrameSpec(6, (12, 12)).to_dict(),
                    "classes": [str(i) for i in range(5)], "readout": "mean_logits"})


def _events(seed, n=600):
    rng = np.random.default_rng(seed)
    return make_events(np.sort(rng.integers(0, 6000, n)), rng.integers(0, 12, n), rng.integers(0, 12, n),
                       rng.random(n) < 0.5)


def _spikes(graph, steps):
    s = Session(graph, precision="float64", reset_every=None)
    s.trace = True
    for ev in steps:
        s.step(ev)
    return {k: np.stack([sp for sp, _ in v]) for k, v in s.traces.items()}


def test_native_graph_round_trips_spike_for_spike(nir, tmp_path):
    from evrt.nir import export_nir, import_nir
    g = _native_graph()
    export_nir(g, tmp_path / "m.nir")
    back = import_nir(tmp_path / "m.nir")
    ev = _events(1)
    steps = [ev[(ev["t"] >= 1000 * k) & (ev["t"] < 1000 * (k + 1))] for k in range(6)]
    a, b = _spikes(g, steps), _spikes(back, steps)
    for name in ("lif1", "if2", "out_lif"):
        assert a[name].sum() > 0, f"{name} never fired"
        np.testing.assert_array_equal(a[name], b[name].reshape(a[name].shape), err_msg=name)


def test_dilated_anisotropic_convs_round_trip(nir, tmp_path):
    """conv2d with per-axis stride/pad and dilation (an events-fed one and a spike-fed one) goes out as
    NIR Conv2d fields and comes back as the same op, spike for spike."""
    from evrt.nir import export_nir, import_nir
    g = _native_graph()
    g.op("conv1").attrs.update(pad_hw=[2, 1], dilation=[2, 1])                  # 12x12 stays 12x12
    g.op("conv2").attrs.update(stride_hw=[2, 2], pad_hw=[3, 1], dilation=[3, 1])  # 6x6 -> 3x3 as before
    export_nir(g, tmp_path / "d.nir")
    node = nir.read(str(tmp_path / "d.nir")).nodes["conv2"]
    assert tuple(node.stride) == (2, 2) and tuple(node.padding) == (3, 1) and tuple(node.dilation) == (3, 1)
    back = import_nir(tmp_path / "d.nir")
    assert back.op("conv1").attrs["dilation"] == [2, 1] and back.op("conv2").attrs["pad_hw"] == [3, 1]
    ev = _events(1)
    steps = [ev[(ev["t"] >= 1000 * k) & (ev["t"] < 1000 * (k + 1))] for k in range(6)]
    a, b, plain = _spikes(g, steps), _spikes(back, steps), _spikes(_native_graph(), steps)
    for name in ("lif1", "if2", "out_lif"):
        assert a[name].sum() > 0, f"{name} never fired"
        np.testing.assert_array_equal(a[name], b[name].reshape(a[name].shape), err_msg=name)
    assert not np.array_equal(a["lif1"], plain["lif1"])       # the geometry did change the layer


def test_paper_cnn_round_trips_unchanged(nir, tmp_path):
    from evrt.nir import export_nir, import_nir
    first = import_nir(CNN, profile="sinabs", time_window_us=1000)
    export_nir(first, tmp_path / "rt.nir")
    orig, rt = nir.read(str(CNN)), nir.read(str(tmp_path / "rt.nir"))
    assert sorted(orig.edges) == sorted(rt.edges) and sorted(orig.nodes) == sorted(rt.nodes)
    for name, node in orig.nodes.items():
        other = rt.nodes[name]
        assert type(other) is type(node), name
        for field in ("weight", "bias", "r", "v_threshold", "v_reset", "kernel_size", "stride", "padding"):
            if hasattr(node, field):
                np.testing.assert_array_equal(np.asarray(getattr(other, field)), np.asarray(getattr(node, field)),
                                              err_msg=f"{name}.{field}")
    again = import_nir(tmp_path / "rt.nir")        # profile and framing come back from the metadata
    assert again.meta["nir"]["profile"] == "sinabs" and again.meta["framing"]["time_window_us"] == 1000
    ev = _events(2, 3000)
    ev["x"] %= 34
    ev["y"] %= 34
    r1 = Session(first, precision="float64").run_clip(ev)
    r2 = Session(again, precision="float64").run_clip(ev)
    np.testing.assert_array_equal(r1.step_logits, r2.step_logits)


def test_attention_model_is_refused_naming_the_op(nir, tmp_path):
    from evrt.nir import export_nir
    from evrt.toy import toy_graph
    with pytest.raises(GraphError, match=r"op 'attn.kv' \(sdsa_kv: spike-driven self-attention\) has no NIR"):
        export_nir(toy_graph())
    res = subprocess.run([sys.executable, "-m", "evrt", "export", "spikformer-synth-gesture", "-o",
                          str(tmp_path / "s.nir")], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2 and "'block.0.attn.ssa'" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "s.nir").exists()


def test_first_inexpressible_op_is_named(nir):
    from evrt.nir import export_nir
    g = _native_graph()
    g.op("pool").type = "maxpool"
    g.op("pool").attrs.update(k=2, stride=2, pad=0)
    with pytest.raises(GraphError, match=r"op 'pool' \(maxpool: max pooling\)"):
        export_nir(g)
