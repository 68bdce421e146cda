"""Re-measure the event-vs-dense break-even densities (DENSE_ABOVE_* in evrt/kernels/conv.py and linear.py)
on the real layer inputs of the full benchmark configurations.

    python tools/measure_dense_above.py [--models ...] [--samples 1] [--repeat 3] [--json]

Every conv2d/linear call of a clip is timed on its actual input both ways (event path forced, dense path
forced; CPU time of this process, min of --repeat, one thread), then for each layer kind the threshold
that minimises the summed time is found on a grid. CPU time, not wall time: on a shared machine another
process's load then changes the result little (cache sharing still does, ±20-30 %).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GRID = np.round(np.arange(0.0, 1.01, 0.025), 3)


def kind_of(w, groups):
    kh, kw, cig, cout = w.shape
    if groups > 1:
        return "depthwise" if cig == 1 and cout == groups else "grouped"
    return "1x1" if kh == kw == 1 else "conv"


def best_cpu(fn, repeat):
    t = float("inf")
    for _ in range(repeat):
        c0 = time.process_time()
        fn()
        t = min(t, time.process_time() - c0)
    return t


def record(models, n_samples, repeat, log):
    import evrt.kernels as K
    import evrt.ops.synaptic as S
    from evrt.engine import Session
    from evrt.graph import Graph
    from evrt.kernels.threads import set_threads
    from tools.bench import bench_samples, prepare_reference
    set_threads(1)
    rows = []
    real_conv, real_lin = K.conv2d_scatter, K.linear_scatter

    class Spy:
        def __getattr__(self, name):
            return getattr(K, name)

        @staticmethod
        def conv2d_scatter(x, w, b, stride, pad, groups, out, dense_above=None):
            o = np.empty_like(out)
            te = best_cpu(lambda: real_conv(x, w, b, stride, pad, groups, o, 2.0), repeat)
            td = best_cpu(lambda: real_conv(x, w, b, stride, pad, groups, o, -1.0), repeat)
            rows.append(dict(model=model, kind=kind_of(w, groups), density=float(np.count_nonzero(x) / x.size),
                             event_s=te, dense_s=td, shape=list(x.shape), cout=int(w.shape[3])))
            return real_conv(x, w, b, stride, pad, groups, out, dense_above)

        @staticmethod
        def linear_scatter(x, w, b, out, dense_above=K.DENSE_ABOVE_LINEAR):
            o = np.empty_like(out)
            te = best_cpu(lambda: real_lin(x, w, b, o, 2.0), repeat)
            td = best_cpu(lambda: real_lin(x, w, b, o, -1.0), repeat)
            rows.append(dict(model=model, kind="linear", density=float(np.count_nonzero(x) / x.size),
                             event_s=te, dense_s=td, shape=list(x.shape), cout=int(w.shape[1])))
            return real_lin(x, w, b, out, dense_above)

    samples = bench_samples(n_samples)
    saved = S.K
    try:
        for model in models:
            _, gpath = prepare_reference(model)
            sess = Session(Graph.load(gpath), "float32")
            sess.run_clip(samples[0])                     # compile outside the spy
            S.K = Spy()
            for s in samples:
                sess.run_clip(s)
            S.K = saved
            log(f"[dense_above] {model}: {sum(r['model'] == model for r in rows)} layer calls timed")
    finally:
        S.K = saved
    return rows


def best_thresholds(rows):
    out = {}
    by = defaultdict(list)
    for r in rows:
        by[r["kind"]].append(r)
    for kind, rs in by.items():
        d = np.array([r["density"] for r in rs])
        te = np.array([r["event_s"] for r in rs])
        td = np.array([r["dense_s"] for r in rs])
        tot = np.array([np.where(d > g, td, te).sum() for g in GRID])
        i = int(np.argmin(tot))
        flat = GRID[tot <= tot[i] * 1.02]            # within 2 % of the best: the flat range
        out[kind] = dict(best=float(GRID[i]), flat=[float(flat.min()), float(flat.max())], calls=len(rs),
                         best_s=float(tot[i]), event_only_s=float(te.sum()), dense_only_s=float(td.sum()),
                         oracle_s=float(np.minimum(te, td).sum()))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["spikformer-dvs", "sdt-gesture", "resformer-dvsg"])
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = record(args.models, args.samples, args.repeat, lambda m: print(m, file=sys.stderr, flush=True))
    res = best_thresholds(rows)
    if args.json:
        print(json.dumps(dict(thresholds=res, calls=rows)))
        return
    for kind, r in sorted(res.items()):
        print(f"{kind:9s} best {r['best']:.3f} (within 2 %: {r['flat'][0]:.3f}-{r['flat'][1]:.3f}), {r['calls']} calls: "
              f"{r['best_s'] * 1e3:.1f} ms at the best, {r['event_only_s'] * 1e3:.1f} event only, "
              f"{r['dense_only_s'] * 1e3:.1f} dense only, {r['oracle_s'] * 1e3:.1f} per-call oracle")


if __name__ == "__main__":
    main()
