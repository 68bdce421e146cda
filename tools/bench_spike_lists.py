"""Per-sample model compute time with and without spike lists (docs/INTERNALS.md "Spike lists").

    python tools/bench_spike_lists.py [--models spikformer-dvs sdt-gesture resformer-dvsg] [--threads 1]
                                      [--reps 5] [--samples 2] [--json]

The full configurations of tools/bench.py (REF_MODELS, built under out/bench/ on first use). Two
Sessions per model, lists on and off, run alternately rep by rep (ABBA) so a change in machine load
hits both alike; reports the median, min and max per-sample wall time of each and checks that the two
give the same logits and AC counts.
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


def measure(name, samples, threads, reps, log):
    from evrt.engine import Session
    from evrt.graph import Graph
    from tools.bench import prepare_reference
    graph = Graph.load(prepare_reference(name)[1])
    sess = {on: Session(graph, "float32", threads=threads, spike_lists=on) for on in (False, True)}
    first = {on: sess[on].run_clip(samples[0]) for on in (False, True)}     # compile, and compare
    same = (np.array_equal(first[False].logits, first[True].logits) and first[False].acs == first[True].acs)
    rows = {False: [], True: []}
    load0 = os.getloadavg()[0]
    for rep in range(reps):
        for on in ((False, True) if rep % 2 == 0 else (True, False)):
            for s in samples:
                t0 = time.perf_counter()
                sess[on].run_clip(s)
                rows[on].append(time.perf_counter() - t0)
        log(f"[bench_spike_lists] {name} rep {rep + 1}/{reps} load {os.getloadavg()[0]:.1f}")
    out = dict(model=name, threads=threads, identical=bool(same), load_before=load0, load_after=os.getloadavg()[0])
    for on, r in rows.items():
        a = np.array(r) * 1e3
        out["lists" if on else "scan"] = dict(median_ms=float(np.median(a)), min_ms=float(a.min()),
                                              max_ms=float(a.max()), n=len(a))
    out["saving_median"] = 1 - out["lists"]["median_ms"] / out["scan"]["median_ms"]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["spikformer-dvs", "sdt-gesture", "resformer-dvsg"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args(argv)
    if args.threads < 1 or args.reps < 1 or args.samples < 1:
        sys.exit("bench_spike_lists: --threads, --reps and --samples must be >= 1")
    from tools.bench import bench_samples
    log = (lambda m: print(m, file=sys.stderr, flush=True))
    samples = bench_samples(args.samples)
    res = [measure(m, samples, args.threads, args.reps, log) for m in args.models]
    if args.json:
        print(json.dumps(dict(results=res)))
        return
    for r in res:
        a, b = r["scan"], r["lists"]
        print(f"{r['model']} ({r['threads']} thread(s)): scan {a['median_ms']:.0f} ms (min {a['min_ms']:.0f}, "
              f"max {a['max_ms']:.0f}); lists {b['median_ms']:.0f} ms (min {b['min_ms']:.0f}, max {b['max_ms']:.0f}); "
              f"saving {100 * r['saving_median']:.1f} % of the median; identical {r['identical']}; "
              f"load {r['load_before']:.1f} -> {r['load_after']:.1f}")


if __name__ == "__main__":
    main()
