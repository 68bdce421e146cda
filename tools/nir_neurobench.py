"""evrt's counted operations beside NeuroBench's synaptic-operation metrics, per layer, on the NIR
paper's N-MNIST CNN and the shipped real N-MNIST recordings.

    python tools/nir_neurobench.py --limit 10 --json docs/nir/neurobench.json     (needs the nir-dev extra)

NeuroBench side: the sinabs model (sinabs.nir.from_nir) run by NeuroBench's `Benchmark` with its
`SynapticOperations` metric (totals), and NeuroBench's own per-layer counter
(`single_layer_MACs`) on each Conv2d/Linear layer's recorded input (per layer). evrt side: the
imported model's per-layer counters, and NeuroBench's definition applied to evrt's own per-step
layer inputs (one operation per non-zero input and reachable output; no weight is zero in this
model), which must equal NeuroBench's number wherever the spikes agree.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

MODEL = ROOT / "models" / "nir-nmnist-cnn" / "cnn_sinabs.nir"
DATA = ROOT / "examples" / "data" / "nmnist" / "Test"
SYN = ("conv2d", "linear")


def neurobench_side(graph, frames):
    """-> ({layer: (effective ops, spiking?, dense ops)}, Benchmark SynapticOperations dict) for one sample."""
    import torch
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.utils.layers.macs import single_layer_MACs
    from neurobench.metrics.workload import SynapticOperations
    from neurobench.models import TorchModel
    from sinabs.nir import from_nir

    net = from_nir(graph, batch_size=1).double()   # float64 like the evrt side: the same spikes, ties aside
    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):   # sinabs' spikes come out float32
            m.register_forward_pre_hook(lambda mod, a: tuple(v.double() for v in a))

    class Clip(torch.nn.Module):
        """One sample (1, T, 2, H, W) -> summed output (1, 10): NeuroBench counts per sample."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            for m in self.inner.modules():
                if hasattr(m, "reset_states"):
                    m.reset_states()
            out = self.inner(x[0])
            out = out[0] if isinstance(out, tuple) else out
            return out.reshape(x.shape[1], -1).sum(0, keepdim=True)

    model = Clip(net)
    inputs = {}
    # setdefault: NeuroBench deep-copies each layer (hooks included) to count, so only the first call
    # of a hook is the model's own forward pass
    def keep(name):
        def hook(mod, i, o):
            if name not in inputs:
                inputs[name] = (mod, i[0].detach().clone())
        return hook
    hooks = [m.register_forward_hook(keep(name))
             for name, m in net.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    x = torch.as_tensor(np.asarray(frames), dtype=torch.float64)[None]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(1, dtype=torch.long)),
                                         batch_size=1)
    bench = Benchmark(TorchModel(model), loader, [], [lambda out: out.argmax(-1)], [[], [SynapticOperations]])
    totals = bench.run(verbose=False)
    for h in hooks:
        h.remove()
    per = {}
    for name, (mod, inp) in inputs.items():
        ops, spiking = single_layer_MACs(inp, mod)
        dense, _ = single_layer_MACs(inp, mod, total=True)
        per[name] = (int(ops), bool(spiking), int(dense))
    return per, totals["SynapticOperations"]


def evrt_side(sess, ev):
    """-> ({layer: {acs, macs, dense, nb_def}}) for one sample: evrt's counters and NeuroBench's
    definition computed from evrt's own per-step inputs."""
    from evrt.kernels import dense as D
    from evrt.kernels.nir import sumpool2d_np
    from evrt.nir.run import time_window_frames

    sess.trace = True
    sess.reset_counters()
    res = sess.run_clip(ev)
    rows = {r["name"]: r for r in sess.report().rows()}
    spikes = {k: [s for s, _ in v] for k, v in sess.traces.items()}
    fw = sess.meta["framing"]["time_window_us"]
    w, h = sess.meta["frame"]["sensor_size"]
    values = {"input": [f.transpose(1, 2, 0) for f in time_window_frames(ev, fw, (w, h))]}
    out = {}
    for op in sess.graph.ops:
        if op.type == "nir_neuron":
            values[op.name] = spikes[op.name]
        elif op.type == "sumpool":
            (kh, kw), st, pd = op.attrs["k"], op.attrs["stride"], op.attrs["pad"]
            values[op.name] = [sumpool2d_np(x, kh, kw, *st, *pd)[0] for x in values[op.inputs[0]]]
        elif op.type == "reshape":
            values[op.name] = [x.reshape(-1) for x in values[op.inputs[0]]]
        if op.type in SYN:
            xs = values[op.inputs[0]]
            if op.type == "conv2d":
                kh, kw, _, cout = op.params["w"].shape
                nb = sum(D.conv2d_counts(x, kh, kw, op.attrs["stride"], op.attrs["pad"], op.attrs["groups"], cout)[0]
                         for x in xs)
            else:
                nb = sum(D.linear_counts(x.reshape(1, -1), op.params["w"].shape[1])[0] for x in xs)
            r = rows[op.name]
            out[op.name] = {"acs": r["acs"], "macs": r["macs"], "dense": r["dense_ops"], "nb_def": int(nb),
                            "zero_weights": int((op.params["w"] == 0).sum())}
        elif op.type == "sumpool":
            out[op.name] = {"acs": rows[op.name]["acs"], "macs": 0, "dense": rows[op.name]["dense_ops"], "nb_def": None}
    sess.trace = False
    return out, res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=10)
    ap.add_argument("--json", help="write the record here")
    args = ap.parse_args(argv)

    import nir
    from nir_reference import tonic_frames
    from evrt.engine import Session
    from evrt.neurobench import neurobench_metrics
    from evrt.nir import import_nir
    from nir_reference import nmnist_recordings, read_events
    from evrt.progress import track

    graph = nir.read(str(MODEL))
    eg = import_nir(MODEL, profile="sinabs", time_window_us=1000)
    sess = Session(eg, precision="float64")
    items = nmnist_recordings(DATA)[: args.limit]
    layers, nb_tot = {}, {"Effective_ACs": 0.0, "Effective_MACs": 0.0, "Dense": 0.0}
    for path, _ in track(items, desc="NeuroBench", enabled=True):
        nb, tot = neurobench_side(graph, tonic_frames(path))
        ev, _ = evrt_side(sess, read_events(path))
        for k in nb_tot:
            nb_tot[k] += tot[k]
        for name, e in ev.items():
            row = layers.setdefault(name, {"nb_ac": 0, "nb_mac": 0, "nb_dense": 0, "evrt_acs": 0, "evrt_macs": 0,
                                           "evrt_dense": 0, "nb_def_on_evrt": 0})
            row["evrt_acs"] += e["acs"]
            row["evrt_macs"] += e["macs"]
            row["evrt_dense"] += e["dense"]
            if name in nb:
                ops, spiking, dense = nb[name]
                row["nb_ac" if spiking else "nb_mac"] += ops
                row["nb_dense"] += dense
                row["nb_def_on_evrt"] += e["nb_def"]
            else:
                row["nb_def_on_evrt"] = None
    n = len(items)
    rec = {"model": str(MODEL.relative_to(ROOT)), "recordings": n,
           "per_sample": {k: {kk: (v / n if v is not None else None) for kk, v in row.items()} for k, row in layers.items()},
           "neurobench_totals_per_sample": {k: v / n for k, v in nb_tot.items()}}
    sess.reset_counters()
    for path, _ in items:
        sess.run_clip(read_events(path))
    rec["evrt_neurobench_names_per_sample"] = neurobench_metrics(sess.report(), eg, "float64", n)
    print(json.dumps(rec, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rec, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
