"""Parity of evrt against the PyTorch reference for Spikformer (DVS) and Spike-Driven Transformer
(gesture): a real checkpoint saved in the training script's container, loaded and folded by evrt
without torch, then compared spike by spike (spec §10)."""
import argparse

import pytest

from conftest import require_torch
from parity import (make_graph, random_gesture_events, test_ac_counters_equal_count_from_reference_spike_maps,  # noqa: F401
                    test_float32_end_to_end, test_float32_teacher_forced_agreement,
                    test_float64_parity_spikes_and_logits)

torch = require_torch()

from evrt.framing import FrameSpec  # noqa: E402
from tools.reference.checkpoints import (calibrate_on_events, save_sdt_checkpoint,  # noqa: E402
                                         save_spikformer_checkpoint)
from tools.reference.golden import golden_pair  # noqa: E402
from tools.reference.sdt import SDT  # noqa: E402
from tools.reference.spikformer import Spikformer  # noqa: E402

CONFIGS = {
    # small configurations keep CI fast; "full" is the published DVS configuration (spec §3/§4)
    "spikformer-small": dict(arch="spikformer", T=4, sensor=(64, 64), n_events=6000,
                             build=lambda T: Spikformer(num_classes=11, embed_dims=64, num_heads=4, depths=1, T=T,
                                                        img_size_h=64, img_size_w=64),
                             save=lambda m, p, T: save_spikformer_checkpoint(m, p, argparse.Namespace(T=T, num_heads=4)),
                             ext=".pth"),
    "sdt-small": dict(arch="sdt", T=4, sensor=(64, 64), n_events=6000,
                      build=lambda T: SDT(num_classes=11, embed_dims=64, num_heads=4, depths=1, T=T),
                      save=lambda m, p, T: save_sdt_checkpoint(m, p, argparse.Namespace(time_steps=T, num_heads=4,
                                                                                        pooling_stat="0111")),
                      ext=".pth.tar"),
    "spikformer-full": dict(arch="spikformer", T=16, sensor=(128, 128), n_events=60000,
                            build=lambda T: Spikformer(T=T),
                            save=lambda m, p, T: save_spikformer_checkpoint(m, p, argparse.Namespace(T=T, num_heads=16)),
                            ext=".pth"),
    "sdt-full": dict(arch="sdt", T=16, sensor=(128, 128), n_events=60000,
                     build=lambda T: SDT(T=T),
                     save=lambda m, p, T: save_sdt_checkpoint(m, p, argparse.Namespace(time_steps=T, num_heads=8,
                                                                                       pooling_stat="0111")),
                     ext=".pth.tar"),
}


# the published full configurations take minutes each on 2 cores: `slow` (CI still runs them)
PARAMS = [pytest.param(n, marks=pytest.mark.slow) if n.endswith("full") else n for n in CONFIGS]


@pytest.fixture(scope="module", params=PARAMS)
def case(request, tmp_path_factory):
    cfg = CONFIGS[request.param]
    torch.manual_seed(0)
    T, sensor = cfg["T"], cfg["sensor"]
    model = cfg["build"](T)
    spec = FrameSpec(T=T, sensor_size=sensor)
    # two streams for the small configurations, one for the full ones (each costs minutes in CI)
    seeds = (1,) if request.param.endswith("full") else (1, 2)
    streams = [random_gesture_events(cfg["n_events"], seed, sensor) for seed in seeds]
    calibrate_on_events(model, spec, [random_gesture_events(cfg["n_events"], seed, sensor) for seed in (1, 2)])
    path = tmp_path_factory.mktemp("ckpt") / f"{request.param}{cfg['ext']}"
    cfg["save"](model, path, T)
    graph = make_graph(path, cfg["arch"], sensor=sensor)
    goldens = [(ev, *golden_pair(model, spec, ev)) for ev in streams]
    return request.param, graph, goldens
