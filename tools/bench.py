"""Benchmarks: evrt (float32 fast mode) against the dense PyTorch reference, side by side, in one run.

For every zoo model present (models/<name>/model.evrt) and for realistic random checkpoints of the full
reference DVS configurations (Spikformer-DVS 2-256 T16, SDT gesture 2-256 T16, SpikingResformer-dvsg T16
3x64x64), on the same event streams (the shipped synthetic DVS Gesture recordings and
tests/parity.py:random_gesture_events), at the same thread count, it measures:

- time per sample (one T-step clip), x real time on the recordings, per-step latency p50/p99 when
  streaming (Session.step on stream windows / the reference fed one step at a time with state kept),
  peak RSS (each side in its own subprocess), JIT warm-up and model load time (reported separately);
- ACs/MACs per sample measured by evrt, the dense MACs of the same model, the paper-style estimate
  (input firing rate x dense ops) and the 45 nm energy of each (0.9 pJ/AC, 4.6 pJ/MAC);
- cost against input event rate (1 k -> 1 M events/s, fixed clip duration): CSV + PNG.

It writes docs/BENCHMARKS.md (tables, plot, machine, command), docs/bench/*.csv and docs/bench/*.png.

    python tools/bench.py [--threads 1 2] [--quick] [--out docs/BENCHMARKS.md] [--compare OLD_RESULTS_JSON]

It also measures this machine's best GEMM rate, evrt's event-conv rate and the core's add throughput,
and from them the event accumulate rate each model would need to be 5x faster than the reference at
its measured firing rates; with --compare, how far the timings are from an earlier run.

Random checkpoints and folded graphs are cached under out/bench/ (rebuilt with --rebuild).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from numba import njit

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "out" / "bench"
DATA = ROOT / "examples" / "data" / "dvsgesture_synth"
RATES = [1_000, 4_000, 16_000, 63_000, 250_000, 1_000_000]   # events/s, 6 points
CLIP_US = 1_000_000          # clip duration of the rate sweep
SENSOR = (128, 128)

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")

# The full reference DVS configurations (spec §3-§5) with realistic random weights (tests/parity.py's recipe).
REF_MODELS = {
    "spikformer-dvs": dict(title="Spikformer-DVS 2-256, T=16, 128x128", arch="spikformer", ext=".pth",
                           convert=dict(sensor=SENSOR), spec=dict(), neg=0.0),
    "sdt-gesture": dict(title="SDT gesture 2-256, T=16, 128x128", arch="sdt", ext=".pth.tar",
                        convert=dict(sensor=SENSOR), spec=dict(), neg=0.0),
    "resformer-dvsg": dict(title="SpikingResformer-dvsg, T=16, 3x64x64", arch="spikingresformer", ext=".pth",
                           convert=dict(sensor=SENSOR, timesteps=16, input_size=64),
                           spec=dict(resize="antialias", sum_channel=True), neg=0.1),
}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--quick", action="store_true", help="fewer samples/repeats (a few minutes)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    ap.add_argument("--models", nargs="*", default=None, help="subset of model names")
    ap.add_argument("--job-timeout", type=float, default=240.0, help="seconds per (model, side, threads) job")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached random checkpoints")
    ap.add_argument("--compare", metavar="RESULTS_JSON",
                    help="an earlier run's docs/bench/results.json: the report adds how far this run's timings "
                         "are from it (reproducibility)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)   # JSON job: run one side in this process
    return ap.parse_args(argv)


# ------------------------------------------------------------------------------------------- models

def _builders(name):
    import argparse as ap_
    from tools.reference.checkpoints import (save_sdt_checkpoint, save_spikformer_checkpoint,
                                             save_spikingresformer_checkpoint)
    from tools.reference.sdt import SDT
    from tools.reference.spikformer import Spikformer
    from tools.reference.spikingresformer import SpikingResformer
    if name == "spikformer-dvs":
        return (lambda: Spikformer(T=16),
                lambda m, p: save_spikformer_checkpoint(m, p, ap_.Namespace(T=16, num_heads=16)))
    if name == "sdt-gesture":
        return (lambda: SDT(T=16),
                lambda m, p: save_sdt_checkpoint(m, p, ap_.Namespace(time_steps=16, num_heads=8,
                                                                     pooling_stat="0111")))
    if name == "resformer-dvsg":
        return (lambda: SpikingResformer("dvsg", T=16, img_size=64),
                lambda m, p: save_spikingresformer_checkpoint(m, p))
    raise KeyError(name)


def calib_samples(n=2):
    """Calibration clips: training-split samples of the synthetic recordings (the bench uses the test split)."""
    from evrt.datasets.dvsgesture import DVSGesture
    ds = DVSGesture(DATA, "train")
    return [ds[i].events for i in range(0, len(ds), max(1, len(ds) // n))][:n]


def prepare_reference(name, rebuild=False):
    """Random checkpoint of the full configuration, calibrated to fire (spec §10 statistics), and its
    folded graph; cached under out/bench/."""
    cfg = REF_MODELS[name]
    ckpt = CACHE / f"{name}{cfg['ext']}"
    gpath = CACHE / f"{name}.evrt"
    if ckpt.exists() and gpath.exists() and not rebuild:
        return ckpt, gpath
    import torch
    from evrt.archs import convert
    from evrt.checkpoint import load_checkpoint
    from evrt.framing import FrameSpec
    from tools.reference.checkpoints import calibrate_on_events
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    build, save = _builders(name)
    model = build()
    calibrate_on_events(model, FrameSpec(T=16, sensor_size=SENSOR, **cfg["spec"]), calib_samples(), cfg["neg"])
    save(model, ckpt)
    graph = convert(load_checkpoint(ckpt), cfg["arch"], **cfg["convert"])
    graph.save(gpath)
    return ckpt, gpath


def _hp_text(card):
    hp = card.get("hyper_parameters") or {}
    keys = ("embed", "heads", "depth", "planes", "T")
    return ", ".join(f"{k}={hp[k]}" for k in keys if k in hp) or "?"


def zoo_models():
    out = {}
    for d in sorted((ROOT / "models").glob("*/")):
        g = d / "model.evrt"
        if g.is_file():
            card = {}
            if (d / "card.json").is_file():
                try:
                    card = json.loads((d / "card.json").read_text())
                except ValueError:
                    pass
            if card.get("dataset", "dvsgesture") != "dvsgesture":   # benched on the synthetic gesture streams
                continue
            ck = d / card["checkpoint"] if card.get("checkpoint") else None
            torch_ok = bool(ck and ck.is_file() and card.get("family") not in (None, "csdformer")
                            and card.get("hyper_parameters") and (card.get("framing") or {}).get("frame_spec"))
            out[f"zoo:{d.name}"] = dict(graph=str(g), card=card, ckpt=str(ck) if torch_ok else None, torch=torch_ok,
                                        title=f"{card.get('title') or d.name} (zoo, {card.get('family', '?')}, "
                                              f"hp {_hp_text(card)}, trained on synthetic gestures)")
    return out


# ------------------------------------------------------------------------------------------ streams

def bench_samples(n):
    """The test-split samples of the synthetic recordings (labelled gestures), and one whole recording."""
    from evrt.datasets.dvsgesture import DVSGesture
    ds = DVSGesture(DATA, "test")
    idx = list(range(0, len(ds), max(1, len(ds) // n)))[:n]
    return [ds[i].events for i in idx]


def recording(seconds):
    """The first `seconds` of one test recording (as a live stream would deliver it)."""
    from evrt.formats.aedat31 import read_aedat31
    name = (DATA / "trials_to_test.txt").read_text().split()[0]
    ev = read_aedat31(DATA / name)
    t0 = int(ev["t"][0])
    return ev[ev["t"] < t0 + int(seconds * 1e6)]


def sweep_events(rate, seed=7):
    from tests.parity import random_gesture_events
    n = max(16, int(rate * CLIP_US / 1e6))
    return random_gesture_events(n, seed, SENSOR, duration_us=CLIP_US)


# ------------------------------------------------------------------------------------------- worker

def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    return (xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])) if n else None


def _pct(xs, p):
    import numpy as np
    return float(np.percentile(np.asarray(xs), p)) if len(xs) else None


def _maxrss_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(job):
    """One side (evrt or torch) of one model at one thread count, in a fresh process. Prints JSON."""
    threads = int(job["threads"])
    res = dict(side=job["side"], model=job["model"], threads=threads, rss_start_mb=None)
    samples = bench_samples(job["n_samples"])
    rec = recording(job["stream_s"])
    sweep = {r: sweep_events(r) for r in job["rates"]}
    if job["side"] == "evrt":
        import numba
        numba.set_num_threads(threads)
        res["rss_start_mb"] = _maxrss_mb()
        run_evrt(job, res, samples, rec, sweep)
    else:
        import torch
        torch.set_num_threads(threads)
        res["rss_start_mb"] = _maxrss_mb()
        run_torch(job, res, samples, rec, sweep)
    res["peak_rss_mb"] = _maxrss_mb()
    res["sample_events"] = [int(len(s)) for s in samples]
    res["sample_duration_s"] = [float((int(s["t"][-1]) - int(s["t"][0])) / 1e6) for s in samples]
    print("@@RESULT@@" + json.dumps(res))


def _time_samples(fn, samples, reps, cpu=None):
    """Median over repeats of each sample's wall time; per-sample median CPU times go into `cpu`."""
    out = []
    for s in samples:
        ts, cs = [], []
        for _ in range(reps):
            c0 = time.process_time()
            t0 = time.perf_counter()
            fn(s)
            ts.append(time.perf_counter() - t0)
            cs.append(time.process_time() - c0)
        out.append(_median(ts))
        if cpu is not None:
            cpu.append(_median(cs))
    return out


def machine_rates():
    """Per-operation rates of this machine, with this process's thread count:
    - gemm_mac_per_s: the best float32 GEMM rate of NumPy's BLAS over a few conv-like and square
      shapes (the best a dense path does per MAC);
    - event_acc_per_s: evrt's own event conv (scatter forced; 3x3, 128 -> 256 channels at 32x32, half
      the inputs spiking), in accumulates per second;
    - add_peak_acc_per_s: the core's add throughput with everything in L1 (eight weight rows summed
      into one output row, repeatedly): about the most an event path that loads every weight it adds
      can reach."""
    import numpy as np
    import evrt.kernels as K
    rng = np.random.default_rng(0)

    def best(fn, n=7):
        fn()
        t = float("inf")
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            t = min(t, time.perf_counter() - t0)
        return t

    gemm = 0.0
    for m, k, n in ((1024, 1024, 1024), (4096, 576, 128), (1024, 1152, 256), (256, 2304, 512)):
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        c = np.empty((m, n), np.float32)
        gemm = max(gemm, m * k * n / best(lambda: np.matmul(a, b, out=c)))
    x = (rng.random((32, 32, 128)) < 0.5).astype(np.float32)
    w = rng.standard_normal((3, 3, 128, 256)).astype(np.float32)
    bias = np.zeros(256, np.float32)
    out = np.empty((32, 32, 256), np.float32)
    pairs = K.conv2d_scatter(x, w, bias, 1, 1, 1, out, dense_above=2.0)[0]
    event = pairs / best(lambda: K.conv2d_scatter(x, w, bias, 1, 1, 1, out, dense_above=2.0))
    rows = rng.standard_normal((8, 256)).astype(np.float32)
    acc = np.zeros(256, np.float32)
    reps = 20000
    peak = reps * rows.size / best(lambda: _l1_add_loop(rows, acc, reps))
    return dict(gemm_mac_per_s=gemm, event_acc_per_s=event, add_peak_acc_per_s=peak)


@njit(cache=True)
def _l1_add_loop(rows, acc, reps):
    for _ in range(reps):
        for j in range(acc.size):
            acc[j] += (((rows[0, j] + rows[1, j]) + (rows[2, j] + rows[3, j]))
                       + ((rows[4, j] + rows[5, j]) + (rows[6, j] + rows[7, j])))


def synaptic_time(r, acc_rate):
    """Synaptic time of one sample if each synaptic layer ran the faster of an event path at
    `acc_rate` accumulates/s (its counted ACs + MACs) and a dense path at the best GEMM rate (its dense
    MACs)."""
    g = r["rates"]["gemm_mac_per_s"]
    return sum(min((l["acs"] + l["macs"]) / acc_rate, l["dense"] / g) for l in r["layers"] if l["dense"])


def rate_needed(r, budget_s):
    """The event accumulate rate at which synaptic_time() fits in budget_s (bisection in log space);
    inf when the budget is not positive."""
    if budget_s <= 0:
        return float("inf")
    lo, hi = 1e8, 1e14
    if synaptic_time(r, hi) > budget_s:
        return float("inf")
    if synaptic_time(r, lo) <= budget_s:
        return lo
    for _ in range(60):
        mid = (lo * hi) ** 0.5
        lo, hi = (lo, mid) if synaptic_time(r, mid) <= budget_s else (mid, hi)
    return hi


OP_GROUPS = {"conv2d": "synaptic (conv)", "linear": "synaptic (linear)", "events_in": "input",
             "lif": "neurons", "if": "neurons", "table_lif": "neurons", "dif": "neurons",
             "maxpool": "pooling", "maxpool_delta": "pooling"}
ATTENTION_OPS = {"ssa", "sdsa_kv", "dssa_scores", "dssa_out", "tprod_qk", "tprod_av"}
GROUP_ORDER = ("synaptic (conv)", "synaptic (linear)", "neurons", "pooling", "attention products", "input",
               "other (add, reshape, mean, mask)")


def time_by_group(r):
    """Profile seconds per sample summed by kind of op (synaptic, neurons, pooling, attention, other)."""
    out = {}
    for name, sec in r["profile"]:
        t = r["op_types"].get(name, "")
        g = OP_GROUPS.get(t, "attention products" if t in ATTENTION_OPS else "other (add, reshape, mean, mask)")
        out[g] = out.get(g, 0.0) + sec
    return out


def _framer(meta):
    """The model card's stream framing (a step every N events or every D µs); 50 ms windows if none."""
    from evrt.framing import StreamFramer
    stream = {k: int(v) for k, v in (meta.get("stream") or {}).items()
              if k in ("count", "window_us") and v is not None} or {"window_us": 50_000}
    return stream, StreamFramer(**stream)


def run_evrt(job, res, samples, rec, sweep):
    from evrt.engine import Session
    from evrt.graph import Graph
    t0 = time.perf_counter()
    graph = Graph.load(job["graph"])
    sess = Session(graph, "float32")
    res["load_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sess.run_clip(samples[0])                     # JIT: compile or load every kernel from the numba cache
    res["warmup_s"] = time.perf_counter() - t0
    res["T"] = sess.T
    # counters and the per-op profile over one pass (per sample averages); Session(profile=True) only
    # adds a perf_counter() pair per op
    ps = Session(graph, "float32", profile=True)
    for s in samples:
        ps.run_clip(s)
    n = len(samples)
    tot = ps.report().totals()
    res["counts"] = dict(acs=tot["acs"] / n, macs=tot["macs"] / n, dense_macs=tot["dense_macs"] / n,
                         energy_uj=tot["energy_pj"] / n / 1e6, dense_energy_uj=tot["dense_energy_pj"] / n / 1e6,
                         paper_uj=tot["paper_estimate_pj"] / n / 1e6, firing_rate=tot["firing_rate"])
    res["layers"] = [dict(name=r["name"], type=r["type"], rate=r["firing_rate"], input_rate=r["input_rate"],
                          acs=r["acs"] / n, macs=r["macs"] / n, dense=r["dense_ops"] / n)
                     for r in ps.report().rows()]
    if job.get("profile"):
        res["profile"] = [(k, v / n) for k, v in sorted(ps.op_seconds.items(), key=lambda kv: -kv[1])]
        res["op_types"] = {i.name: i.op.type for i in ps.impls}
        res["rates"] = machine_rates()
    del ps
    res["per_sample_cpu_s"] = []
    res["per_sample_s"] = _time_samples(sess.run_clip, samples, job["reps"], res["per_sample_cpu_s"])
    res["first_clip_s"] = res["warmup_s"]
    res["warmup_s"] = max(0.0, res["first_clip_s"] - res["per_sample_s"][0])   # first clip minus a warm one
    # streaming: continuous mode on the recording, the model card's stream framing
    stream, framer = _framer(graph.meta)
    wins = framer.push(rec) + framer.flush()
    ss = Session(graph, "float32", mode="continuous")
    lat = []
    t_all = time.perf_counter()
    for w in wins:
        t0 = time.perf_counter()
        ss.step(w)
        lat.append(time.perf_counter() - t0)
    wall = time.perf_counter() - t_all
    dur = (int(rec["t"][-1]) - int(rec["t"][0])) / 1e6
    res["stream"] = dict(framing=stream, steps=len(wins), duration_s=dur, wall_s=wall,
                         p50_ms=_pct(lat, 50) * 1e3, p99_ms=_pct(lat, 99) * 1e3, x_realtime=dur / wall)
    # event-rate sweep
    res["sweep"] = {}
    for r, ev in sweep.items():
        sess.reset_counters()
        t = _median(_time_samples(sess.run_clip, [ev], job["sweep_reps"]))
        tot = sess.report().totals()
        k = max(1, job["sweep_reps"])
        res["sweep"][str(r)] = dict(s=t, acs=tot["acs"] / k, macs=tot["macs"] / k, firing_rate=tot["firing_rate"])


def run_torch(job, res, samples, rec, sweep):
    import numpy as np
    import torch
    from evrt.framing import FrameSpec, clip_frames
    from tools.reference.checkpoints import load_state_dict
    from tools.reference.neurons import reset_states
    t0 = time.perf_counter()
    if job.get("card"):     # a zoo model: the training script's builder and the card's framing
        from tools.train import build as train_build
        card = job["card"]
        fs = dict(card["framing"]["frame_spec"])
        spec = FrameSpec(T=int(fs["T"]), sensor_size=tuple(fs["sensor_size"]), resize=fs.get("resize"),
                         sum_channel=bool(fs.get("sum_channel")))
        model = train_build(card["family"], card["hyper_parameters"])
    else:
        cfg = REF_MODELS[job["model"]]
        spec = FrameSpec(T=16, sensor_size=SENSOR, **cfg["spec"])
        model = _builders(job["model"])[0]()
    sd, _ = load_state_dict(job["ckpt"])
    model.load_state_dict(sd)
    model = model.float().eval()
    res["load_s"] = time.perf_counter() - t0
    res["T"] = spec.T

    @torch.no_grad()
    def clip(ev):
        x = torch.as_tensor(clip_frames(ev, spec, np.float32)).unsqueeze(1)
        reset_states(model)
        return model(x)

    t0 = time.perf_counter()
    clip(samples[0])
    res["warmup_s"] = time.perf_counter() - t0
    res["per_sample_cpu_s"] = []
    res["per_sample_s"] = _time_samples(clip, samples, job["reps"], res["per_sample_cpu_s"])
    res["first_clip_s"] = res["warmup_s"]
    res["warmup_s"] = max(0.0, res["first_clip_s"] - res["per_sample_s"][0])
    # streaming: the reference fed one step at a time (state kept between calls), same windows as evrt
    from evrt.graph import Graph
    meta = Graph.load(job["graph"]).meta
    stream, framer = _framer(meta)
    wins = framer.push(rec) + framer.flush()
    one = FrameSpec(T=1, sensor_size=spec.sensor_size, resize=spec.resize, sum_channel=spec.sum_channel)
    lat = []
    reset_states(model)
    t_all = time.perf_counter()
    with torch.no_grad():
        for w in wins:
            t0 = time.perf_counter()
            x = torch.as_tensor(clip_frames(w, one, np.float32)).unsqueeze(1) if len(w) else \
                torch.zeros((1, 1) + tuple(clip_frames(rec[:16], one, np.float32).shape[1:]))
            model(x)
            lat.append(time.perf_counter() - t0)
    wall = time.perf_counter() - t_all
    dur = (int(rec["t"][-1]) - int(rec["t"][0])) / 1e6
    res["stream"] = dict(framing=stream, steps=len(wins), duration_s=dur, wall_s=wall,
                         p50_ms=_pct(lat, 50) * 1e3, p99_ms=_pct(lat, 99) * 1e3, x_realtime=dur / wall)
    res["sweep"] = {str(r): dict(s=_median(_time_samples(clip, [ev], job["sweep_reps"]))) for r, ev in sweep.items()}


# ------------------------------------------------------------------------------------------ report

def _f(x, fmt="{:.1f}"):
    return "—" if x is None else fmt.format(x)


def _eng(x):
    if x is None:
        return "—"
    for unit, k in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= k:
            return f"{x / k:.2f} {unit}"
    return f"{x:.0f}"


def write_report(raw_path, out_path):
    """docs/BENCHMARKS.md + docs/bench/{timings,sweep}.csv + docs/bench/event_rate.png from results.json."""
    import csv
    data = json.loads(Path(raw_path).read_text())
    meta, models, results = data["meta"], data["models"], data["results"]
    out_path = Path(out_path)
    bdir = out_path.parent / "bench"
    timed_out = [r for r in results if r.get("timed_out")]
    results = [r for r in results if not r.get("timed_out")]
    by = {(r["model"], r["side"], r["threads"]): r for r in results}
    threads = sorted({r["threads"] for r in results})
    names = list(models)

    def rt(r):   # x real time on the recorded samples: sample duration / processing time
        return sum(r["sample_duration_s"]) / sum(r["per_sample_s"])

    # timings CSV
    with open(bdir / "timings.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "side", "threads", "ms_per_sample_median", "x_realtime", "stream_p50_ms",
                    "stream_p99_ms", "stream_x_realtime", "peak_rss_mb", "load_s", "warmup_s"])
        for r in results:
            w.writerow([r["model"], r["side"], r["threads"], round(1e3 * _median(r["per_sample_s"]), 2),
                        round(rt(r), 3), round(r["stream"]["p50_ms"], 3), round(r["stream"]["p99_ms"], 3),
                        round(r["stream"]["x_realtime"], 3), round(r["peak_rss_mb"], 1), round(r["load_s"], 3),
                        round(r["warmup_s"], 3)])
    with open(bdir / "sweep.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "side", "threads", "events_per_s", "clip_s", "ms_per_clip", "acs", "macs",
                    "firing_rate"])
        for r in results:
            for rate, v in sorted(r["sweep"].items(), key=lambda kv: int(kv[0])):
                w.writerow([r["model"], r["side"], r["threads"], rate, CLIP_US / 1e6, round(1e3 * v["s"], 2),
                            v.get("acs", ""), v.get("macs", ""), v.get("firing_rate", "")])
    # plot
    png = bdir / "event_rate.png"
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, len(threads), figsize=(6.5 * len(threads), 4.6), squeeze=False)
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for ax, th in zip(axes[0], threads):
            for i, name in enumerate(names):
                for side, ls in (("evrt", "-o"), ("torch", "--s")):
                    r = by.get((name, side, th))
                    if not r:
                        continue
                    pts = sorted((int(k), v["s"]) for k, v in r["sweep"].items())
                    ax.plot([p[0] for p in pts], [1e3 * p[1] for p in pts], ls, color=colors[i % len(colors)],
                            label=f"{name} ({'evrt' if side == 'evrt' else 'PyTorch dense'})", ms=4)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("input event rate (events/s), 1 s clips")
            ax.set_ylabel("time per clip (ms)")
            ax.set_title(f"{th} thread{'s' if th > 1 else ''}")
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(png, dpi=110)
        plt.close(fig)
    except Exception as e:   # noqa: BLE001 - the report is still useful without the plot
        print(f"[bench] plot failed: {e}")
    m = meta["machine"]
    L = []
    L.append("# evrt benchmarks: event-driven runtime vs the dense PyTorch reference\n")
    L.append(f"Generated by `tools/bench.py` on {meta['date']} ({meta['wall_s'] / 60:.1f} min).  ")
    L.append(f"Reproduce: `{meta['command']}` (random checkpoints are cached in `out/bench/`).\n")
    L.append("## Machine\n")
    L.append(f"- CPU: {m['cpu']}, {m['cores']} cores (shared with other users during the run)")
    L.append(f"- load average (1/5/15 min): before {' / '.join(meta['load_before'])}, "
             f"after {' / '.join(meta['load_after'])}; per job in `docs/bench/results.json`")
    L.append(f"- Python {m['python']}, NumPy {m['numpy']}, Numba {m['numba']}, PyTorch {m['torch']}; {m['platform']}")
    b = meta["base"]
    L.append(f"- each (model, side, threads) runs in its own subprocess; timings are medians of {b['reps']} "
             f"repeats per sample over {b['n_samples']} test-split samples of "
             f"`examples/data/dvsgesture_synth` (JIT warm-up and load excluded, reported apart)\n")
    L.append("## Models\n")
    for name in names:
        mm = models[name]
        L.append(f"- **{name}**: {mm['title']}" + ("" if mm.get("torch") else " — evrt only (no PyTorch "
                                                                          "checkpoint or card to rebuild it)"))
    L.append("\nReference models are the full published DVS configurations with random weights calibrated to "
             "fire (spec §10 statistics, `randomize_for_firing(model, seed=3, calib=...)` on two training-split "
             "samples), folded by `evrt.archs.convert`. evrt runs float32 fast mode; PyTorch runs the same "
             "checkpoint in float32, eval mode, under `torch.no_grad()`, on frames built by the reference "
             "framing rule (framing included in its time, as evrt's event binning is in evrt's).\n")
    for th in threads:
        L.append(f"## Time per sample, {th} thread{'s' if th > 1 else ''}\n")
        L.append("| model | evrt ms/sample | PyTorch ms/sample | speed-up | speed-up, CPU time | evrt × real time | PyTorch × real "
                 "time | stream p50 / p99 ms (evrt) | stream p50 / p99 ms (PyTorch) | stream × real time "
                 "(evrt / PyTorch) |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name in names:
            e, t = by.get((name, "evrt", th)), by.get((name, "torch", th))
            if not e:
                continue
            em = 1e3 * _median(e["per_sample_s"])
            tm = 1e3 * _median(t["per_sample_s"]) if t else None
            cr = _median(t["per_sample_cpu_s"]) / _median(e["per_sample_cpu_s"]) if t else None
            L.append(f"| {name} | {em:.1f} | {_f(tm)} | {_f(tm / em if tm else None, '{:.2f}×')} | "
                     f"{_f(cr, '{:.2f}×')} | "
                     f"{rt(e):.2f} | {_f(rt(t) if t else None, '{:.2f}')} | "
                     f"{e['stream']['p50_ms']:.2f} / {e['stream']['p99_ms']:.2f} | "
                     + (f"{t['stream']['p50_ms']:.2f} / {t['stream']['p99_ms']:.2f}" if t else "—")
                     + f" | {e['stream']['x_realtime']:.2f} / " + (f"{t['stream']['x_realtime']:.2f}" if t else "—")
                     + " |")
        L.append("")
    L.append("ms/sample: median wall time of one T-step clip; speed-up = PyTorch / evrt; the CPU-time "
             "speed-up (`time.process_time`, all threads) is less disturbed by the other users of the machine. "
             "× real time = recorded duration / processing time (> 1: faster than the sensor). Streaming: "
             "continuous mode over the first seconds of a test recording with the model's stream framing "
             "(evrt `Session.step` per window; PyTorch: the reference fed one step per call with its neuron "
             "state kept, frames built per window).\n")
    L.append("## Memory, load, warm-up\n")
    L.append("| model | threads | evrt peak RSS MB | PyTorch peak RSS MB | evrt load s (Graph.load + Session) | "
             "PyTorch load s (build + load_state_dict) | evrt JIT warm-up s | PyTorch warm-up s |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for th in threads:
        for name in names:
            e, t = by.get((name, "evrt", th)), by.get((name, "torch", th))
            if not e:
                continue
            L.append(f"| {name} | {th} | {e['peak_rss_mb']:.0f} | {_f(t['peak_rss_mb'] if t else None, '{:.0f}')} | "
                     f"{e['load_s']:.2f} | {_f(t['load_s'] if t else None, '{:.2f}')} | {e['warmup_s']:.2f} | "
                     f"{_f(t['warmup_s'] if t else None, '{:.2f}')} |")
    L.append("\nPeak RSS is `getrusage(RUSAGE_SELF).ru_maxrss` of the side's own process, which also holds "
             "the test streams (a few MB) and, for PyTorch, the torch import itself. Warm-up = first clip minus "
             "a warm clip of the same sample (evrt: JIT; PyTorch: allocator and oneDNN primitive caches): numba kernels load from the on-disk cache (`cache=True`); a cold "
             "compile takes longer (see `tools/bench_kernels.py --cold`).\n")
    th0 = threads[0]
    L.append(f"## Operations and energy per sample (measured by evrt, {th0} thread run)\n")
    L.append("| model | firing rate | ACs | MACs | dense MACs | evrt energy µJ (measured) | paper-style µJ "
             "(rate × dense ops) | dense µJ (4.6 pJ/MAC) | dense / measured energy |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        e = by.get((name, "evrt", th0))
        if not e:
            continue
        c = e["counts"]
        L.append(f"| {name} | {100 * (c['firing_rate'] or 0):.1f} % | {_eng(c['acs'])} | {_eng(c['macs'])} | "
                 f"{_eng(c['dense_macs'])} | {c['energy_uj']:.1f} | {c['paper_uj']:.1f} | {c['dense_energy_uj']:.1f} | "
                 f"{c['dense_energy_uj'] / max(c['energy_uj'], 1e-12):.1f}× |")
    L.append("\n45 nm: 0.9 pJ/AC, 4.6 pJ/MAC. ACs are counted from the spikes (an input event is a spike); the "
             "paper-style estimate multiplies each layer's input firing rate by its dense op count.\n")
    L.append("## Cost against input event rate\n")
    L.append("![time per clip against event rate](bench/event_rate.png)\n")
    L.append(f"Clips of {CLIP_US / 1e6:.0f} s from `tests/parity.py:random_gesture_events` (a moving blob plus "
             "noise) at each rate; CSV: `docs/bench/sweep.csv`.\n")
    L.append("| model | side | threads | " + " | ".join(f"{_eng(r)}ev/s" for r in RATES) + " |")
    L.append("|---|---|---:|" + "---:|" * len(RATES))
    for th in threads:
        for name in names:
            for side in ("evrt", "torch"):
                r = by.get((name, side, th))
                if not r:
                    continue
                cells = [_f(1e3 * r["sweep"][str(x)]["s"], "{:.0f}") if str(x) in r["sweep"] else "—" for x in RATES]
                L.append(f"| {name} | {side} | {th} | " + " | ".join(cells) + " |")
    L.append("\n(ms per clip)\n")
    if timed_out:
        L.append("**Jobs that did not finish** within the per-job limit (`--job-timeout`): " + ", ".join(
            f"{r['model']} {r['side']} × {r['threads']} threads (> {r['timed_out']:.0f} s)" for r in timed_out)
            + ". With 2 threads on a 2-core machine that other processes also use, a thread that loses its "
              "core stalls every parallel region.\n")
    prof = [r for r in results if r.get("profile")]
    bounded = [r for r in prof if r.get("rates") and by.get((r["model"], "torch", r["threads"]))]
    if bounded:
        rr = bounded[0]["rates"]
        L.append("## What the 5× target would take\n")
        L.append(f"This machine, {bounded[0]['threads']} thread (`machine_rates()`): best float32 GEMM "
                 f"{rr['gemm_mac_per_s'] / 1e9:.1f} G MAC/s; evrt's event conv (3x3, 128→256, 50 % input) "
                 f"{rr['event_acc_per_s'] / 1e9:.1f} G acc/s; the core's add throughput with everything in L1 "
                 f"{rr['add_peak_acc_per_s'] / 1e9:.1f} G acc/s (eight rows summed per pass: about what an event "
                 "path that loads every weight it adds can reach).\n")
        L.append("Each synaptic layer is charged the faster of its counted ACs at an event rate and its dense "
                 "MACs at the best GEMM rate. *Needed rate*: the event rate at which the synaptic layers fit "
                 "in PyTorch's time / 5 — with neurons, pooling and attention free, and with them at evrt's "
                 "measured cost.\n")
        L.append("| model | PyTorch ms | 5× target ms | evrt ms | evrt outside synaptic ops ms | synaptic ms at "
                 "evrt's event rate + best GEMM | needed rate, rest free | needed rate, rest at evrt's cost |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|")

        def g_(x):
            if x == float("inf"):
                return "unreachable"
            return "≤ 0.1 G acc/s" if x <= 1.01e8 else f"{x / 1e9:.1f} G acc/s"
        for r in bounded:
            t = by[(r["model"], "torch", r["threads"])]
            tm, em = _median(t["per_sample_s"]), _median(r["per_sample_s"])
            tg = time_by_group(r)
            rest = sum(v for k, v in tg.items() if not k.startswith("synaptic"))
            at_evrt = synaptic_time(r, rr["event_acc_per_s"])
            L.append(f"| {r['model']} | {1e3 * tm:.1f} | {1e3 * tm / 5:.1f} | {1e3 * em:.1f} | {1e3 * rest:.1f} | "
                     f"{1e3 * at_evrt:.1f} | {g_(rate_needed(r, tm / 5))} | {g_(rate_needed(r, tm / 5 - rest))} |")
        L.append("\nWhere the needed rate is near or above the L1 add throughput, the 5× target is out of reach "
                 "on this machine at these firing rates for a runtime that runs each layer event-driven or "
                 "dense; where it lies between evrt's event rate and that throughput, faster event kernels "
                 "could still close the gap. The full reference configurations' max-pooled stems feed their "
                 "convs 25–50 % dense spike maps, so their counted ACs are only 2.6–6× fewer than dense MACs.\n")
        L.append("## Where evrt's time goes, by kind of op\n")
        present = {g for r in prof for g in time_by_group(r)}
        groups = [g for g in GROUP_ORDER if g in present] + sorted(present - set(GROUP_ORDER))
        L.append("| model | total ms | " + " | ".join(groups) + " |")
        L.append("|---|---:|" + "---:|" * len(groups))
        for r in prof:
            tg = time_by_group(r)
            tot = sum(tg.values())
            L.append(f"| {r['model']} | {1e3 * tot:.1f} | " + " | ".join(
                f"{1e3 * tg[g]:.1f} ({100 * tg[g] / tot:.0f} %)" if g in tg else "—" for g in groups) + " |")
        L.append("")
    if prof:
        L.append("## Where evrt's time goes (per-op profile, `Session(profile=True)`)\n")
        for r in prof:
            total = sum(v for _, v in r["profile"])
            L.append(f"**{r['model']}** ({r['threads']} thread, {1e3 * total:.0f} ms per sample in ops):\n")
            L.append("| op | ms/sample | share | input rate |")
            L.append("|---|---:|---:|---:|")
            rates = {l["name"]: l for l in r["layers"]}
            for name, v in r["profile"][:10]:
                ir = rates.get(name, {}).get("input_rate")
                L.append(f"| {name} | {1e3 * v:.1f} | {100 * v / total:.0f} % | "
                         f"{_f(100 * ir if ir else None, '{:.1f} %')} |")
            L.append("")
    cmp_ = meta.get("compare")
    if cmp_:
        L.append("## Reproducibility: this run against the previous one\n")
        L.append(f"Previous run: {cmp_['date']} (`{cmp_['command']}`). Ratio = this run / previous.\n")
        L.append("| model | side | threads | ms/sample now | before | ratio | stream p50 ms now | before | ratio |")
        L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        ratios = []
        for r in results:
            o = cmp_["jobs"].get(_key(r))
            if not o:
                continue
            ms = 1e3 * _median(r["per_sample_s"])
            p50 = r["stream"]["p50_ms"]
            ratios.append(ms / o["ms"])
            L.append(f"| {r['model']} | {r['side']} | {r['threads']} | {ms:.1f} | {o['ms']:.1f} | {ms / o['ms']:.2f} | "
                     f"{p50:.2f} | {o['p50_ms']:.2f} | {p50 / o['p50_ms']:.2f} |")
        if ratios:
            srt = sorted(ratios)
            L.append(f"\nms/sample ratios: median {_median(ratios):.2f}, range {srt[0]:.2f}–{srt[-1]:.2f} "
                     f"over {len(ratios)} jobs.\n")
    extra = bdir / "notes.md"   # hand-written notes (optimisation history), appended verbatim
    if extra.is_file():
        L.append(extra.read_text())
    out_path.write_text("\n".join(L) + "\n")


# ----------------------------------------------------------------------------------------- driver

def run_job(job):
    env = dict(os.environ)
    for v in THREAD_VARS:
        env[v] = str(job["threads"])
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=job.get("timeout_s"))
    except subprocess.TimeoutExpired:
        sys.stderr.write(f"worker timed out after {job.get('timeout_s')} s: {job['side']} {job['model']} "
                         f"x{job['threads']}\n")
        return dict(side=job["side"], model=job["model"], threads=job["threads"], timed_out=job.get("timeout_s"))
    for line in p.stdout.splitlines():
        if line.startswith("@@RESULT@@"):
            r = json.loads(line[len("@@RESULT@@"):])
            r["process_s"] = time.perf_counter() - t0
            return r
    sys.stderr.write(f"worker failed: {job['side']} {job['model']} x{job['threads']}\n{p.stdout[-2000:]}\n"
                     f"{p.stderr[-4000:]}\n")
    return None


def _key(r):
    return f"{r['model']}|{r['side']}|{r['threads']}"


def previous_timings(path):
    """Median ms/sample and stream p50 of each job of an earlier results.json (read before this run
    overwrites it)."""
    old = json.loads(Path(path).read_text())
    jobs = {_key(r): dict(ms=1e3 * _median(r["per_sample_s"]), p50_ms=r["stream"]["p50_ms"])
            for r in old["results"] if not r.get("timed_out")}
    return dict(date=old["meta"]["date"], command=old["meta"]["command"], jobs=jobs)


def machine_info():
    import numba
    import numpy
    info = dict(python=platform.python_version(), numpy=numpy.__version__, numba=numba.__version__,
                cores=os.cpu_count(), platform=platform.platform())
    try:
        import torch
        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = "not installed"
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info["cpu"] = cpu
    return info


def loadavg():
    try:
        return open("/proc/loadavg").read().split()[:3]
    except OSError:
        return ["?"] * 3


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    sys.path.insert(0, str(ROOT))
    compare = previous_timings(args.compare) if args.compare else None
    t_start = time.time()
    load_before = loadavg()
    models = {}
    for name, cfg in REF_MODELS.items():
        if args.models and name not in args.models:
            continue
        t0 = time.perf_counter()
        ckpt, g = prepare_reference(name, args.rebuild)
        print(f"[bench] {name}: checkpoint + graph ready ({time.perf_counter() - t0:.1f} s)", flush=True)
        models[name] = dict(graph=str(g), ckpt=str(ckpt), title=cfg["title"], torch=True)
    for name, z in zoo_models().items():
        if args.models and name not in args.models:
            continue
        models[name] = dict(graph=z["graph"], ckpt=z["ckpt"], title=z["title"], torch=z["torch"], card=z["card"])
    quick = args.quick
    base = dict(n_samples=2 if quick else 4, reps=1 if quick else 2, stream_s=2 if quick else 4,
                rates=RATES, sweep_reps=1)
    results = []
    for threads in args.threads:
        for name, m in models.items():
            sides = ["evrt", "torch"] if m["torch"] else ["evrt"]
            for side in sides:
                job = dict(base, side=side, model=name, threads=threads, graph=m["graph"], ckpt=m["ckpt"],
                           card={k: m["card"].get(k) for k in ("family", "hyper_parameters", "framing")}
                           if m.get("card") else None,
                           profile=bool(threads == args.threads[0] and side == "evrt"))
                if threads != args.threads[0]:
                    # the extra thread counts: fewer repeats (the run must stay within ~15 min); dense
                    # cost is flat in the event rate, so PyTorch gets two sweep points
                    job.update(n_samples=min(2, job["n_samples"]), reps=1, stream_s=2)
                    if side == "torch":
                        job["rates"] = [RATES[0], RATES[-1]]
                job["timeout_s"] = args.job_timeout
                print(f"[bench] {side:5s} {name} threads={threads} load={loadavg()[0]}", flush=True)
                r = run_job(job)
                if r:
                    r["load"] = loadavg()
                    results.append(r)
    wall = time.time() - t_start
    out = Path(args.out)
    (out.parent / "bench").mkdir(parents=True, exist_ok=True)
    raw = out.parent / "bench" / "results.json"
    meta = dict(machine=machine_info(), load_before=load_before, load_after=loadavg(), wall_s=wall,
                command=" ".join(["python", "tools/bench.py"] + (argv if argv is not None else sys.argv[1:])),
                date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), quick=quick, base=base)
    if compare:
        meta["compare"] = compare
    raw.write_text(json.dumps(dict(meta=meta, models={k: {kk: vv for kk, vv in v.items() if kk != "card"}
                                                     for k, v in models.items()}, results=results), indent=1))
    write_report(raw, out)
    print(f"[bench] done in {wall / 60:.1f} min -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
