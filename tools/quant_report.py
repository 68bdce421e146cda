"""The int8 weight mode against float32 on every zoo model: accuracy, per-sample agreement, AC counts,
weight bytes and time per sample (docs/QUANTISATION.md).

    python tools/quant_report.py [--models NAME ...] [--limit N] [--repeat R] [--json] [--markdown]

Each model runs on the test split of the dataset its card names (dvsgesture: the shipped synthetic
gestures, nmnist: the 100 shipped N-MNIST recordings), clip mode, the model's own framing. float32 and
int8 run the same samples interleaved (alternating which goes first) so a load change on a shared
machine hits both; the time per sample is the median over samples of each mode's best of `--repeat`
runs (compute only: framing included, reading the file not).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# one BLAS thread unless the caller says otherwise: a multi-threaded BLAS on a loaded 2-core machine
# makes the float path's dense layers several times slower and the comparison meaningless (set only when
# run as a script, before numpy loads; an importer keeps its own environment)
if __name__ == "__main__":
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA = {"dvsgesture": ROOT / "examples/data/dvsgesture_synth", "nmnist": ROOT / "examples/data/nmnist"}
MODES = ("float32", "int8")


def model_report(name: str, limit: int | None, repeat: int, progress: bool) -> dict:
    from evrt.cli.cmd_eval import index_map, output_map
    from evrt.datasets import open_dataset
    from evrt.engine import Session
    from evrt.evaluate import warm_up
    from evrt.geometry import model_sensor, plan_fit
    from evrt.graph import Graph
    from evrt.progress import Progress
    from evrt.quant import weight_bytes

    mdir = ROOT / "models" / name
    card = json.loads((mdir / "card.json").read_text())
    # the gesture cards name no dataset key: their test set is the shipped synthetic DVS128 Gesture split
    dataset = card.get("dataset") or ("dvsgesture" if "gesture" in name else None)
    if dataset not in DATA:
        raise SystemExit(f"quant_report: {name}: no test data for dataset {dataset!r}")
    graph = Graph.load(mdir / card.get("file", "model.evrt"))
    sess = {m: Session(graph, precision=m, mode="clip") for m in MODES}
    ds = open_dataset(dataset, DATA[dataset], "test")
    classes = list(ds.classes)
    omap = (output_map(sess["float32"].classes, classes) if dataset == "dvsgesture"
            else index_map(sess["float32"].classes, classes))
    target = model_sensor(graph.meta)
    plan = plan_fit(ds.sensor_size, target, "downsample") if target else None
    for s in sess.values():
        warm_up(s)
    n = len(ds) if limit is None else min(limit, len(ds))
    rows = []
    with Progress(n, name, enabled=None if progress else False) as bar:
        for i in range(n):
            item = ds[i]
            ev = item.events
            if plan is not None and not plan.identity:
                ev, _ = plan.apply(ev)
            row = {"name": item.name, "true": int(item.label)}
            best = {m: float("inf") for m in MODES}
            order = MODES if i % 2 == 0 else MODES[::-1]
            for _ in range(repeat):
                for m in order:
                    t0 = time.perf_counter()
                    res = sess[m].run_clip(ev)
                    best[m] = min(best[m], time.perf_counter() - t0)
                    row[m] = {"pred": int(omap[res.class_index]), "acs": int(res.acs), "macs": int(res.macs),
                              "confidence": float(res.confidence)}
            for m in MODES:
                row[m]["s"] = best[m]
            rows.append(row)
            bar.update()
    out = {"model": name, "dataset": dataset, "samples": n,
           "weight_bytes": {"float32": weight_bytes(graph, "float32"), "int8": weight_bytes(graph, "int8")},
           "quantised_ops": sum(1 for impl in sess["int8"].impls if getattr(impl, "int8", False)),
           "dequantised_real_input_ops": sum(1 for impl in sess["int8"].impls if impl.op.type in ("conv2d", "linear")
                                             and impl.a.get("in_kind") == "real")}
    for m in MODES:
        out[m] = {"accuracy": sum(r[m]["pred"] == r["true"] for r in rows) / n,
                  "correct": sum(r[m]["pred"] == r["true"] for r in rows),
                  "mean_acs": float(np.mean([r[m]["acs"] for r in rows])),
                  "mean_macs": float(np.mean([r[m]["macs"] for r in rows])),
                  "median_s": float(np.median([r[m]["s"] for r in rows]))}
    out["agreement"] = sum(r["float32"]["pred"] == r["int8"]["pred"] for r in rows) / n
    out["same_acs_samples"] = sum(r["float32"]["acs"] == r["int8"]["acs"] for r in rows)
    flip = [r["float32"]["pred"] != r["int8"]["pred"] for r in rows]
    conf = [r["float32"]["confidence"] for r in rows]
    out["flips"] = {  # which way the samples whose prediction changes go, and how sure float32 was of them
        "right_to_wrong": sum(f and r["float32"]["pred"] == r["true"] for f, r in zip(flip, rows)),
        "wrong_to_right": sum(f and r["int8"]["pred"] == r["true"] for f, r in zip(flip, rows)),
        "median_float32_confidence_flipped": float(np.median([c for c, f in zip(conf, flip) if f])) if any(flip) else None,
        "median_float32_confidence_kept": float(np.median([c for c, f in zip(conf, flip) if not f])) if not all(flip) else None}
    out["per_sample"] = rows
    return out


KERNEL_CASES = [  # (H=W, Cin, Cout, k, input density): layer shapes of the zoo and reference models
    (32, 128, 128, 3, 0.10), (16, 256, 256, 3, 0.10), (16, 256, 256, 3, 0.25),
    (64, 256, 1024, 1, 0.10), (64, 1024, 256, 1, 0.05),
]


def kernel_rows(repeat: int = 30) -> list[dict]:
    """One synaptic layer on a fixed random spike map: float32 (the runtime's default path choice) against
    int8 (integer sum + the per-output scale), best of `repeat` interleaved runs each."""
    from evrt import kernels as K
    from evrt.kernels import quant as KQ

    rng = np.random.default_rng(0)
    rows = []
    for h, cin, cout, k, dens in KERNEL_CASES:
        x = (rng.random((h, h, cin)) < dens).astype(np.float32)
        w = rng.normal(0, 0.1, (k, k, cin, cout)).astype(np.float32)
        q = rng.integers(-127, 128, (k, k, cin, cout)).astype(np.int8)
        b, s64, b64 = np.zeros(cout, np.float32), rng.uniform(1e-3, 1e-2, cout), np.zeros(cout)
        out, acc = np.zeros((h, h, cout), np.float32), np.zeros((h, h, cout), np.int32)
        p = k // 2

        def f32():
            K.conv2d_scatter(x, w, b, 1, p, 1, out)

        def i8():
            KQ.conv2d_int(x, q, (1, 1), (p, p), (1, 1), 1, acc)
            KQ.apply_scale(acc, s64, b64, out)

        best = {"float32": float("inf"), "int8": float("inf")}
        f32(), i8()
        for _ in range(repeat):
            for name, f in (("float32", f32), ("int8", i8)):
                t0 = time.perf_counter()
                f()
                best[name] = min(best[name], time.perf_counter() - t0)
        rows.append({"layer": f"{h}x{h}x{cin} -> {cout}, {k}x{k}", "density": dens,
                     "float32_ms": best["float32"] * 1e3, "int8_ms": best["int8"] * 1e3})
    return rows


def kernel_table(rows: list[dict]) -> str:
    lines = ["| layer | input density | float32 ms | int8 ms | float32/int8 |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['layer']} | {r['density']:.0%} | {r['float32_ms']:.2f} | {r['int8_ms']:.2f} "
                     f"| {r['float32_ms'] / r['int8_ms']:.2f}x |")
    return "\n".join(lines)


def flips_table(reports: list[dict]) -> str:
    lines = ["| model | right → wrong | wrong → right | float32 confidence, flipped samples (median) "
             "| float32 confidence, other samples (median) |", "|---|---|---|---|---|"]
    for r in reports:
        f = r["flips"]
        fc = f"{f['median_float32_confidence_flipped']:.2f}" if f["median_float32_confidence_flipped"] is not None else "–"
        kc = f"{f['median_float32_confidence_kept']:.2f}" if f["median_float32_confidence_kept"] is not None else "–"
        lines.append(f"| {r['model']} | {f['right_to_wrong']} | {f['wrong_to_right']} | {fc} | {kc} |")
    return "\n".join(lines)


def update_doc(path: Path, blocks: dict) -> None:
    """Replace the text between `<!-- quant_report:NAME -->` and `<!-- /quant_report:NAME -->` in the
    doc with the fresh block NAME (the prose around the tables is left alone)."""
    import re
    text = path.read_text()
    for name, body in blocks.items():
        pat = re.compile(rf"(<!-- quant_report:{name} -->\n).*?(\n<!-- /quant_report:{name} -->)", re.S)
        if not pat.search(text):
            raise SystemExit(f"quant_report: {path} has no <!-- quant_report:{name} --> block")
        text = pat.sub(lambda m: m.group(1) + body + m.group(2), text)
    path.write_text(text)


def reference_rows(n: int, repeat: int, progress: bool) -> list[dict]:
    """The benchmark's full reference configurations (tools/bench.py: Spikformer-DVS 2-256, SDT gesture
    2-256, SpikingResformer-dvsg, random weights calibrated to fire, built and cached under out/bench/ on
    first use): time per sample and ACs, float32 against int8, on the synthetic test gestures."""
    from evrt.engine import Session
    from evrt.evaluate import warm_up
    from evrt.graph import Graph
    from evrt.progress import Progress
    from evrt.quant import weight_bytes
    from tools.bench import REF_MODELS, bench_samples, prepare_reference

    samples = bench_samples(n)
    rows = []
    for name in REF_MODELS:
        graph = Graph.load(prepare_reference(name)[1])
        sess = {m: Session(graph, precision=m, mode="clip") for m in MODES}
        for x in sess.values():
            warm_up(x)
        per = {m: [] for m in MODES}
        acs = {m: [] for m in MODES}
        agree = 0
        with Progress(len(samples), name, enabled=None if progress else False) as bar:
            for i, ev in enumerate(samples):
                best, pred = {m: float("inf") for m in MODES}, {}
                for _ in range(repeat):
                    for m in (MODES if i % 2 == 0 else MODES[::-1]):
                        t0 = time.perf_counter()
                        res = sess[m].run_clip(ev)
                        best[m] = min(best[m], time.perf_counter() - t0)
                        pred[m] = res.class_index
                        acs[m].append(res.acs)
                for m in MODES:
                    per[m].append(best[m])
                agree += pred["float32"] == pred["int8"]
                bar.update()
        rows.append({"model": REF_MODELS[name]["title"], "samples": len(samples), "agreement": agree / len(samples),
                     "weight_bytes": {m: weight_bytes(graph, m) for m in MODES},
                     **{m: {"median_s": float(np.median(per[m])), "mean_acs": float(np.mean(acs[m]))} for m in MODES}})
    return rows


def reference_table(rows: list[dict]) -> str:
    lines = ["| configuration (random weights) | samples | agree | ACs/sample float32 | ΔACs int8 | weights float32 "
             "| weights int8 | ms/sample float32 | ms/sample int8 | int8/float32 time |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f, q = r["float32"], r["int8"]
        lines.append(f"| {r['model']} | {r['samples']} | {r['agreement']:.0%} | {f['mean_acs']:,.0f} "
                     f"| {(q['mean_acs'] - f['mean_acs']) / f['mean_acs']:+.2%} | {r['weight_bytes']['float32'] / 1e6:.2f} MB "
                     f"| {r['weight_bytes']['int8'] / 1e6:.2f} MB | {f['median_s'] * 1e3:.0f} | {q['median_s'] * 1e3:.0f} "
                     f"| {q['median_s'] / f['median_s']:.2f} |")
    return "\n".join(lines)


def zoo_models() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "models").glob("*/card.json"))


def table(reports: list[dict]) -> str:
    head = ("| model | samples | float32 acc | int8 acc | agree | ACs/sample float32 | ACs/sample int8 | ΔACs "
            "| weights float32 | weights int8 | ms/sample float32 | ms/sample int8 | int8/float32 time |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in reports:
        f, q = r["float32"], r["int8"]
        d = (q["mean_acs"] - f["mean_acs"]) / f["mean_acs"] if f["mean_acs"] else 0.0
        lines.append(
            f"| {r['model']} | {r['samples']} | {f['accuracy']:.1%} ({f['correct']}) | {q['accuracy']:.1%} "
            f"({q['correct']}) | {r['agreement']:.1%} | {f['mean_acs']:,.0f} | {q['mean_acs']:,.0f} | {d:+.2%} "
            f"| {r['weight_bytes']['float32'] / 1e6:.2f} MB | {r['weight_bytes']['int8'] / 1e6:.2f} MB "
            f"| {f['median_s'] * 1e3:.1f} | {q['median_s'] * 1e3:.1f} | {q['median_s'] / f['median_s']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="*", help="zoo model names (default: every model in models/)")
    p.add_argument("--limit", type=int, help="first N test samples per model")
    p.add_argument("--repeat", type=int, default=1, help="runs per sample and mode; the best is timed")
    p.add_argument("--kernels", action="store_true", help="also time single synaptic layers (float32 vs int8)")
    p.add_argument("--reference", type=int, default=0, metavar="N",
                   help="also time the benchmark's three full configurations on N test gestures (built on first use)")
    p.add_argument("--json", action="store_true", help="one JSON object (per-sample rows included)")
    p.add_argument("--update-doc", metavar="MD", help="also rewrite the marked tables of this doc (docs/QUANTISATION.md)")
    args = p.parse_args(argv)
    names = args.models or zoo_models()
    unknown = [n for n in names if n not in zoo_models()]
    if unknown:
        print(f"quant_report: no zoo model {unknown[0]!r} (known: {', '.join(zoo_models())})", file=sys.stderr)
        return 2
    if args.limit is not None and args.limit < 1 or args.repeat < 1:
        print("quant_report: --limit and --repeat must be >= 1", file=sys.stderr)
        return 2
    reports = [model_report(n, args.limit, args.repeat, not args.json) for n in names]
    kernels = kernel_rows() if args.kernels else None
    reference = reference_rows(args.reference, args.repeat, not args.json) if args.reference else None
    machine = {"cpus": os.cpu_count(), "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
               "note": "shared machine; float32 and int8 interleaved per sample"}
    if args.update_doc:
        import subprocess
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        when = time.strftime("%Y-%m-%d", time.gmtime())
        stamp = (f"Measured {when} at commit {rev.stdout.strip() or '?'}; {machine['cpus']} CPUs, BLAS threads "
                 f"{machine['blas_threads']}, load average {os.getloadavg()[0]:.1f} at the end of the run.")
        blocks = {"models": table(reports) + "\n\n" + stamp, "flips": flips_table(reports)}
        if kernels:
            blocks["kernels"] = kernel_table(kernels)
        if reference:
            blocks["reference"] = reference_table(reference)
        update_doc(Path(args.update_doc), blocks)
    if args.json:
        print(json.dumps({"machine": machine, "models": reports, "kernels": kernels, "reference": reference}))
    else:
        print(table(reports))
        print(f"\n{machine['cpus']} CPUs, BLAS threads {machine['blas_threads']}; {machine['note']}; "
              f"time = median over samples of the best of {args.repeat} run(s)")
        if kernels:
            print("\n" + kernel_table(kernels))
        if reference:
            print("\n" + reference_table(reference))
    return 0


if __name__ == "__main__":
    sys.exit(main())
