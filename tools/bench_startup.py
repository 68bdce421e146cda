"""Start-up time: process start -> import evrt -> load the model -> first step -> first classified sample,
each run in a fresh Python process, from an empty numba cache (cold) and from the cache that run
filled (warm).

    python tools/bench_startup.py [MODEL ...] [--ref-dir out/bench] [--warm 3] [--float32] [--json]

MODEL: .evrt files or zoo names (default: the zoo's default model, plus the full reference
configurations tools/bench.py caches in --ref-dir when present). --float32 also converts each model to
a float32 file (evrt convert --precision float32) and measures that file. The sample is the first
test recording of the shipped synthetic DVS Gesture set, read from disk inside the timed process.

Columns (seconds): import = `import evrt` + the runtime (evrt.engine), load = Graph + Session,
read = the recording, step1 = the first timestep, clip = the rest of the first sample, total = from
the moment the parent starts the process until the child has its first prediction (interpreter
start-up included). Cold runs compile every kernel the model uses; warm runs load them from the cache.
The children run with Python's bytecode cache enabled, as an installed package does. numba's first use
imports scipy.linalg when SciPy is installed (~0.2 s of step1): run the tool with an interpreter whose
environment has only evrt's dependencies to see a user's install.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "dvsgesture_synth"
REF = ("spikformer-dvs", "sdt-gesture", "resformer-dvsg")

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import evrt
from evrt.engine import Session
t1 = time.perf_counter()
sess = Session(sys.argv[1], precision="float32", mode="clip")
t2 = time.perf_counter()
from evrt.datasets.dvsgesture import DVSGesture
events = DVSGesture(sys.argv[2], "test")[0].events
t3 = time.perf_counter()
marks = []
step = sess.step
def timed(x, force=None):
    out = step(x, force)
    marks.append(time.perf_counter())
    return out
sess.step = timed
res = sess.run_clip(events)
t4 = time.perf_counter()
print(json.dumps({"end": time.time(), "import": t1 - t0, "load": t2 - t1, "read": t3 - t2,
                  "step1": marks[0] - t3, "clip": t4 - marks[0], "pred": int(res.class_index),
                  "mapped_bytes": sess.graph.file_info.get("mapped_bytes", 0),
                  "copied_bytes": sess.graph.file_info.get("copied_bytes", 0)}))
"""


SPIN = "import time\nt = time.perf_counter()\nx = 0\nfor i in range(5_000_000):\n    x += i\nprint(time.perf_counter() - t)"


def spin() -> float:
    """Seconds a fixed pure-Python loop takes in a fresh process: how much of a core this run got (the
    machine is shared; compare runs by it)."""
    return float(subprocess.run([sys.executable, "-c", SPIN], capture_output=True, text=True).stdout)


def run_once(model: str, cache: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # as an installed package runs: Python's own bytecode cache on (a sandbox that disables it would add
    # the compilation of every evrt module to each start)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    start = time.time()
    out = subprocess.run([sys.executable, "-c", CHILD, model, str(DATA)], capture_output=True, text=True, env=env,
                         cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"bench_startup: {model}: the child failed: {out.stderr.strip().splitlines()[-1:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["total"] = res.pop("end") - start
    return res


def measure(model: str, warm: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="evrt-numba-") as cache:
        cold = run_once(model, cache)
        warms = [run_once(model, cache) for _ in range(warm)]
    keys = ("import", "load", "read", "step1", "clip", "total")
    med = {k: statistics.median(w[k] for w in warms) for k in keys} if warms else {}
    return {"model": model, "bytes": Path(model).stat().st_size, "cold": {k: cold[k] for k in keys},
            "warm": med, "warm_runs": [{k: w[k] for k in keys} for w in warms],
            "warm_import_load_step1": (med["import"] + med["load"] + med["step1"]) if med else None,
            "mapped_bytes": cold["mapped_bytes"], "copied_bytes": cold["copied_bytes"], "pred": cold["pred"]}


def to_float32(model: str, out_dir: Path) -> str:
    from evrt.graph import Graph
    path = out_dir / (Path(model).parent.name + "-" + Path(model).stem + ".f32.evrt")
    Graph.load(model).save(path, precision="float32")
    return str(path)


def table(rows) -> str:
    head = ("| model | file MB | mapped MB | cold import | cold load | cold read | cold step1 | cold clip | cold total "
            "| warm import | warm load | warm step1 | warm import+load+step1 | warm total |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        c, w = r["cold"], r["warm"]
        lines.append(f"| {r['name']} | {r['bytes'] / 1e6:.1f} | {r['mapped_bytes'] / 1e6:.1f} | {c['import']:.2f} | "
                     f"{c['load']:.2f} | {c['read']:.2f} | {c['step1']:.2f} | {c['clip']:.2f} | **{c['total']:.1f}** | "
                     f"{w.get('import', float('nan')):.2f} | {w.get('load', float('nan')):.3f} | "
                     f"{w.get('step1', float('nan')):.2f} | **{(r['warm_import_load_step1'] or float('nan')):.2f}** | "
                     f"{w.get('total', float('nan')):.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", help=".evrt files or zoo names (default: the zoo default + the reference configs)")
    ap.add_argument("--ref-dir", default=str(ROOT / "out" / "bench"),
                    help="where tools/bench.py cached the reference configurations' .evrt files")
    ap.add_argument("--warm", type=int, default=3, help="warm runs per model (median reported)")
    ap.add_argument("--float32", action="store_true", help="also measure a float32 copy of each model")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from evrt.zoo import DEFAULT_MODEL, resolve_model

    models = [(m, resolve_model(m)) for m in args.models]
    if not models:
        models = [(DEFAULT_MODEL, resolve_model(DEFAULT_MODEL))]
        models += [(n, str(Path(args.ref_dir) / f"{n}.evrt")) for n in REF if (Path(args.ref_dir) / f"{n}.evrt").exists()]
    rows = []
    spin_before = spin()
    with tempfile.TemporaryDirectory(prefix="evrt-f32-") as tmp:
        todo = []
        for name, path in models:
            todo.append((name, path))
            if args.float32:
                todo.append((name + " (float32 file)", to_float32(path, Path(tmp))))
        for i, (name, path) in enumerate(todo):
            print(f"[{i + 1}/{len(todo)}] {name} ...", file=sys.stderr, flush=True)
            rows.append({"name": name, **measure(path, args.warm)})
    result = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "executable": sys.executable,
                          "load_avg": os.getloadavg(), "spin_s": [spin_before, spin()]}, "rows": rows}
    if args.json:
        print(json.dumps(result))
    else:
        print(table(rows))
        m = result["machine"]
        print(f"\n(seconds; cold = empty numba cache; warm = median of {args.warm}; load average "
              f"{m['load_avg'][0]:.1f} at the end; a 5M-iteration Python loop took {m['spin_s'][0]:.2f} s before "
              f"and {m['spin_s'][1]:.2f} s after)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
