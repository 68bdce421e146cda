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

It writes the raw measurements to docs/bench/results.json, then renders docs/BENCHMARKS.md (tables,
plot, machine, command), docs/bench/*.csv and docs/bench/*.png from that file with
tools/bench_report.py (which can re-render without measuring again).

    python tools/bench.py [--threads 1 2] [--quick] [--out docs/BENCHMARKS.md] [--compare OLD_RESULTS_JSON]
                          [--upstream DIR [--upstream-only]]

With --upstream DIR (checkouts DIR/spikformer, DIR/Spike-Driven-Transformer, DIR/SpikingResformer of
the public repositories), the three full configurations are timed against the UPSTREAM model classes
instead of evrt's own PyTorch reference (tools/bench_upstream.py: same checkpoints, same ~340 k-event
samples, both sides interleaved rep by rep, framing and compute apart, the whole machine and one
thread each); --upstream-only skips everything else (zoo models, event-rate sweep, per-op profile).

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools.bench_report import (CLIP_US, RATES, _key, _median, _pct, rate_needed,  # noqa: E402,F401
                                synaptic_time, time_by_group, upstream_spreads, write_report)

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "out" / "bench"
DATA = ROOT / "examples" / "data" / "dvsgesture_synth"
SENSOR = (128, 128)

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")

# The full reference DVS configurations (docs/SEMANTICS.md "Families") with realistic random weights
# (tests/parity.py's recipe).
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
    ap.add_argument("--upstream", metavar="DIR",
                    help="folder with checkouts of ZK-Zhou/spikformer, BICLab/Spike-Driven-Transformer and "
                         "xyshi2000/SpikingResformer (as spikformer/, Spike-Driven-Transformer/, SpikingResformer/): "
                         "time the upstream model code (docs/BENCHMARKS.md, Method)")
    ap.add_argument("--upstream-only", action="store_true",
                    help="with --upstream: only the upstream-code tables")
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
    """Random checkpoint of the full configuration, calibrated to fire (docs/SEMANTICS.md "Parity" statistics), and its
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
    pairs = K.conv2d_scatter(x, w, bias, 1, 1, 1, out, dense_above=2.0).pairs
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


def previous_timings(path):
    """Median ms/sample and stream p50 of each job of an earlier results.json (read before this run
    overwrites it), and the spreads of its upstream-code timings."""
    try:
        old = json.loads(Path(path).read_text())
        jobs = {_key(r): dict(ms=1e3 * _median(r["per_sample_s"]), p50_ms=r["stream"]["p50_ms"])
                for r in old.get("results", []) if not r.get("timed_out")}
        up = upstream_spreads(old.get("upstream"))
        return dict(date=old["meta"]["date"], command=old["meta"]["command"], jobs=jobs, upstream=up)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"--compare {path}: not a tools/bench.py results.json ({type(e).__name__}: {e})")


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
    if args.upstream_only and not args.upstream:
        raise SystemExit("--upstream-only needs --upstream DIR")
    compare = previous_timings(args.compare) if args.compare else None
    from tools import bench_upstream
    up_names = [n for n in bench_upstream.UPSTREAM if not args.models or n in args.models]
    if args.upstream:
        try:
            bench_upstream.locate(args.upstream, up_names)      # fail before measuring anything
        except bench_upstream.UpstreamError as e:
            raise SystemExit(str(e))
    t_start = time.time()
    load_before = loadavg()
    upstream = None
    if args.upstream:
        try:
            upstream = bench_upstream.run(args.upstream, CACHE / "upstream", quick=args.quick, names=up_names,
                                          log=lambda m: print(m, flush=True), rebuild=args.rebuild)
        except bench_upstream.UpstreamError as e:
            raise SystemExit(str(e))
        upstream["add_peak_acc_per_s"] = machine_rates()["add_peak_acc_per_s"]
    models = {}
    for name, cfg in REF_MODELS.items():
        if args.upstream_only or (args.models and name not in args.models):
            continue
        t0 = time.perf_counter()
        ckpt, g = prepare_reference(name, args.rebuild)
        print(f"[bench] {name}: checkpoint + graph ready ({time.perf_counter() - t0:.1f} s)", flush=True)
        # with --upstream the upstream classes are the PyTorch side of these models: evrt only here
        # (per-op profile, counts, event-rate sweep) at the first thread count
        models[name] = dict(graph=str(g), ckpt=str(ckpt), title=cfg["title"], torch=not args.upstream,
                            evrt_threads=args.threads[:1] if args.upstream else None)
    for name, z in ({} if args.upstream_only else zoo_models()).items():
        if args.models and name not in args.models:
            continue
        models[name] = dict(graph=z["graph"], ckpt=z["ckpt"], title=z["title"], torch=z["torch"], card=z["card"])
    quick = args.quick
    base = dict(n_samples=2 if quick else 4, reps=1 if quick else 2, stream_s=2 if quick else 4,
                rates=RATES, sweep_reps=1)
    results = []
    for threads in args.threads:
        for name, m in models.items():
            if m.get("evrt_threads") and threads not in m["evrt_threads"]:
                continue
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
                                                     for k, v in models.items()}, results=results,
                                   upstream=upstream), indent=1))
    write_report(raw, out)
    print(f"[bench] done in {wall / 60:.1f} min -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
