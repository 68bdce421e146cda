"""Exporter parity: small models built in sinabs, snnTorch and Norse, exported to NIR by the tool itself,
imported by evrt with the tool's --nir-profile, and run side by side on the same random spike input.
Every neuron layer's spikes are compared at every step: float64 identical (the references run in
float64 too), float32 against the float32 reference >= 99.9 %."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import require
from evrt.engine import Session
from evrt.nir import import_nir

T = 30


def _require(name):
    return require(name, "the nir-dev extra: docs/NIR.md")


def _cast_inputs(torch, net):
    """Spike functions of these tools return float32 spikes; cast them back for the float64 run."""
    for m in net.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            m.register_forward_pre_hook(lambda m, a: tuple(v.double() for v in a))


def _hook(net, types, rec):
    for name, m in net.named_modules():
        if isinstance(m, types):
            m.register_forward_hook(lambda mod, i, o, name=name: rec.setdefault(name, []).append(
                np.asarray((o[0] if isinstance(o, tuple) else o).detach().double().numpy()).copy()))


def _evrt_layers(graph, xs, precision):
    s = Session(import_nir(graph["graph"], profile=graph["profile"]), precision=precision, reset_every=None)
    s.trace = True
    for x in xs:
        s.step(x)
    return {k: v[0] for k, v in s.reference_traces().items()}


def _compare(ref: dict, mine: dict, exact: bool):
    assert ref and set(ref) <= set(mine), (sorted(ref), sorted(mine))
    for name, r in ref.items():
        m = mine[name].reshape(r.shape)
        agree = float((m == r).mean())
        assert r.sum() > 0, f"layer {name} never fired: the test would not test it"
        if exact:
            assert agree == 1.0, f"{name}: {agree:.5f} of spikes agree in float64"
        else:
            assert agree >= 0.999, f"{name}: {agree:.5f} of spikes agree in float32"


def _run_both(build, xs_fn):
    """build(torch, dtype) -> (net, nir_graph, profile, step_fn, neuron_types)."""
    torch = _require("torch")
    _require("nir")
    for precision, dtype in (("float64", torch.float64), ("float32", torch.float32)):
        torch.manual_seed(0)
        net, graph, profile, step, types = build(torch)
        xs = xs_fn(torch)
        if dtype == torch.float64:
            net = net.double()
            _cast_inputs(torch, net)
        rec = {}
        _hook(net, types, rec)
        default = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with torch.no_grad():
                step(net, [x.to(dtype) for x in xs])
        finally:
            torch.set_default_dtype(default)
        ref = {k: np.stack(v).reshape(len(xs), -1) for k, v in rec.items()}
        mine = _evrt_layers({"graph": graph, "profile": profile}, [x.numpy().reshape(x.shape[1:]) for x in xs],
                            precision)
        _compare(ref, {k: v.reshape(len(xs), -1) for k, v in mine.items()}, exact=precision == "float64")


def test_sinabs_conv_iaf_pool_lif():
    _require("sinabs")
    from sinabs.nir import to_nir
    import sinabs.layers as sl

    def build(torch):
        nn = torch.nn
        net = nn.Sequential(nn.Conv2d(2, 4, 3, stride=1, padding=1, bias=False), sl.IAFSqueeze(batch_size=1, min_v_mem=-1.0),
                            sl.SumPool2d(2), nn.Conv2d(4, 6, 3, stride=2, padding=1), sl.IAFSqueeze(batch_size=1, min_v_mem=-1.0),
                            nn.Flatten(), nn.Linear(6 * 3 * 3, 10), sl.LIFSqueeze(tau_mem=torch.full((10,), 8.0), spike_threshold=torch.full((10,), 1.0),
                                                                  norm_input=False, batch_size=1))
        with torch.no_grad():
            for m in net:
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    m.weight.mul_(3.0)
        g = to_nir(net, torch.zeros(1, 2, 10, 10))
        for m in net.modules():
            if hasattr(m, "reset_states"):
                m.reset_states()

        def step(net, xs):
            net(torch.cat(xs))        # squeeze layers take (batch * T, ...)
        return net, g, "sinabs", step, (sl.IAFSqueeze, sl.LIFSqueeze)

    _run_both(build, lambda torch: [torch.poisson(torch.full((1, 2, 10, 10), 0.4)) for _ in range(T)])


def test_sinabs_dilated_anisotropic_conv():
    """Conv2d with dilation and unequal stride/padding per axis (the general conv kernel), grouped, with
    bias, exported by sinabs: spikes of both IAF layers at every step."""
    _require("sinabs")
    from sinabs.nir import to_nir
    import sinabs.layers as sl

    def build(torch):
        nn = torch.nn
        net = nn.Sequential(nn.Conv2d(2, 4, 3, stride=(1, 2), padding=(2, 1), dilation=(2, 1), bias=False),
                            sl.IAFSqueeze(batch_size=1, min_v_mem=-1.0),
                            nn.Conv2d(4, 6, (2, 3), stride=(2, 1), padding=(0, 3), dilation=(1, 3), groups=2),
                            sl.IAFSqueeze(batch_size=1, min_v_mem=-1.0))
        with torch.no_grad():
            for m in net:
                if isinstance(m, nn.Conv2d):
                    m.weight.mul_(3.0)
        g = to_nir(net, torch.zeros(1, 2, 11, 12))
        for m in net.modules():
            if hasattr(m, "reset_states"):
                m.reset_states()

        def step(net, xs):
            net(torch.cat(xs))
        return net, g, "sinabs", step, (sl.IAFSqueeze,)

    _run_both(build, lambda torch: [torch.poisson(torch.full((1, 2, 11, 12), 0.4)) for _ in range(T)])


def test_snntorch_leaky_synaptic():
    snn = _require("snntorch")
    from snntorch.export_nir import export_to_nir
    from snntorch import utils as su

    def build(torch):
        nn = torch.nn
        net = nn.Sequential(nn.Linear(12, 20), snn.Leaky(beta=torch.rand(20) * 0.5 + 0.45, init_hidden=True,
                                                          threshold=torch.rand(20) * 0.5 + 0.5),
                            nn.Linear(20, 6), snn.Synaptic(alpha=torch.rand(6) * 0.5 + 0.3, beta=torch.rand(6) * 0.3 + 0.6,
                                                           init_hidden=True, threshold=torch.rand(6) * 0.5 + 0.5))
        g = export_to_nir(net, torch.zeros(1, 12), ignore_dims=[0])

        def step(net, xs):
            su.reset(net)
            for x in xs:
                net(x)
        return net, g, "snntorch", step, (snn.Leaky, snn.Synaptic)

    _run_both(build, lambda torch: [(torch.rand(1, 12) < 0.3).float() for _ in range(T)])


def test_norse_lifbox_lif_iaf():
    _require("norse")
    import norse.torch as nt
    from norse.torch.utils.export_nir import to_nir

    def build(torch):
        nn = torch.nn
        net = nt.SequentialState(
            nn.Linear(12, 20),
            nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.rand(20) * 100 + 50, v_th=torch.rand(20) * 0.2 + 0.1,
                                              v_leak=torch.zeros(20), v_reset=torch.zeros(20))),
            nn.Linear(20, 8),
            nt.LIFCell(nt.LIFParameters(tau_mem_inv=torch.rand(8) * 100 + 50, tau_syn_inv=torch.rand(8) * 100 + 100,
                                        v_th=torch.rand(8) * 0.2 + 0.1, v_leak=torch.zeros(8), v_reset=torch.zeros(8))),
            nn.Linear(8, 5),
            nt.IAFCell(nt.IAFParameters(v_th=torch.full((5,), 0.3), v_reset=torch.zeros(5))))
        g = to_nir(net, torch.zeros(1, 12))

        def step(net, xs):
            state = None
            for x in xs:
                _, state = net(x, state)
        return net, g, "norse", step, (nt.LIFBoxCell, nt.LIFCell, nt.IAFCell)

    _run_both(build, lambda torch: [(torch.rand(1, 12) < 0.5).float() for _ in range(T)])


@pytest.mark.parametrize("stride,padding,dilation", [(2, 0, 1), (1, 3, 2), (2, 2, 3), (1, "same", 2)])
def test_conv1d_sequence_against_torch_and_sinabs_neurons(stride, padding, dilation):
    """NIR Conv1d (built with the nir package: the exporters above do not write it) with stride, zero
    padding and dilation against torch's conv1d and sinabs' IAF, through a Flatten of the (C, L) map into
    an Affine: float64 identical, float32 >= 99.9 %."""
    torch = _require("torch")
    nir = _require("nir")
    sl = _require("sinabs").layers
    rng = np.random.default_rng(4)
    length, k = 20, 3
    p = dilation * (k - 1) // 2 if padding == "same" else padding
    lo = (length + 2 * p - dilation * (k - 1) - 1) // stride + 1
    w1, w2 = rng.normal(0, 0.8, (4, 3, k)), rng.normal(0, 0.5, (5, 4 * lo))
    g = nir.NIRGraph(type_check=False, nodes={
        "in": nir.Input(np.array([3, length])),
        "c": nir.Conv1d(input_shape=length, weight=w1, stride=stride, padding=padding, dilation=dilation, groups=1,
                        bias=np.full(4, 0.1)),
        "s1": nir.IF(r=np.ones((4, lo)), v_threshold=np.ones((4, lo))),
        "f": nir.Flatten({"input": np.array([4, lo])}, start_dim=0),
        "fc": nir.Affine(weight=w2, bias=np.zeros(5)),
        "s2": nir.IF(r=np.ones(5), v_threshold=np.ones(5)),
        "out": nir.Output(np.array([5]))},
        edges=[("in", "c"), ("c", "s1"), ("s1", "f"), ("f", "fc"), ("fc", "s2"), ("s2", "out")])
    xs = [(rng.random((3, length)) < 0.4).astype(np.float64) for _ in range(T)]
    for precision, dt in (("float64", torch.float64), ("float32", torch.float32)):
        x = torch.as_tensor(np.stack(xs)).to(dt)
        with torch.no_grad():
            n1 = sl.IAFSqueeze(batch_size=1, min_v_mem=-1.0).to(dt)
            n2 = sl.IAFSqueeze(batch_size=1, min_v_mem=-1.0).to(dt)
            y = torch.nn.functional.conv1d(x, torch.as_tensor(w1).to(dt), torch.full((4,), 0.1, dtype=dt),
                                           stride=stride, padding=p, dilation=dilation)
            s1 = n1(y).to(dt)
            s2 = n2(s1.reshape(T, -1) @ torch.as_tensor(w2).to(dt).T).double()
        mine = _evrt_layers({"graph": g, "profile": "sinabs"}, xs, precision)
        _compare({"s1": s1.double().numpy().reshape(T, -1), "s2": s2.numpy().reshape(T, -1)},
                 {k: v.reshape(T, -1) for k, v in mine.items()}, exact=precision == "float64")
