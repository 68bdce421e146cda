"""Synthetic recordings in the ORIGINAL DVS128 Gesture layout.

One recording per (user, lighting): the subject performs the 11 gestures in class order 1..11 (as in
the real recordings), each for ``duration`` s (±10 %), separated by ``gap`` s of rest pose; the label
interval covers the gesture including its 0.3 s ramp in and out of the rest pose. Output:
``userNN_<lighting>.aedat`` (AEDAT 3.1), ``userNN_<lighting>_labels.csv`` and
``trials_to_train.txt`` / ``trials_to_test.txt`` (the last ``test_users`` users are the test split,
so test subjects are never seen in training, like the real split of users 1-23 / 24-29).

Every random draw comes from ``np.random.SeedSequence([seed, user, session])``: the same seed and
config give byte-identical files (on the same platform: libm ``log``/``sin`` may differ in the last
bit elsewhere, which can move a threshold crossing).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..formats.aedat31 import EVENT_DTYPE, LABEL_DTYPE, write_aedat31, write_labels_csv
from . import kinematics as kin
from .scene import LIGHTINGS, PAD, background, shake_path
from .sensor import background_activity, simulate

RAMP_S = 0.3


@dataclass
class SynthConfig:
    duration: float = 6.0          # s per gesture (the real data: approx. 6 s, see __init__)
    gap: float = 0.5               # s of rest between gestures
    sessions: int = 1              # lighting conditions per user
    test_users: int | None = None  # default: max(1, users // 4)
    frame_rate: float = 500.0      # render rate (Hz); timestamps are interpolated between frames
    theta: float = 0.15            # contrast threshold (log units): sets the event rate, see __init__
    sigma: float = 0.021           # per-pixel threshold mismatch (log units; DVS128: 2.1 %)
    refractory_us: int = 300
    noise_hz: float = 0.1          # background activity per pixel at illuminance 1 (scales as 1/illum)
    shake_px: float = 0.15         # camera shake (std, px)


def make_recording(seed: int, user: int, session: int, cfg: SynthConfig):
    """``(events, labels, lighting)`` of one recording: EVENT_DTYPE sorted by t, LABEL_DTYPE with
    class 1..11, and the lighting name used in the file name."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, user, session]))
    urng = np.random.default_rng(np.random.SeedSequence([seed, user]))  # the subject is per user
    subj = kin.Subject.random(urng)
    lighting = list(LIGHTINGS)[(user + session) % len(LIGHTINGS)]  # vary it even with 1 session
    illum = LIGHTINGS[lighting] * rng.uniform(0.85, 1.15)

    # timeline: lead-in rest, then gestures 0..10 with gaps
    durs = cfg.duration * rng.uniform(0.9, 1.1, 11)
    gaps = cfg.gap * rng.uniform(0.8, 1.2, 12)
    starts = gaps[0] + np.concatenate(([0.0], np.cumsum(durs[:-1] + gaps[1:-1])))
    total = starts[-1] + durs[-1] + gaps[-1]
    dt = 1.0 / cfg.frame_rate
    t = np.arange(int(np.ceil(total / dt)) + 1) * dt
    F = len(t)

    # body sway over the whole recording, wrists at rest by default
    sway = rng.uniform(0, 2 * np.pi, 2)
    # (held for 20 ms at a time so a still subject leaves the renderer idle between updates)
    ts = t[(np.arange(F) // max(1, int(cfg.frame_rate / 50))) * max(1, int(cfg.frame_rate / 50))]
    cx = subj.cx + 0.6 * np.sin(2 * np.pi * 0.21 * ts + sway[0])
    cy = subj.cy + 0.3 * np.sin(2 * np.pi * 0.17 * ts + sway[1])
    WR = WL = None
    for g in range(11):
        sel = (t >= starts[g]) & (t < starts[g] + durs[g])
        tg = t[sel] - starts[g]
        R, L, restR, restL = kin.gesture_targets(g, tg, subj, rng)
        if WR is None:
            WR = np.repeat(restR[:1], F, 0)
            WL = np.repeat(restL[:1], F, 0)
        w = kin._smoothstep(np.minimum(tg / RAMP_S, (durs[g] - tg) / RAMP_S))[:, None]
        WR[sel] = restR[:1] + w * (R - restR[:1])
        WL[sel] = restL[:1] + w * (L - restL[:1])
    prims = kin.body_primitives(subj, WR, WL, cx, cy)

    bg = background(rng)
    shake = shake_path(rng, F, cfg.frame_rate, cfg.shake_px, update_hz=60.0)
    light = np.full(F, illum)
    t0_us = int(rng.integers(100_000, 5_000_000))  # real files do not start at 0
    ts, xs, ys, ps = simulate(prims, subj.reflectances(), subj.textures(), bg, PAD, shake, light,
                              frame_rate=cfg.frame_rate, t0_us=t0_us, rng=rng, theta=cfg.theta,
                              sigma=cfg.sigma, refractory_us=cfg.refractory_us)
    t_end = t0_us + int(round(t[-1] * 1e6))
    nt, nx, ny, npol = background_activity(rng, t0_us, t_end, rate_hz=cfg.noise_hz / illum,
                                           hot_pixels=int(rng.integers(0, 3)))
    ev = np.empty(len(ts) + len(nt), EVENT_DTYPE)
    ev["t"] = np.concatenate([ts, nt])
    ev["x"] = np.concatenate([xs, nx])
    ev["y"] = np.concatenate([ys, ny])
    ev["on"] = np.concatenate([ps, npol])
    ev = ev[np.argsort(ev["t"], kind="stable")]

    labels = np.zeros(11, LABEL_DTYPE)
    labels["class"] = np.arange(1, 12)
    labels["start"] = t0_us + np.round(starts * 1e6).astype(np.int64)
    labels["end"] = t0_us + np.round((starts + durs) * 1e6).astype(np.int64)
    return ev, labels, lighting


def write_dataset(out_dir, users: int, seed: int, cfg: SynthConfig | None = None, progress=None,
                  first_user: int = 1):
    """Write a synthetic DvsGesture folder of users ``first_user .. users``; return a small stats dict.
    ``progress(msg)`` is called after each recording. A user's recordings depend only on (seed, user,
    session, cfg), so ``first_user`` picks a subset of the same set (e.g. to ship only its last users)."""
    cfg = cfg or SynthConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_users = users - first_user + 1
    n_test = cfg.test_users if cfg.test_users is not None else max(1, n_users // 4)
    if first_user < 1 or n_users < 2 or not 1 <= n_test < n_users:
        raise ValueError("need first_user >= 1, at least 2 users and 1 <= test_users < users")
    train, test, stats = [], [], []
    for u in range(first_user, users + 1):
        for s in range(cfg.sessions):
            ev, labels, lighting = make_recording(seed, u, s, cfg)
            name = f"user{u:02d}_{lighting}"
            write_aedat31(out / f"{name}.aedat", ev, header_lines=[f"Synthetic evrt.synth seed={seed}"])
            write_labels_csv(out / f"{name}_labels.csv", labels)
            (test if u > users - n_test else train).append(f"{name}.aedat")
            dur = (labels["end"] - labels["start"]) * 1e-6
            counts = [int(np.count_nonzero((ev["t"] >= a) & (ev["t"] < b)))
                      for a, b in zip(labels["start"], labels["end"])]
            stats.append(dict(name=name, events=len(ev), span_s=float((ev["t"][-1] - ev["t"][0]) * 1e-6),
                              sample_events=counts, sample_s=dur.tolist(),
                              on_fraction=float(ev["on"].mean())))
            if progress:
                rate = np.sum(counts) / dur.sum()
                progress(f"{name}: {len(ev)} events, samples {min(counts)}..{max(counts)} events, "
                         f"{rate / 1e3:.1f} k ev/s in gestures")
    for split, names in (("train", train), ("test", test)):
        with open(out / f"trials_to_{split}.txt", "w", newline="") as f:
            f.write("".join(n + "\r\n" for n in names))
    return dict(config=asdict(cfg), seed=seed, users=users, first_user=first_user, test_users=n_test,
                recordings=stats)
