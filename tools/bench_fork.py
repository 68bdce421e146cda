"""Why `evrt eval --workers` spawns its workers: times one LIF step (524 k neurons, one thread) before a
fork, after it in the parent, in a child forked after it, and in a spawned process.

    python tools/bench_fork.py [--json]

On the machine evrt was measured on (a Firecracker VM, Linux 6.18, AMD EPYC) the step took 0.18 ms before
the fork and 6.6-11.5 ms after it, in the parent and in every later child, while the spawned process ran
at full speed (docs/INTERNALS.md "Worker processes"). Elsewhere the four figures may all agree.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("EVRT_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N = 32 * 128 * 128


def lif_step_ms(reps: int = 20) -> float:
    """Median ms of a LIF step on fresh arrays (the kernel loaded from numba's cache on first use)."""
    import numpy as np
    from evrt.kernels import lif_step
    x = np.full(N, 0.3, np.float32)
    v, s, h = np.zeros(N, np.float32), np.zeros(N, np.float32), np.zeros(0, np.float32)
    vth = np.ones(32, np.float32)
    lif_step(x, v, 0.5, vth, s, h)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        lif_step(x, v, 0.5, vth, s, h)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def _report(q) -> None:
    q.put(lif_step_ms())


def in_process(method: str) -> float:
    ctx = mp.get_context(method)
    q = ctx.Queue()
    p = ctx.Process(target=_report, args=(q,))
    p.start()
    ms = q.get(timeout=300)
    p.join()
    return ms


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = {"before_fork": lif_step_ms(), "spawned": in_process("spawn")}
    res["forked_child"] = in_process("fork")
    res["parent_after_fork"] = lif_step_ms()
    if args.json:
        print(json.dumps(res))
        return 0
    for k, v in res.items():
        print(f"{k:18s} {v:8.3f} ms per LIF step ({N:,} neurons, one thread)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
