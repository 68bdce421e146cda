"""Session, graph file and counters on the code-built toy model (no checkpoint, no torch)."""
import json
import zipfile

import numpy as np
import pytest

from evrt.engine import Session
from evrt.errors import GraphError
from evrt.events import make_events
from evrt.framing import clip_frames, event_bins, FrameSpec
from evrt.graph import Graph
from evrt.toy import toy_graph

W = H = 32


def random_events(n, seed, duration_us=100_000, sensor=(W, H)):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, duration_us, n))
    return make_events(t, rng.integers(0, sensor[0], n), rng.integers(0, sensor[1], n), rng.integers(0, 2, n))


@pytest.fixture(scope="module")
def graph():
    return toy_graph(seed=1, T=6)


def test_runs_end_to_end_in_both_precisions(graph):
    ev = random_events(6000, 0)
    r64 = Session(graph, "float64").run_clip(ev)
    r32 = Session(graph, "float32").run_clip(ev)
    assert r64.step_logits.shape == (6, 4) and np.all(np.isfinite(r64.logits))
    assert r64.acs > 0 and r64.macs > 0
    # a different event stream gives a different answer (the model is not constant)
    assert not np.allclose(Session(graph, "float64").run_clip(random_events(6000, 5)).logits, r64.logits)
    assert np.allclose(r32.logits, r64.logits, atol=1e-3, rtol=1e-3)


def test_events_and_frames_give_identical_steps_and_counts(graph):
    ev = random_events(5000, 1)
    spec = FrameSpec.from_dict(graph.meta["frame"])
    frames = clip_frames(ev, spec)
    a, b = Session(graph, "float64"), Session(graph, "float64")
    ra, rb = a.run_clip(ev), b.run_clip(frames=frames)
    np.testing.assert_array_equal(ra.step_logits, rb.step_logits)
    assert ra.acs == rb.acs


def test_save_load_roundtrip(graph, tmp_path):
    path = tmp_path / "toy.evrt"
    graph.save(path)
    loaded = Graph.load(path)
    assert [o.name for o in loaded.ops] == [o.name for o in graph.ops]
    ev = random_events(3000, 2)
    np.testing.assert_array_equal(Session(graph, "float64").run_clip(ev).logits,
                                  Session(loaded, "float64").run_clip(ev).logits)


def test_streaming_steps_equal_clip(graph):
    ev = random_events(4000, 3)
    sess = Session(graph, "float64")
    clip = sess.run_clip(ev)
    outs = [sess.step(x) for x in event_bins(ev, 6)]
    assert outs[-1].reset_after and [o.t for o in outs] == list(range(6))
    np.testing.assert_allclose(outs[-1].readout, clip.logits, rtol=1e-12, atol=1e-12)
    # after the automatic reset at T steps, the next segment starts from a fresh state
    again = [sess.step(x) for x in event_bins(ev, 6)]
    np.testing.assert_array_equal(again[-1].readout, outs[-1].readout)


# continuous mode (state kept, resets, sliding readout) is checked against the PyTorch reference in
# test_continuous_mode.py


def test_empty_step_and_out_of_sensor_events(graph):
    sess = Session(graph, "float32")
    out = sess.step(make_events([], [], [], []))
    assert out.acs == 0 and np.all(np.isfinite(out.logits))
    sess.step(make_events([1, 2], [W + 5, 3], [2, H + 1], [1, 0]))
    assert sess.dropped_events == 2


def _event_conv_acs(graph, ev_bins):
    """conv1 is fed by raw events: each event touches (#valid output rows) x (#valid output cols) x Cout."""
    kh, kw, _, cout = graph.op("conv1").params["w"].shape
    total = 0
    for b in ev_bins:
        for y, x in zip(b["y"].astype(int), b["x"].astype(int)):
            ny = sum(1 for ky in range(kh) if 0 <= y + 1 - ky < H)
            nx = sum(1 for kx in range(kw) if 0 <= x + 1 - kx < W)
            total += ny * nx * cout
    return total


def test_ac_counters_match_an_independent_count(graph):
    ev = random_events(1500, 6)
    sess = Session(graph, "float64")
    sess.trace = True
    sess.run_clip(ev)
    rows = {r["name"]: r for r in sess.report().rows()}
    bins = list(event_bins(ev, 6))
    assert rows["conv1"]["acs"] == _event_conv_acs(graph, bins)
    ref = sess.reference_traces()
    # 1x1 layers (linear): every input spike touches every output channel once
    q = ref["attn.q_lif"][0]     # (T, C, N)
    k_, v_ = ref["attn.k_lif"][0], ref["attn.v_lif"][0]
    cout = graph.op("attn.proj").params["w"].shape[1]
    mask_nnz = sum(int(np.count_nonzero(q[t] * ref["attn.kv_lif"][0][t][:, None])) for t in range(6))
    assert rows["attn.proj"]["acs"] == mask_nnz * cout
    assert rows["attn.kv"]["acs"] == int(np.count_nonzero(k_ * v_))
    # conv2 (3x3, stride 2, pad 1) fed by pooled spikes: count valid output positions per input spike
    lif1 = ref["lif1"][0]      # (T, C, 32, 32) spikes before pooling
    pooled = np.zeros((6, lif1.shape[1], 16, 16))
    for oy in range(16):
        for ox in range(16):
            ys, xs = slice(max(0, 2 * oy - 1), 2 * oy + 2), slice(max(0, 2 * ox - 1), 2 * ox + 2)
            pooled[:, :, oy, ox] = lif1[:, :, ys, xs].max(axis=(2, 3))
    cout2 = graph.op("conv2").params["w"].shape[3]
    valid = lambda i, n: sum(1 for kk in range(3) if (i + 1 - kk) % 2 == 0 and 0 <= (i + 1 - kk) // 2 < n)  # noqa: E731
    expect = sum(valid(y, 8) * valid(x, 8) * cout2 for _, _, y, x in zip(*np.nonzero(pooled)))
    assert rows["conv2"]["acs"] == expect


def test_teacher_forcing_own_spikes_is_identity_and_zeros_change_output(graph):
    ev = random_events(3000, 7)
    bins = list(event_bins(ev, 6))
    sess = Session(graph, "float64")
    sess.trace = True
    free = [sess.step(b).logits for b in bins]
    ref = sess.reference_traces()
    sess.reset()
    forced = [sess.step(b, force={"lif2": ref["lif2"][0][t]}).logits for t, b in enumerate(bins)]
    np.testing.assert_array_equal(np.stack(free), np.stack(forced))
    sess.reset()
    zeros = [sess.step(b, force={"lif2": np.zeros_like(ref["lif2"][0][t])}).logits for t, b in enumerate(bins)]
    assert not np.allclose(np.stack(free), np.stack(zeros))


def test_report_has_energy_and_paper_estimate(graph):
    sess = Session(graph, "float32")
    sess.run_clip(random_events(3000, 8))
    rep = sess.report()
    tot = rep.totals()
    assert tot["energy_pj"] == pytest.approx(0.9 * tot["acs"] + 4.6 * tot["macs"])
    assert tot["paper_estimate_pj"] > 0 and 0 < tot["firing_rate"] < 1
    assert "total over 6 steps" in rep.to_text()
    json.dumps(rep.to_dict())


def test_bad_graph_files_are_refused(graph, tmp_path):
    path = tmp_path / "m.evrt"
    graph.save(path)
    with zipfile.ZipFile(path) as z:
        assert "__graph__.npy" in z.namelist()
    bad = tmp_path / "bad.evrt"
    bad.write_bytes(b"not a zip")
    with pytest.raises(GraphError, match="not an evrt model"):
        Graph.load(bad)
    # a future version is refused with a clear message
    g2 = toy_graph(seed=1, T=6)
    import evrt.graph as gm
    old = gm.VERSION
    try:
        gm.VERSION = 99
        g2.save(tmp_path / "future.evrt")
    finally:
        gm.VERSION = old
    with pytest.raises(GraphError, match="version 99"):
        Graph.load(tmp_path / "future.evrt")
    g2.ops[3].type = "nonsense"
    with pytest.raises(GraphError, match="unknown type"):
        Session(g2)
