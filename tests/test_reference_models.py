"""PyTorch reference side (tools/reference): key listings, neuron recomputation, firing, streaming,
checkpoint containers. Full configs are only instantiated for the key listings; forward passes use
small configs so the file runs in well under a minute on 2 cores."""
import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import require_torch

REPO = Path(__file__).resolve().parents[1]
LISTINGS = Path(__file__).resolve().parent / "data" / "state_dicts"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

torch = require_torch()
torch.set_num_threads(1)

with warnings.catch_warnings():  # spikingjelly decorates with the deprecated torch.jit.script
    warnings.simplefilter("ignore", DeprecationWarning)
    from tools.reference import RTFormer, SDT, Spikformer, SpikingResformer  # noqa: E402
    from tools.reference import checkpoints as ck  # noqa: E402
    from tools.reference.golden import firing_rates, load_golden, run_golden, save_golden  # noqa: E402
    from tools.reference.neurons import reset_states  # noqa: E402
    from tools.reference.rtformer import TSBN  # noqa: E402

T = 4
# spikingjelly uses the deprecated torch.jit.script
pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def load_listing(name):
    """[(key, shape, dtype), ...] of a published model's state_dict (tests/data/state_dicts)."""
    doc = json.loads((LISTINGS / f"{name}.json").read_text())
    rows = [(t["key"], tuple(t["shape"]), t["dtype"]) for t in doc["tensors"]]
    assert len(rows) == doc["n_tensors"]
    return rows


def listing_of(model):
    return [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in model.state_dict().items()]


@pytest.mark.parametrize("name,n,make", [
    ("spikformer_dvs", 121, lambda: Spikformer()),
    ("sdt_gesture", 112, lambda: SDT()),
    ("spikingresformer_dvsg", 249, lambda: SpikingResformer("dvsg")),
    ("spikingresformer_cifar", 211, lambda: SpikingResformer("cifar")),
])
def test_state_dict_matches_reference_listing(name, n, make):
    want = load_listing(name)
    assert len(want) == n
    got = listing_of(make())
    missing = [k for k, *_ in want if k not in {g[0] for g in got}]
    extra = [k for k, *_ in got if k not in {w[0] for w in want}]
    assert not missing and not extra, f"{name}: missing {missing[:5]}, unexpected {extra[:5]}"
    assert got == want


def test_rtformer_key_scheme():
    m = RTFormer()
    sd = m.state_dict()
    tsbn = [n for n, mod in m.named_modules() if isinstance(mod, TSBN)]
    # every SDT BN position is a TSBN with (T, C) tables, plus 3 cores × (5 branches + pointwise)
    assert len(tsbn) == 2 + 3 * 6 + 2 * 6
    for n in tsbn:
        for p in ("weight", "bias", "running_mean", "running_var"):
            assert sd[f"{n}.{p}"].shape[0] == 16 and sd[f"{n}.{p}"].dim() == 2
    assert sd["patch_embed.core1.branches.0.conv.weight"].shape == (32, 1, 3, 3)
    assert sd["patch_embed.core1.branches.2.conv.weight"].shape == (32, 1, 1, 1)
    assert "patch_embed.core1.branches.4.conv.weight" not in sd
    assert sd["patch_embed.core3.pw_conv.weight"].shape == (256, 128, 1, 1)
    assert sd["block.1.mlp.fc2_bn.running_var"].shape == (16, 256)
    assert not any("talking_heads.weight" in k or "num_batches_tracked" in k for k in sd)


def small(family):
    """(model, input channels, input size) for a small config of each family."""
    if family == "spikformer":
        return Spikformer(embed_dims=64, num_heads=2, depths=1, T=T, img_size_h=64, img_size_w=64), 2, 64
    if family == "sdt":
        return SDT(embed_dims=32, num_heads=4, depths=2, T=T), 2, 32
    if family == "rtformer":
        return RTFormer(embed_dims=32, num_heads=4, depths=1, T=T), 2, 32
    cfg = family.split("-")[1]
    return SpikingResformer(cfg, planes=(8, 16, 32), num_heads=(1, 2, 2), blocks=(1, 1, 1), group_size=8,
                            img_size=32, T=T), 3, 32


def frames(c, size, seed, b=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.poisson(torch.full((T, b or 1, c, size, size), 0.3), generator=g)
    if c == 3:  # SpikingResformer's third channel = ch0 + ch1
        x[:, :, 2] = x[:, :, 0] + x[:, :, 1]
    return x if b else x[:, 0]


FAMILIES = ["spikformer", "sdt", "rtformer", "srf-dvsg", "srf-cifar"]
_CACHE = {}


def ready(family):
    """Small model, randomised and calibrated on one frame set (seed 1)."""
    if family not in _CACHE:
        torch.manual_seed(0)
        m, c, size = small(family)
        ck.randomize_for_firing(m, seed=0, calib=frames(c, size, seed=1, b=2))
        _CACHE[family] = (m, c, size)
    return _CACHE[family]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_golden_h_recomputation_is_bit_exact(family, dtype):
    m, c, size = ready(family)
    g = run_golden(m, frames(c, size, seed=2), dtype=getattr(torch, dtype))  # strict: raises on mismatch
    assert g["layers"] == m.neuron_names()
    assert all(v == 0 for v in g["mismatches"].values())
    for n in g["layers"]:
        h, s = g["h"][n], g["spikes"][n]
        assert h.shape == s.shape and h.shape[0] == T and h.dtype == np.dtype(dtype)
        assert np.array_equal(s, (h >= g["layer_meta"][n]["vth"]).astype(np.uint8))
    assert g["logits"].shape == (m.head.out_features if hasattr(m, "head") else m.classifier.out_features,)
    np.testing.assert_allclose(g["step_logits"].mean(0), g["logits"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_randomised_models_fire(family):
    m, c, size = ready(family)
    rates = firing_rates(run_golden(m, frames(c, size, seed=3)))
    bad = {n: r for n, r in rates.items() if not 0.02 <= r <= 0.5}
    assert not bad, bad


@pytest.mark.parametrize("family", ["spikformer", "sdt", "rtformer", "srf-dvsg"])
def test_streaming_equals_batched(family):
    m, c, size = ready(family)
    m = m.double()
    x = frames(c, size, seed=4, b=1).double()
    with torch.no_grad():
        reset_states(m)
        _, batched = m(x, steps=True)
        reset_states(m)
        streamed = torch.cat([m(x[t:t + 1], steps=True)[1] for t in range(T)])
    reset_states(m)
    m.float()
    assert torch.allclose(batched, streamed, rtol=0, atol=1e-12), (batched - streamed).abs().max()


def test_tsbn_eval_and_window():
    bn = TSBN(3, T=4, window=2)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(4, 3))
        bn.running_var.copy_(torch.rand(4, 3) + 0.1)
        bn.weight.copy_(torch.randn(4, 3))
        bn.bias.copy_(torch.randn(4, 3))
    x = torch.randn(4, 5, 3, 2, 2)
    bn.eval()
    y = bn(x)
    for t in range(4):
        a = bn.weight[t] / torch.sqrt(bn.running_var[t] + 1e-5)
        ref = (x[t] - bn.running_mean[t].view(1, 3, 1, 1)) * a.view(1, 3, 1, 1) + bn.bias[t].view(1, 3, 1, 1)
        assert torch.allclose(y[t], ref, atol=1e-5)
    bn.reset()
    assert torch.equal(torch.cat([bn(x[t:t + 1]) for t in range(4)]), y)  # per-step counter
    bn.reset()
    bn.train()
    y = bn(x)
    win = x[1:3].transpose(0, 1).flatten(0, 1)          # step 2 normalised over steps 1..2
    mu, var = win.mean((0, 2, 3)), win.var((0, 2, 3), unbiased=False)
    ref = (x[2] - mu.view(1, 3, 1, 1)) / torch.sqrt(var.view(1, 3, 1, 1) + 1e-5)
    ref = ref * bn.weight[2].view(1, 3, 1, 1) + bn.bias[2].view(1, 3, 1, 1)
    assert torch.allclose(y[2], ref, atol=1e-5)


def test_checkpoints_round_trip(tmp_path):
    args = argparse.Namespace(model="spikformer", T=T, dataset="dvs128gesture")
    cases = [("spikformer", ck.save_spikformer_checkpoint, "model", "ckpt.pth", True),
             ("sdt", ck.save_sdt_checkpoint, "state_dict", "last.pth.tar", True),
             ("rtformer", ck.save_rtformer_checkpoint, "state_dict", "rt.pth.tar", True),
             ("srf-dvsg", ck.save_spikingresformer_checkpoint, "model", "checkpoint_max_acc1.pth", False)]
    for family, save, top, fname, with_args in cases:
        m, _, _ = ready(family)
        path = tmp_path / fname
        save(m, path, args) if with_args else save(m, path)
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        assert set(ckpt[top]) == set(m.state_dict())
        if with_args:
            assert isinstance(ckpt["args"], argparse.Namespace)
        if top == "state_dict":
            assert ckpt["version"] == 2 and ckpt["arch"] == family
        fresh, _, _ = small(family)
        sd, _ = ck.load_state_dict(path)
        fresh.load_state_dict(sd, strict=True)
        for k, v in m.state_dict().items():
            assert torch.equal(fresh.state_dict()[k], v), k


def test_golden_npz_round_trip(tmp_path):
    m, c, size = ready("sdt")
    g = run_golden(m, frames(c, size, seed=5), record_inputs=True)
    save_golden(tmp_path / "g.npz", g, family="sdt")
    back = load_golden(tmp_path / "g.npz")
    assert back["layers"] == g["layers"] and back["meta"]["family"] == "sdt"
    for n in g["layers"]:
        assert np.array_equal(back["h"][n], g["h"][n]) and np.array_equal(back["spikes"][n], g["spikes"][n])
        assert np.array_equal(back["x"][n], g["x"][n])
    assert np.array_equal(back["logits"], g["logits"])


def test_neuron_layer_counts_match_spec():
    # spec §1.5: Spikformer-DVS 19, SDT-gesture 19, SpikingResformer-dvsg 38 neuron layers
    assert len(Spikformer().neuron_names()) == 19
    assert len(SDT().neuron_names()) == 19
    assert len(SpikingResformer("dvsg").neuron_names()) == 38
    assert len(RTFormer().neuron_names()) == 19


def test_negative_tsbn_scales_and_batch_axis():
    torch.manual_seed(0)
    m, c, size = small("rtformer")
    ck.randomize_for_firing(m, seed=1, neg_gamma_frac=0.1, calib=frames(c, size, seed=1, b=2))
    gammas = torch.cat([mod.weight.flatten() for mod in m.modules() if isinstance(mod, TSBN)])
    assert (gammas < 0).any()
    g = run_golden(m, frames(c, size, seed=2, b=2))   # B = 2 keeps the batch axis
    assert g["logits"].shape == (2, 11) and g["step_logits"].shape == (T, 2, 11)
    assert g["spikes"]["head_lif"].shape == (T, 2, 32)
