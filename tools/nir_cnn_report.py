"""The NIR paper's N-MNIST CNN (models/nir-nmnist-cnn) on the shipped real N-MNIST test recordings:
evrt (imported with --nir-profile sinabs) beside sinabs (sinabs.nir.from_nir on tonic ToFrame(1 ms)
frames, as the paper's script does), per recording and per layer, in float64 and float32.

    python tools/nir_cnn_report.py --json docs/nir/cnn_nmnist.json      (needs the nir-dev extra)

Writes a JSON record (predictions, per-layer agreement, ACs) that docs/NIR.md quotes.
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the record here")
    ap.add_argument("--limit", type=int, help="first N recordings only")
    args = ap.parse_args(argv)

    import nir
    from nir_reference import sinabs_run, tonic_frames
    from evrt.engine import Session
    from evrt.nir import import_nir
    from nir_reference import nmnist_recordings, read_events
    from evrt.nir.run import time_window_frames
    from evrt.progress import track

    graph = nir.read(str(MODEL))
    eg = import_nir(MODEL, profile="sinabs", time_window_us=1000)
    sess = {p: Session(eg, precision=p) for p in ("float64", "float32")}
    items = nmnist_recordings(DATA)[: args.limit]
    rows = []
    layer_eq = {p: {} for p in sess}
    for path, label in track(items, desc="N-MNIST", enabled=True):
        ev = read_events(path)
        ref_frames = tonic_frames(path)
        framing_equal = bool(np.array_equal(time_window_frames(ev, 1000, (34, 34)), ref_frames))
        row = {"id": path.stem, "label": label, "steps": len(ref_frames), "framing_equal": framing_equal}
        for prec, s in sess.items():
            out, layers = sinabs_run(graph, ref_frames, double=prec == "float64")
            s.trace = True
            s.reset_counters()
            r = s.run_clip(ev)
            tr = s.reference_traces()
            row[f"sinabs_{prec}"] = int(np.argmax(out))
            row[f"evrt_{prec}"] = r.class_index
            row[f"out_equal_{prec}"] = bool(np.array_equal(out, r.step_logits.sum(axis=0)))
            row[f"acs_{prec}"] = int(r.acs)
            for name, sp in layers.items():
                e = tr[name][0].reshape(sp.shape)
                eq, n = layer_eq[prec].get(name, (0, 0))
                layer_eq[prec][name] = (eq + int((e == sp).sum()), n + sp.size)
            s.trace = False
        rows.append(row)

    n = len(rows)
    summary = {"recordings": n}
    for prec in sess:
        summary[prec] = {
            "evrt_accuracy": sum(r[f"evrt_{prec}"] == r["label"] for r in rows) / n,
            "sinabs_accuracy": sum(r[f"sinabs_{prec}"] == r["label"] for r in rows) / n,
            "same_prediction": sum(r[f"evrt_{prec}"] == r[f"sinabs_{prec}"] for r in rows),
            "same_output_counts": sum(r[f"out_equal_{prec}"] for r in rows),
            "layer_agreement": {k: eq / tot for k, (eq, tot) in layer_eq[prec].items()},
            "acs_per_sample": float(np.mean([r[f"acs_{prec}"] for r in rows])),
        }
    summary["framing_equal"] = sum(r["framing_equal"] for r in rows)
    rec = {"model": str(MODEL.relative_to(ROOT)), "profile": "sinabs", "time_window_us": 1000,
           "summary": summary, "rows": rows}
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rec, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
