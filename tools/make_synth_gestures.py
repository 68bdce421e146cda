#!/usr/bin/env python
"""Generate a synthetic DVS128-Gesture-like data set in the original DvsGesture layout.

    python tools/make_synth_gestures.py --out DIR --users N --seed S [--first-user K] [--progress]

Writes DIR/userNN_<lighting>.aedat (AEDAT 3.1), DIR/userNN_<lighting>_labels.csv,
DIR/trials_to_train.txt, DIR/trials_to_test.txt and DIR/synth_stats.json. Same arguments -> the
same bytes. Read it back with ``evrt.datasets.DVSGesture(DIR, split='train')``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from evrt.synth import SynthConfig, write_dataset


def main(argv=None) -> int:
    d = SynthConfig()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="output folder (created)")
    ap.add_argument("--users", type=int, required=True, help="number of subjects (>= 2): users 1..N")
    ap.add_argument("--first-user", type=int, default=1,
                    help="write only users K..N (each user's recording does not depend on the others)")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--test-users", type=int, default=None,
                    help="last N users form the test split (default: a quarter of the users written, at least 1)")
    ap.add_argument("--sessions", type=int, default=d.sessions,
                    help="lighting conditions (recordings) per user, up to 5 distinct names")
    ap.add_argument("--duration", type=float, default=d.duration, help="seconds per gesture (real: ~6)")
    ap.add_argument("--gap", type=float, default=d.gap, help="seconds of rest between gestures")
    ap.add_argument("--frame-rate", type=float, default=d.frame_rate, help="render rate, Hz")
    ap.add_argument("--theta", type=float, default=d.theta, help="contrast threshold (log units)")
    ap.add_argument("--sigma", type=float, default=d.sigma, help="threshold mismatch (log units)")
    ap.add_argument("--noise-hz", type=float, default=d.noise_hz, help="background activity per pixel")
    ap.add_argument("--shake-px", type=float, default=d.shake_px, help="camera shake std (px)")
    ap.add_argument("--progress", action="store_true", help="print one line per recording")
    a = ap.parse_args(argv)
    if a.sessions > 5:
        ap.error("--sessions: at most 5 (one per lighting name)")
    cfg = SynthConfig(duration=a.duration, gap=a.gap, sessions=a.sessions, test_users=a.test_users,
                      frame_rate=a.frame_rate, theta=a.theta, sigma=a.sigma, noise_hz=a.noise_hz,
                      shake_px=a.shake_px)
    t0 = time.perf_counter()
    done = [0]
    total = (a.users - a.first_user + 1) * a.sessions

    def progress(msg):
        done[0] += 1
        print(f"[{done[0]}/{total}] {time.perf_counter() - t0:6.1f}s {msg}", file=sys.stderr, flush=True)

    try:
        stats = write_dataset(a.out, a.users, a.seed, cfg, progress if a.progress else None, a.first_user)
    except ValueError as e:
        ap.error(str(e))
    recs = stats["recordings"]
    counts = np.concatenate([r["sample_events"] for r in recs])
    secs = np.concatenate([r["sample_s"] for r in recs])
    stats["summary"] = dict(
        recordings=len(recs), samples=int(len(counts)), events=int(sum(r["events"] for r in recs)),
        sample_events_min=int(counts.min()), sample_events_median=int(np.median(counts)),
        sample_events_max=int(counts.max()), sample_seconds_mean=float(secs.mean()),
        gesture_rate_kev_s_median=float(np.median(counts / secs) / 1e3),
        gesture_rate_kev_s_mean=float(counts.sum() / secs.sum() / 1e3),
        bytes=int(sum(p.stat().st_size for p in a.out.iterdir() if p.suffix == ".aedat")))
    with open(a.out / "synth_stats.json", "w") as f:
        json.dump(stats, f, indent=1, sort_keys=True)
        f.write("\n")
    s = stats["summary"]
    print(f"{s['recordings']} recordings, {s['samples']} samples, {s['events']} events, "
          f"{s['bytes'] / 1e6:.2f} MB of .aedat, median {s['gesture_rate_kev_s_median']:.1f} k ev/s "
          f"in gestures, {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
