"""evrt info PATH: what a recording holds — format, sensor, events, duration, rate, polarity, labels."""
from __future__ import annotations

import json
import os
import sys

import numpy as np


def register(sub):
    p = sub.add_parser("info", help="summarise an event recording (any supported format)")
    p.add_argument("path", help="a recording: AEDAT 2.0/3.1/4, N-MNIST .bin, .npz or .npy")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--dataset", default=None, help="PATH is a dataset folder of this kind (default: detected; "
                                                    "dvsgesture, cifar10dvs, nmnist, ncaltech101)")
    p.set_defaults(func=run)


def summarize(rec) -> dict:
    """The numbers ``evrt info`` prints, as a JSON-ready dict."""
    ev = rec.events
    n = int(len(ev))
    t = ev["t"]
    on = int(np.count_nonzero(ev["on"]))
    dur = rec.duration_us
    out = {
        "path": rec.path, "format": rec.format, "camera": getattr(rec, "camera", None),
        "sensor_size": list(rec.sensor_size) if rec.sensor_size else None,
        "events": n,
        "t_first_us": int(t.min()) if n else None, "t_last_us": int(t.max()) if n else None,
        "duration_us": dur,
        "mean_rate_ev_per_s": (n / (dur * 1e-6)) if dur > 0 else None,
        "on_events": on, "off_events": n - on, "on_fraction": (on / n) if n else None,
        "x_range": [int(ev["x"].min()), int(ev["x"].max())] if n else None,
        "y_range": [int(ev["y"].min()), int(ev["y"].max())] if n else None,
        "time_sorted": bool(n < 2 or not np.any(t[1:] < t[:-1])),
        "samples": None,
    }
    if rec.labels is not None:
        per, counts = {}, []
        for label, sample in rec.samples():
            per[str(label)] = per.get(str(label), 0) + 1
            counts.append(len(sample))
        out["samples"] = {"count": len(rec.labels), "per_label": dict(sorted(per.items(), key=lambda kv: int(kv[0]))),
                          "events_per_sample": {"min": min(counts), "mean": float(np.mean(counts)),
                                                "max": max(counts)} if counts else None}
    return out


def _text(s: dict) -> str:
    lines = [f"file:        {s['path']}", f"format:      {s['format']}"]
    if s.get("camera"):
        lines.append(f"camera:      {s['camera']}")
    size = s["sensor_size"]
    lines.append("sensor:      " + (f"{size[0]} x {size[1]} (width x height)" if size else
                                    "not stated in the file" + (f" (events span x {s['x_range'][0]}..{s['x_range'][1]},"
                                                                f" y {s['y_range'][0]}..{s['y_range'][1]})"
                                                                if s["events"] else "")))
    lines.append(f"events:      {s['events']:,}")
    if s["events"]:
        lines.append(f"time:        {s['t_first_us']:,} .. {s['t_last_us']:,} µs "
                     f"(duration {s['duration_us'] / 1e6:.6f} s){'' if s['time_sorted'] else ', NOT time-sorted'}")
        rate = s["mean_rate_ev_per_s"]
        lines.append("mean rate:   " + (f"{rate:,.0f} ev/s" if rate is not None else "n/a (zero duration)"))
        lines.append(f"polarity:    {s['on_events']:,} ON / {s['off_events']:,} OFF "
                     f"({100 * s['on_fraction']:.1f} % ON)")
    smp = s["samples"]
    if smp is not None:
        lines.append(f"samples:     {smp['count']} labelled")
        for label, k in smp["per_label"].items():
            lines.append(f"  label {label:>3}: {k}")
        if smp["events_per_sample"]:
            e = smp["events_per_sample"]
            lines.append(f"  events per sample: min {e['min']:,}, mean {e['mean']:,.0f}, max {e['max']:,}")
    return "\n".join(lines)


def _dataset_text(d: dict) -> str:
    lines = [f"dataset:     {d['dataset']} ({d['layout']} layout) at {d['root']}",
             f"sensor:      {d['sensor_size'][0]} x {d['sensor_size'][1]} (width x height)" if d["sensor_size"]
             else "sensor:      -",
             f"classes:     {len(d['classes'] or [])}"]
    for split, s in d["splits"].items():
        if "error" in s:
            lines.append(f"{split + ':':12s} none ({s['error']})")
            continue
        lines.append(f"{split + ':':12s} {s['samples']:,} samples")
        lines += [f"  {i:>3d} {c}: {k:,}" for i, (c, k) in enumerate(s["per_class"].items())]
    return "\n".join(lines)


def run_dataset(args) -> int:
    """``evrt info DIR``: a dataset folder's layout, classes (in output order) and samples per split."""
    from ..datasets import DATASETS, describe_dataset, find_dataset
    from ..errors import EvrtError

    name = (args.dataset or "").lower() or find_dataset(args.path)
    if name is None:
        raise EvrtError(f"{args.path}: a folder, but not one of the dataset layouts evrt knows "
                        f"({', '.join(DATASETS)}); give a recording file or --dataset NAME")
    if name not in DATASETS:
        raise EvrtError(f"unknown dataset {args.dataset!r} (known: {', '.join(DATASETS)})")
    d = describe_dataset(name, args.path)
    if d["layout"] is None:
        raise EvrtError(f"{args.path}: not a {name} folder: " + "; ".join(s["error"] for s in d["splits"].values()))
    print(json.dumps(d) if args.json else _dataset_text(d))
    return 0


def run(args) -> int:
    from ..formats import read_recording

    if os.path.isdir(args.path):
        return run_dataset(args)

    rec = read_recording(args.path)
    for note in rec.notes:  # e.g. labelled spans holding no events, which are not samples
        print(f"evrt info: warning: {rec.path}: {note}", file=sys.stderr)
    s = summarize(rec)
    print(json.dumps(s) if args.json else _text(s))
    return 0
