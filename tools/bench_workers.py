"""Throughput of `evrt eval --workers N`: samples/s at each worker count, runs interleaved and repeated so
that a shared machine's load falls on every setting alike.

    python tools/bench_workers.py [--workers 1 2] [--repeat 3] [--model NAME] [--json]

Each run is a fresh `evrt eval --json` process on the shipped synthetic DVS Gesture test split. samples/s =
samples / the evaluation's wall time, from the end of the parent's one-off JIT warm-up to the last result
(with --workers N the workers start before that warm-up and load the model and kernels while it runs);
`process_s` is the whole command, interpreter start to exit. Every run's predictions must be identical.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "dvsgesture_synth"


def run(workers: int, model: str | None, threads: str) -> dict:
    cmd = [sys.executable, "-m", "evrt", "eval", "--dataset", "dvsgesture", "--root", str(DATA),
           "--workers", str(workers), "--json"] + (["--model", model] if model else [])
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT), EVRT_THREADS=threads))
    if out.returncode != 0:
        raise SystemExit(f"bench_workers: {' '.join(cmd)}: {out.stderr.strip()[-300:]}")
    res = json.loads(out.stdout)
    return {"workers": workers, "n": res["n"], "wall_s": res["wall_s"], "samples_per_s": res["samples_per_s"],
            "process_s": time.perf_counter() - t0,
            "preds": [(p["output"], p["confidence"], p["acs"]) for p in res["predictions"]]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", default=None, help="zoo name or .evrt (default: the zoo default)")
    ap.add_argument("--threads", default="1",
                    help="EVRT_THREADS of every run (default 1: one worker is one core, the baseline the "
                         "worker count scales from; 'all' lets one process use every core inside a step)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    runs = []
    for r in range(args.repeat):
        for w in args.workers:
            print(f"[{r + 1}/{args.repeat}] --workers {w} ...", file=sys.stderr, flush=True)
            runs.append(run(w, args.model, args.threads))
    if any(x["preds"] != runs[0]["preds"] for x in runs):
        raise SystemExit("bench_workers: predictions differ between runs")
    summary = {}
    for w in args.workers:
        rates = [x["samples_per_s"] for x in runs if x["workers"] == w]
        procs = [x["process_s"] for x in runs if x["workers"] == w]
        summary[w] = {"samples_per_s_median": statistics.median(rates), "samples_per_s": rates,
                      "process_s_median": statistics.median(procs)}
    base = summary[args.workers[0]]["samples_per_s_median"]
    for w in args.workers:
        summary[w]["speedup"] = summary[w]["samples_per_s_median"] / base
    result = {"n": runs[0]["n"], "cpus": os.cpu_count(), "load_avg": os.getloadavg(),
              "model": args.model or "the zoo default", "threads": args.threads,
              "summary": summary, "runs": [{k: v for k, v in x.items() if k != "preds"} for x in runs]}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"| workers | samples/s (median of {args.repeat}) | all runs | speed-up | whole command, s |")
    print("|---|---|---|---|---|")
    for w, s in summary.items():
        print(f"| {w} | {s['samples_per_s_median']:.2f} | {', '.join(f'{v:.2f}' for v in s['samples_per_s'])} | "
              f"{s['speedup']:.2f}x | {s['process_s_median']:.1f} |")
    print(f"\n{result['n']} samples, identical predictions in every run; load average {result['load_avg'][0]:.1f} "
          f"at the end on {result['cpus']} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
