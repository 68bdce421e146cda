"""Per-sample model compute time at 1 vs N threads: clips in stages (the default) and each step's
kernels split (docs/INTERNALS.md "Stages", "Threads").

    python tools/bench_threads.py [--models spikformer-dvs sdt-gesture resformer-dvsg] [--threads 2]
                                  [--reps 5] [--samples 2] [--json]

The full configurations of tools/bench.py (REF_MODELS, built under out/bench/ on first use, needs the
dev extra). One process, one Session per model; the settings take turns rep by rep (the order rotated)
so a change in machine load hits all alike. Reports the median, min and max per-sample wall time,
the median process and main-thread CPU time, and the 1-minute load average before and after: on a
shared machine other processes' load decides what a second thread can win, so read the numbers with it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["spikformer-dvs", "sdt-gesture", "resformer-dvsg"])
    ap.add_argument("--threads", type=int, default=2, help="the thread count compared with 1 (default 2)")
    ap.add_argument("--reps", type=int, default=5, help="passes over the samples per thread count")
    ap.add_argument("--samples", type=int, default=2, help="test-split samples of the synthetic gestures")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return ap.parse_args(argv)


def measure(name, samples, threads, reps, log):
    """One Session; per rep every setting in turn (order rotated rep by rep): one thread, `threads` threads
    with clips in stages (the default), and `threads` threads with each step's kernels split (stages=1)."""
    from evrt.engine import Session
    from evrt.graph import Graph
    from evrt.kernels.threads import set_threads
    from tools.bench import prepare_reference
    _, gpath = prepare_reference(name)
    sess = Session(Graph.load(gpath), "float32")
    settings = {"t1": (1, None), f"t{threads}": (threads, None), f"t{threads}_split": (threads, 1)}
    for n, stages in settings.values():           # compile / load every kernel variant, plan the stages
        set_threads(n)
        sess.stages = stages
        for _ in range(3):
            sess.run_clip(samples[0])
    rows = {k: [] for k in settings}
    load0 = os.getloadavg()[0]
    keys = list(settings)
    for rep in range(reps):
        for key in keys[rep % 3:] + keys[:rep % 3]:
            n, stages = settings[key]
            set_threads(n)
            sess.stages = stages
            for s in samples:
                w0, p0, t0 = time.perf_counter(), time.process_time(), time.thread_time()
                sess.run_clip(s)
                rows[key].append((time.perf_counter() - w0, time.process_time() - p0, time.thread_time() - t0))
        log(f"[bench_threads] {name} rep {rep + 1}/{reps} load {os.getloadavg()[0]:.1f}")
    out = dict(model=name, load_before=load0, load_after=os.getloadavg()[0],
               stage_cut=sess.stage_plan.describe() if sess.stage_plan else None)
    for key, r in rows.items():
        a = np.array(r)
        out[key] = dict(median_ms=float(np.median(a[:, 0]) * 1e3), min_ms=float(a[:, 0].min() * 1e3),
                        max_ms=float(a[:, 0].max() * 1e3), cpu_ms=float(np.median(a[:, 1]) * 1e3),
                        main_cpu_ms=float(np.median(a[:, 2]) * 1e3), n=len(r))
    out["speedup_median"] = out["t1"]["median_ms"] / out[f"t{threads}"]["median_ms"]
    out["speedup_min"] = out["t1"]["min_ms"] / out[f"t{threads}"]["min_ms"]
    out["speedup_split_median"] = out["t1"]["median_ms"] / out[f"t{threads}_split"]["median_ms"]
    return out


def main(argv=None):
    args = parse_args(argv)
    if args.threads < 2 or args.reps < 1 or args.samples < 1:
        sys.exit("bench_threads: --threads must be >= 2, --reps and --samples >= 1")
    from tools.bench import bench_samples
    log = (lambda m: print(m, file=sys.stderr, flush=True))
    samples = bench_samples(args.samples)
    res = [measure(m, samples, args.threads, args.reps, log) for m in args.models]
    if args.json:
        print(json.dumps(dict(threads=args.threads, cores=len(os.sched_getaffinity(0)), results=res)))
        return
    n = args.threads
    for r in res:
        a, b = r["t1"], r[f"t{n}"]
        print(f"{r['model']}: 1 thread {a['median_ms']:.0f} ms (min {a['min_ms']:.0f}, max {a['max_ms']:.0f}); "
              f"{n} threads in stages {b['median_ms']:.0f} ms (min {b['min_ms']:.0f}, max {b['max_ms']:.0f}); "
              f"speedup {r['speedup_median']:.2f}x median, {r['speedup_min']:.2f}x min; steps split "
              f"{r[f't{n}_split']['median_ms']:.0f} ms ({r['speedup_split_median']:.2f}x); "
              f"load {r['load_before']:.1f} -> {r['load_after']:.1f}")


if __name__ == "__main__":
    main()
