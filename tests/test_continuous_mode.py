"""Continuous mode against the PyTorch reference run on one long sequence, for a family without
per-step parameters (SDT) and one with them (RTFormer: TSBN tables, so the behaviour past T is
exercised too).

- no reset: evrt's step outputs over 3T steps equal the reference's on the whole 3T-frame sequence
  (neuron state carried through, and every per-step table past T-1 held at its last step, as the
  reference's TSBN does), and the readout is the mean of the reference's last T step outputs;
- reset every T: each T-step segment equals a fresh reference run on that segment alone;
- `state_policy` says which of these a session does.
"""
import argparse

import numpy as np
import pytest

from conftest import require_torch
from parity import assert_every_layer_fires, make_graph, random_gesture_events

torch = require_torch()

from evrt.engine import Session  # noqa: E402
from evrt.framing import FrameSpec, clip_frames, event_bins  # noqa: E402
from tools.reference.checkpoints import (calibrate_on_events, save_rtformer_checkpoint,  # noqa: E402
                                         save_sdt_checkpoint)
from tools.reference.golden import run_golden  # noqa: E402
from tools.reference.rtformer import RTFormer  # noqa: E402
from tools.reference.sdt import SDT  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
T, SEGMENTS = 4, 3
FAMILIES = {
    "sdt": dict(sensor=(64, 64), n=6000, neg=0.0, ext=".pth.tar",
                build=lambda: SDT(num_classes=11, embed_dims=64, num_heads=4, depths=1, T=T),
                save=lambda m, p: save_sdt_checkpoint(m, p, argparse.Namespace(time_steps=T, num_heads=4,
                                                                               pooling_stat="0111"))),
    "rtformer": dict(sensor=(128, 128), n=20_000, neg=0.15, ext=".pth.tar",
                     build=lambda: RTFormer(num_classes=11, embed_dims=64, num_heads=4, depths=1, T=T, window=2),
                     save=lambda m, p: save_rtformer_checkpoint(m, p, argparse.Namespace(
                         time_steps=T, num_heads=4, pooling_stat="0111", window=2)),
                     kw=dict(timesteps=T, input_size=64)),
}


@pytest.fixture(scope="module", params=["sdt", pytest.param("rtformer", marks=pytest.mark.slow)])
def rt(request, tmp_path_factory):
    cfg = FAMILIES[request.param]
    sensor = cfg["sensor"]
    torch.manual_seed(0)
    model = cfg["build"]()
    calibrate_on_events(model, FrameSpec(T=T, sensor_size=sensor),
                        [random_gesture_events(cfg["n"], s, sensor) for s in (1, 2)], cfg["neg"])
    path = tmp_path_factory.mktemp("ckpt") / f"{request.param}{cfg['ext']}"
    cfg["save"](model, path)
    graph = make_graph(path, request.param, sensor=sensor, **cfg.get("kw", {}))
    ev = random_gesture_events(SEGMENTS * cfg["n"], 3, sensor, duration_us=3_000_000)
    frames = clip_frames(ev, FrameSpec(T=SEGMENTS * T, sensor_size=sensor))
    bins = list(event_bins(ev, SEGMENTS * T))   # the same split of the events as the frames
    return model, graph, frames, bins


def close(a, b, what):
    scale = max(1e-300, float(np.max(np.abs(b))))
    rel = float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) / scale
    assert rel < 1e-9, f"{what}: relative error {rel:.2e}"


def sliding_mean(step_logits, s):
    return step_logits[max(0, s - T + 1):s + 1].mean(axis=0)


def test_no_reset_keeps_state_and_holds_per_step_tables_past_T(rt):
    """Past T the reference holds the TSBN statistics; evrt holds the last table row but with leak 1 - k
    (RTFormer: the row's own r = (1-k) a_{T-2}/a_{T-1} would rescale the membrane at every extra step)."""
    model, graph, frames, bins = rt
    ref = run_golden(model, frames, torch.float64)   # one sequence of 3T frames, never reset
    assert_every_layer_fires("3T frames", ref)
    sess = Session(graph, "float64", mode="continuous", reset_every=None)
    outs = [sess.step(b) for b in bins]
    steps = np.stack([o.logits for o in outs])
    close(steps, ref["step_logits"], "step outputs over 3T steps")
    for s, o in enumerate(outs):
        close(o.readout, sliding_mean(ref["step_logits"], s), f"readout after step {s}")
        assert not o.reset_after
    # the carried state matters: a fresh start on the second segment gives other outputs
    fresh = run_golden(model, frames[T:2 * T], torch.float64)["step_logits"]
    assert np.max(np.abs(fresh - ref["step_logits"][T:2 * T])) > 1e-3


def test_reset_every_T_restarts_each_segment(rt):
    model, graph, frames, bins = rt
    sess = Session(graph, "float64", mode="continuous", reset_every=T)
    outs = [sess.step(b) for b in bins]
    segs = [run_golden(model, frames[k * T:(k + 1) * T], torch.float64) for k in range(SEGMENTS)]
    for k, g in enumerate(segs):
        assert_every_layer_fires(f"segment {k}", g)
    want = np.concatenate([g["step_logits"] for g in segs])
    close(np.stack([o.logits for o in outs]), want, "step outputs, reset every T")
    assert [o.reset_after for o in outs] == [(s + 1) % T == 0 for s in range(SEGMENTS * T)]
    assert [o.t for o in outs] == [s % T for s in range(SEGMENTS * T)]
    for s, o in enumerate(outs):   # the readout window slides across resets
        close(o.readout, sliding_mean(want, s), f"readout after step {s}")


@pytest.mark.slow
@pytest.mark.parametrize("rt", ["rtformer"], indirect=True)
def test_state_policy_says_what_the_session_does(rt):
    _, graph, _, _ = rt
    assert any(op.type == "table_lif" for op in graph.ops)
    from evrt.toy import toy_graph
    policy = lambda g, **kw: Session(g, **kw).state_policy  # noqa: E731
    clip = policy(graph, mode="clip")
    assert clip.startswith("clip mode") and "mean since the last reset" in clip and f"every {T} steps" in clip
    assert "tables" not in clip
    never = policy(graph, mode="continuous", reset_every=None)
    assert never.startswith("continuous mode") and f"mean of the last {T} steps" in never
    assert "never reset" in never and f"per-step tables beyond step {T - 1} hold the last step's values" in never
    every_T = policy(graph, mode="continuous", reset_every=T)
    assert f"every {T} steps" in every_T and "tables" not in every_T
    assert "tables beyond" in policy(graph, mode="continuous", reset_every=2 * T)
    plain = policy(toy_graph(seed=1, T=T), mode="continuous", reset_every=None)
    assert "never reset" in plain and "tables" not in plain   # nothing per-step to hold
