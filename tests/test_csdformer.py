"""CSDformer-style conversion (spec §7): temporal-decomposition kernels, and the exactness of the DIF
conversion — per layer, the converted SNN's spike counts equal the quantised ANN's levels, and the
clip logits equal the ANN's (float64) — on random and briefly trained checkpoints; counters."""
import sys
from pathlib import Path

import numpy as np
import pytest

from evrt.archs import csdformer as arch
from evrt.engine import Session
from evrt.graph import Graph
from evrt.kernels import dense as D
from evrt.kernels import temporal as KT

from conftest import require_torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SMALL = dict(img_size=16, in_channels=2, embed_dim=16, num_heads=2, depth=1, mlp_ratio=2, L=4, num_classes=5)


# ----------------------------------------------------------------------------------- kernels (no torch)

def _spikes(rng, shape, p):
    return (rng.random(shape) < p).astype(np.float64)


def test_tprod_kernels_match_twins_and_telescope():
    rng = np.random.default_rng(0)
    n, d, heads, steps = 6, 8, 2, 5
    A, B, Ad, Bd = (np.zeros((n, d)) for _ in range(4))
    total = np.zeros((heads, n, n))
    for _ in range(steps):
        a, b = _spikes(rng, (n, d), 0.3), _spikes(rng, (n, d), 0.3)
        out = np.zeros((heads, n, n))
        acs = KT.tprod_qk(a, b, A, B, heads, out)
        ref, acs_ref, Ad, Bd = D.tprod_qk(a, b, Ad, Bd, heads)
        np.testing.assert_array_equal(out, ref)
        assert acs == acs_ref
        total += out
    split = lambda x: x.reshape(n, heads, d // heads).transpose(1, 0, 2)   # noqa: E731
    np.testing.assert_array_equal(total, split(A) @ split(B).transpose(0, 2, 1))   # Σ increments = A_T B_Tᵀ

    Aa, V, Aad, Vd = np.zeros((heads, n, n)), np.zeros((n, d)), np.zeros((heads, n, n)), np.zeros((n, d))
    total = np.zeros((n, d))
    for _ in range(steps):
        a, v = _spikes(rng, (heads, n, n), 0.3), _spikes(rng, (n, d), 0.3)
        out = np.zeros((n, d))
        acs = KT.tprod_av(a, v, Aa, V, out)
        ref, acs_ref, Aad, Vd = D.tprod_av(a, v, Aad, Vd, heads)
        np.testing.assert_array_equal(out, ref)
        assert acs == acs_ref
        total += out
    np.testing.assert_array_equal(total, (Aa @ split(V)).transpose(1, 0, 2).reshape(n, d))


@pytest.mark.parametrize("hw,k,stride,pad", [(9, 3, 2, 1), (8, 2, 2, 0), (7, 3, 1, 1)])
def test_maxpool_delta_matches_twin(hw, k, stride, pad):
    rng = np.random.default_rng(1)
    c = 3
    ho = (hw + 2 * pad - k) // stride + 1
    A, M, Ad = np.zeros((hw, hw, c)), np.zeros((ho, ho, c)), np.zeros((hw, hw, c))
    total = np.zeros((ho, ho, c))
    for _ in range(6):
        s = _spikes(rng, (hw, hw, c), 0.4)
        out = np.zeros((ho, ho, c))
        KT.maxpool_delta(s, A, M, k, stride, pad, out)
        ref, Ad = D.maxpool_delta(s, Ad, k, stride, pad)
        np.testing.assert_array_equal(out, ref)
        assert set(np.unique(out)) <= {0.0, 1.0}      # binary spikes again
        total += out
    np.testing.assert_array_equal(total, D._maxpool_counts(A, k, stride, pad))


def test_dif_step_matches_twin():
    rng = np.random.default_rng(2)
    n = 200
    x, v, vth = rng.normal(0, 1, n), rng.normal(0, 0.5, n), rng.uniform(0.2, 1, n)
    fired = rng.integers(0, 4, n)
    for may_fire in (False, True):
        s, v2, f2 = D.dif_step(x, v, vth, fired, 3, may_fire)
        vv, ff, ss, h = v.copy(), fired.copy(), np.zeros(n), np.zeros(n)
        cnt = KT.dif_step(x, vv, vth, ff, 3, may_fire, ss, h)
        np.testing.assert_array_equal(ss, s)
        np.testing.assert_array_equal(vv, v2)
        np.testing.assert_array_equal(ff, f2)
        np.testing.assert_array_equal(h, v + x)
        assert cnt == s.sum()


# ---------------------------------------------------------------------------------- conversion (torch)

def _ref():
    require_torch()
    from tools.reference import csdformer as R
    return R


def _model(R, seed, cfg=SMALL, train_steps=0):
    import torch
    torch.manual_seed(seed)
    m = R.build_model(**cfg)
    R.randomize_bn(m, seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.poisson(torch.full((4, cfg["in_channels"], cfg["img_size"], cfg["img_size"]), 1.5), generator=g)
    if train_steps:
        y = torch.randint(0, cfg["num_classes"], (32,), generator=g)
        xs = torch.poisson(torch.full((32, 3, cfg["in_channels"], cfg["img_size"], cfg["img_size"]), 0.5),
                           generator=g)
        xs[torch.arange(32), :, 0, y, :] += 1.0          # a weak class-dependent row, so training moves θ
        losses = R.train_quick(m, xs, y, steps=train_steps, batch_size=16, lr=5e-3)
        assert np.isfinite(losses).all()
    else:
        R.calibrate(m, x.float())
    m.double().eval()
    return m, x.double()


def _convert(m, neuron="dif", sensor=None):
    state = {k: v.detach().cpu().numpy() for k, v in m.state_dict().items()}
    hp = arch.infer_hparams(state, dict(m.cfg))
    g, meta, unused = arch.build_graph(state, hp, T=1, sensor=sensor or (m.cfg["img_size"],) * 2, neuron=neuron)
    assert unused == []
    return g.graph(meta)


def _session(graph, precision="float64"):
    s = Session(graph, precision)
    return s


def _run(graph, frame, precision="float64", steps=None):
    """All of the clip's events at step 0, then empty steps until the network has drained."""
    s = _session(graph, precision)
    s.trace = True
    T = steps or graph.meta["T"]
    for t in range(T):
        out = s.step(frame if t == 0 else np.zeros_like(frame))
    return s, out.readout


def _compare(m, graph, x, precision="float64", steps=None):
    """-> (mismatching counts, total counts, max |logit error|) over the batch; per-layer mismatches."""
    logits, counts = m.forward_counts(x)
    bad = tot = 0
    err = 0.0
    per_layer = {}
    for b in range(len(x)):
        s, readout = _run(graph, x[b].numpy(), precision, steps)
        ref = s.reference_traces()
        for name, c in counts.items():
            snn = ref[name][0].sum(axis=0)
            ann = c[b].numpy()
            assert snn.shape == ann.shape, name
            k = int(np.count_nonzero(snn != ann))
            per_layer[name] = per_layer.get(name, 0) + k
            bad += k
            tot += ann.size
        err = max(err, float(np.abs(readout - logits[b].numpy()).max()))
    return bad, tot, err, per_layer


@pytest.mark.torch
@pytest.mark.parametrize("seed,cfg", [(0, SMALL), (1, dict(SMALL, depth=2, L=3, num_heads=4)),
                                      (2, dict(SMALL, L=8, mlp_ratio=1.5))])
def test_dif_conversion_is_exact_on_random_checkpoints(seed, cfg):
    R = _ref()
    m, x = _model(R, seed, cfg)
    graph = _convert(m, "dif")
    assert graph.meta["T"] == R.snn_steps(cfg["depth"], cfg["L"])
    bad, tot, err, per_layer = _compare(m, graph, x[:2])
    assert bad == 0, per_layer
    assert err < 1e-9
    # the levels are actually used (not a silent network)
    _, counts = m.forward_counts(x[:2])
    assert all(float(c.max()) > 0 for c in counts.values())


@pytest.mark.torch
def test_dif_conversion_is_exact_after_training():
    R = _ref()
    m, x = _model(R, 3, SMALL, train_steps=12)
    bad, tot, err, per_layer = _compare(m, _convert(m, "dif"), x[:2])
    assert bad == 0, per_layer
    assert err < 1e-9


@pytest.mark.torch
def test_plain_if_deviates(capsys):
    """Same graph without the delay: counts depend on spike timing. Reported, and must be worse."""
    R = _ref()
    m, x = _model(R, 0, SMALL)
    bad, tot, err, per_layer = _compare(m, _convert(m, "if"), x[:2])
    with capsys.disabled():
        print(f"\nplain IF (T={R.snn_steps(1, 4)}): {bad}/{tot} = {bad / tot:.1%} counts differ, "
              f"max logit error {err:.3g}")
    assert bad > 0 and err > 1e-6


@pytest.mark.torch
def test_events_input_with_binning_and_float32():
    """Events on a 32x32 sensor binned 2x2 onto the 16x16 grid give the ANN's logits (float64), and the
    float32 fast mode agrees on the class."""
    import torch
    R = _ref()
    from evrt.events import make_events
    m, _ = _model(R, 4, SMALL)
    graph = _convert(m, "dif", sensor=(32, 32))
    rng = np.random.default_rng(4)
    n = 900
    ev = make_events(np.sort(rng.integers(0, 10_000, n)), rng.integers(0, 32, n), rng.integers(0, 32, n),
                     rng.integers(0, 2, n))
    frame = np.zeros((1, 2, 32, 32))
    np.add.at(frame, (0, ev["on"].astype(int), ev["y"].astype(int), ev["x"].astype(int)), 1)
    x = R.model_input(torch.from_numpy(frame), 16).double()
    logits = m(x)[0].detach().numpy()
    for precision, tol in (("float64", 1e-9), ("float32", 1e-3)):
        s = _session(graph, precision)
        empty = ev[:0]
        for t in range(graph.meta["T"]):
            out = s.step(ev if t == 0 else empty)
        assert np.abs(out.readout - logits).max() < tol * max(1.0, np.abs(logits).max())


@pytest.mark.torch
def test_counters_match_independent_count():
    """ACs per op from the runtime = a count made here from the traced spike trains."""
    import torch
    import torch.nn.functional as F
    R = _ref()
    m, x = _model(R, 5, SMALL)
    graph = _convert(m, "dif")
    frame = x[0].numpy()
    s, _ = _run(graph, frame)
    rows = {r["name"]: r for r in s.report().rows()}
    tr = {name: np.stack([sp for sp, _ in steps]) for name, steps in s.traces.items()}   # runtime layout
    heads, (n, d) = SMALL["num_heads"], tr["blocks.0.attn.q_act"].shape[1:]
    ops = {op.name: op for op in graph.ops}

    def conv_acs(spk, cout):   # in-bounds (input count, output) pairs of a 3x3/pad-1 conv, weighted by count
        t = torch.from_numpy(np.moveaxis(spk, -1, -3).copy())
        return int(F.conv2d(t, torch.ones(cout, t.shape[1], 3, 3, dtype=t.dtype), padding=1).sum())

    c1 = ops["patch_embed.conv1"].params["w"].shape[-1]
    assert rows["patch_embed.conv1"]["acs"] == conv_acs(frame.transpose(1, 2, 0)[None], c1)
    pooled = []
    A = np.zeros(tr["patch_embed.act1"].shape[1:])
    for sp in tr["patch_embed.act1"]:
        out, A = D.maxpool_delta(sp, A, 3, 2, 1)
        pooled.append(out)
    assert rows["patch_embed.conv2"]["acs"] == conv_acs(np.stack(pooled), SMALL["embed_dim"])
    A = np.zeros(tr["patch_embed.act2"].shape[1:])
    tokens = []
    for sp in tr["patch_embed.act2"]:
        out, A = D.maxpool_delta(sp, A, 3, 2, 1)
        tokens.append(out.reshape(n, d))
    tokens = np.stack(tokens)
    p = "blocks.0"
    hid = ops[f"{p}.mlp.fc1_linear"].params["w"].shape[1]
    lin_in = {f"{p}.attn.q_linear": (tokens, d), f"{p}.attn.proj_linear": (tr[f"{p}.attn.out_act"], d),
              f"{p}.mlp.fc1_linear": (tr[f"{p}.act1"], hid), f"{p}.mlp.fc2_linear": (tr[f"{p}.mlp.fc1_act"], d)}
    for name, (spk, cout) in lin_in.items():
        assert rows[name]["acs"] == int(spk.sum()) * cout, name
    assert rows[f"{p}.skip1"]["acs"] == int(tokens.sum())
    assert rows[f"{p}.skip2"]["acs"] == int(tr[f"{p}.act1"].sum())

    def nz_products(a_seq, b_seq, contract):   # non-zero terms a_t·B_t + A_{t-1}·b_t, counted from the trains
        total = 0
        A, B = np.zeros_like(a_seq[0]), np.zeros_like(b_seq[0])
        for a, b in zip(a_seq, b_seq):
            B = B + b
            total += contract(a != 0, B != 0) + contract(A != 0, b != 0)
            A = A + a
        return total

    split = lambda t: t.reshape(n, heads, d // heads).transpose(1, 0, 2).astype(np.int64)   # noqa: E731
    qk = lambda a, b: int((split(a) @ split(b).transpose(0, 2, 1)).sum())                  # noqa: E731
    av = lambda a, v: int((a.astype(np.int64) @ split(v)).sum())                           # noqa: E731
    assert rows[f"{p}.attn.scores"]["acs"] == nz_products(tr[f"{p}.attn.q_act"], tr[f"{p}.attn.k_act"], qk)
    assert rows[f"{p}.attn.av"]["acs"] == nz_products(tr[f"{p}.attn.attn_act"], tr[f"{p}.attn.v_act"], av)
    assert rows["head"]["acs"] == int(tr[f"{p}.act2"].sum()) * SMALL["num_classes"]
    assert rows["head"]["macs"] == 0 and sum(r["macs"] for r in rows.values()) == 0   # fully spike-driven
    for name in tr:   # spikes per neuron layer
        assert rows[name]["spikes"] == int(tr[name].sum())


@pytest.mark.torch
def test_checkpoint_container_and_save_load(tmp_path):
    import argparse
    import torch
    R = _ref()
    m, x = _model(R, 6, SMALL)
    path = tmp_path / "csd.pth"
    R.save_checkpoint(m, path, argparse.Namespace(epochs=0))
    ck = torch.load(path, weights_only=False)
    assert set(ck) == {"model", "args"} and ck["args"].num_heads == SMALL["num_heads"] and ck["args"].T == 1
    assert "patch_embed.act1.theta" in ck["model"] and int(ck["model"]["patch_embed.act1.L"]) == SMALL["L"]
    state = {k: v.numpy() for k, v in ck["model"].items()}
    hp = arch.infer_hparams(state, vars(ck["args"]))
    g, meta, _ = arch.build_graph(state, hp, T=int(ck["args"].T), sensor=(16, 16))
    graph = g.graph(meta)
    graph.save(tmp_path / "csd.evrt")
    loaded = Graph.load(tmp_path / "csd.evrt")
    frame = x[0].numpy()
    np.testing.assert_array_equal(_run(graph, frame)[1], _run(loaded, frame)[1])
