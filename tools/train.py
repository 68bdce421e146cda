#!/usr/bin/env python
"""Train a small spiking transformer of one family on DVS128-Gesture-like data (original DvsGesture layout).

    python tools/train.py --family sdt --root DIR --out DIR [--test-root DIR] [--epochs N] [--seed S]
                          [--device cpu|cuda] [--embed 64 --heads 4 --depth 1 --T 16 ...]

    # make a larger synthetic training set first (evrt.synth's realistic defaults, one contrast threshold
    # per user cycling through --gen-theta), in parallel:
    python tools/train.py --generate 100 --gen-seed 7 --gen-theta 0.2,0.25,0.3 --root data/synth100 --workers 16

    # frame each split once and keep the frames beside the data (--cache-frames), then train on them;
    # --fresh-root scores a set of users never seen in training once, after the final epoch:
    python tools/train.py --prepare sdt,spikingresformer,csdformer --root data/synth100 --workers 16
    python tools/train.py --family sdt --root data/synth100 --cache-frames --fresh-root data/fresh ...

Framing is the family's reference framing, the same `FrameSpec` the converted evrt graph uses
(`evrt.framing.clip_frames`): Spikformer / SDT / RTFormer 2×128×128 counts, T frames split by event number;
SpikingResformer antialiased 128→64 resize + sum channel (3×64×64); CSDformer one count frame (T = 1)
binned to its 32×32 grid. Labels are gesture ids 0..10 (recording order, `evrt.datasets.dvsgesture`
class names). Loss: cross-entropy on the clip-mean logits; AdamW, linear warm-up then cosine decay;
membranes (spikingjelly state, TSBN step counters) reset after every batch; augmentation = a random
translation of each clip's frames (= shifting its events; no flips: they would swap left/right classes).
The final epoch is saved (no selection on the test split), in the family's public checkpoint container,
with args from which `evrt convert` infers T, heads and framing; `<out>/train_log.json` holds the history.

N-MNIST (`--dataset nmnist`, Spikformer / SDT / RTFormer): 2×34×34 count frames, T frames split by event
number, labels = digits 0..9. `--root` is either the slayerPytorch subset (`<id>.bs2` 40-bit files with
`train1K.txt`) or the official layout (`Train/<digit>/*.bin`); the last `--val-count` training recordings
(by id) are held out for validation, which is what is reported during training. `--test-root` (official
layout, its `Test` folder) is scored once, after the final epoch, and decides nothing.

    python tools/train.py --dataset nmnist --family sdt --root /data/nmnist_small \
        --test-root examples/data/nmnist --out runs/sdt-nmnist --T 8 --pooling-stat 1100 --shift 3
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FAMILIES = ("spikformer", "sdt", "spikingresformer", "rtformer", "csdformer")
# shipped set: tools/make_synth_gestures.py --users 6 --first-user 4 --test-users 2 --seed 2026 --gap 0.3 --theta 0.3
SHIPPED_SYNTH = dict(gap=0.3, theta=0.3)

CKPT_NAME = {"spikformer": "checkpoint.pth", "sdt": "model_best.pth.tar", "rtformer": "model_best.pth.tar",
             "spikingresformer": "checkpoint_max_acc1.pth", "csdformer": "checkpoint.pth"}


# ----------------------------------------------------------------------------------------------- data
def _gen_one(job):
    from evrt.formats.aedat31 import write_aedat31, write_labels_csv
    from evrt.synth import SynthConfig, make_recording
    out, u, s, seed, cfg = job
    cfg = SynthConfig(**cfg)
    ev, labels, lighting = make_recording(seed, u, s, cfg)
    name = f"user{u:02d}_{lighting}"
    write_aedat31(Path(out) / f"{name}.aedat", ev, header_lines=[f"Synthetic evrt.synth seed={seed}"])
    write_labels_csv(Path(out) / f"{name}_labels.csv", labels)
    counts = [int(np.count_nonzero((ev["t"] >= a) & (ev["t"] < b))) for a, b in zip(labels["start"], labels["end"])]
    return u, s, name, dict(name=name, events=len(ev), sample_events=counts,
                            sample_s=((labels["end"] - labels["start"]) * 1e-6).tolist(),
                            on_fraction=float(ev["on"].mean()))


def generate(out, users: int, seed: int, test_users: int, sessions: int = 1, workers: int = 1,
             thetas=None, first_user: int = 1) -> dict:
    """Users ``first_user..users`` with evrt.synth's default (realistic) settings, made in parallel; user u
    gets the contrast threshold ``thetas[(u - first_user) % len(thetas)]`` (default: the generator's).
    With one threshold these are the files `evrt.synth.write_dataset` makes for the same arguments."""
    from dataclasses import asdict
    from multiprocessing import Pool
    from evrt.synth import SynthConfig
    cfg = SynthConfig(sessions=sessions, test_users=test_users)
    thetas = list(thetas) if thetas else [cfg.theta]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(str(out), u, s, seed, dict(asdict(cfg), theta=thetas[(u - first_user) % len(thetas)]))
            for u in range(first_user, users + 1) for s in range(sessions)]
    t0 = time.time()
    if workers > 1:
        with Pool(workers) as p:
            res = p.map(_gen_one, jobs, chunksize=1)
    else:
        res = [_gen_one(j) for j in jobs]
    res.sort(key=lambda r: (r[0], r[1]))
    train = [r[2] + ".aedat" for r in res if r[0] <= users - test_users]
    test = [r[2] + ".aedat" for r in res if r[0] > users - test_users]
    for split, names in (("train", train), ("test", test)):
        with open(out / f"trials_to_{split}.txt", "w", newline="") as f:
            f.write("".join(n + "\r\n" for n in names))
    stats = dict(config=asdict(cfg), thetas=thetas, seed=seed, users=users, first_user=first_user,
                 test_users=test_users, recordings=[r[3] for r in res])
    counts = np.concatenate([r["sample_events"] for r in stats["recordings"]])
    secs = np.concatenate([r["sample_s"] for r in stats["recordings"]])
    stats["summary"] = dict(recordings=len(res), samples=int(len(counts)), events=int(sum(r["events"] for r in stats["recordings"])),
                            sample_events_median=int(np.median(counts)), sample_seconds_mean=float(secs.mean()),
                            gesture_rate_kev_s_mean=float(counts.sum() / secs.sum() / 1e3),
                            gesture_rate_kev_s_median=float(np.median(counts / secs) / 1e3),
                            seconds=round(time.time() - t0, 1))
    with open(out / "synth_stats.json", "w") as f:
        json.dump(stats, f, indent=1, sort_keys=True)
    sm = stats["summary"]
    print(f"generated {len(res)} recordings, {len(counts)} samples in {time.time() - t0:.1f}s -> {out}: "
          f"{sm['sample_seconds_mean']:.2f} s per sample, {sm['gesture_rate_kev_s_mean']:.1f} k ev/s in gestures (mean)",
          flush=True)
    return stats


NMNIST_FAMILIES = ("spikformer", "sdt", "rtformer")   # the plain 2-channel count-frame families


def frame_spec(family: str, T: int, dataset: str = "dvsgesture"):
    from evrt.framing import FrameSpec
    if dataset == "nmnist":
        return FrameSpec(T, (34, 34))
    if family == "spikingresformer":
        return FrameSpec(T, (128, 128), resize="antialias", sum_channel=True)
    if family == "csdformer":
        return FrameSpec(1, (128, 128))
    return FrameSpec(T, (128, 128))


def _frames_one(job):
    ev, spec = job
    from evrt.framing import clip_frames
    return clip_frames(ev, spec, dtype=np.float32).astype(np.float16)


def _frames_recording(job):
    """Frames of some samples of one recording, for each spec: read the recording once."""
    src, rows, specs = job
    from evrt.formats.aedat31 import cut_samples, read_aedat31, read_labels_csv
    from evrt.framing import clip_frames
    src = Path(src)
    cut = cut_samples(read_aedat31(src), read_labels_csv(src.with_name(src.stem + "_labels.csv")), source=str(src))
    return ([np.stack([clip_frames(cut[r], sp, dtype=np.float32).astype(np.float16) for r in rows]) for sp in specs],
            [len(cut[r]) for r in rows])


def _cache_paths(root, split, spec, limit):
    import hashlib
    key = hashlib.sha1(json.dumps([spec.to_dict(), limit], sort_keys=True).encode()).hexdigest()[:12]
    return Path(root) / f".frames_{split}_{key}.npy", Path(root) / f".frames_{split}_{key}.json"


def prepare_frames(root, split: str, specs, limit: int | None = None, workers: int = 1):
    """Frame a split once for several specs, reading each recording once; cache beside the data."""
    from evrt.datasets import DVSGesture
    ds = DVSGesture(root, split=split)
    entries = ds._entries[:len(ds) if limit is None else min(limit, len(ds))]
    groups = {}
    for i, e in enumerate(entries):
        groups.setdefault(str(e[0]), []).append(e[1])
    jobs = [(src, rows, list(specs)) for src, rows in groups.items()]
    t0 = time.time()
    if workers > 1 and len(jobs) > 1:
        from multiprocessing import Pool
        with Pool(min(workers, len(jobs))) as p:
            res = p.map(_frames_recording, jobs, chunksize=1)
    else:
        res = [_frames_recording(j) for j in jobs]
    meta = dict(labels=[int(e[2]) for e in entries], names=[e[3] for e in entries],
                events=[n for r in res for n in r[1]])
    for k, sp in enumerate(specs):
        npy, js = _cache_paths(root, split, sp, limit)
        tmp = npy.with_name(npy.name + ".tmp.npy")
        np.save(tmp, np.concatenate([r[0][k] for r in res]))
        tmp.replace(npy)
        js.write_text(json.dumps(dict(meta, spec=sp.to_dict())))
    print(f"framed {root} {split}: {len(entries)} samples x {len(specs)} framings in {time.time() - t0:.1f}s", flush=True)


def load_split(root, split: str, spec, limit: int | None = None, workers: int = 1, cache: bool = False):
    """(frames float16 [N, T, C, H, W], labels int64 [N] = gesture id, names, events per sample).
    ``cache``: use (or make) the frames `prepare_frames` keeps beside the data."""
    if cache:
        npy, js = _cache_paths(root, split, spec, limit)
        if not npy.exists():
            prepare_frames(root, split, [spec], limit, workers)
        meta = json.loads(js.read_text())
        return np.load(npy), np.array(meta["labels"], np.int64), meta["names"], np.array(meta["events"])
    from evrt.datasets import DVSGesture
    ds = DVSGesture(root, split=split)
    samples = [ds[i] for i in range(len(ds) if limit is None else min(limit, len(ds)))]
    jobs = [(s.events, spec) for s in samples]
    if workers > 1 and len(jobs) > 64:
        from multiprocessing import Pool
        with Pool(workers) as p:
            frames = p.map(_frames_one, jobs, chunksize=16)
    else:
        frames = [_frames_one(j) for j in jobs]
    return (np.stack(frames), np.array([s.gesture_id for s in samples], np.int64), [s.name for s in samples],
            np.array([len(s.events) for s in samples]))


def _frames(events, spec, workers: int):
    jobs = [(ev, spec) for ev in events]
    if workers > 1 and len(jobs) > 64:
        from multiprocessing import Pool
        with Pool(workers) as p:
            return np.stack(p.map(_frames_one, jobs, chunksize=16))
    return np.stack([_frames_one(j) for j in jobs])


def nmnist_recordings(root, split: str, limit: int | None = None):
    """[(name, label, events)] of an N-MNIST split: the slayerPytorch subset (`<id>.bs2` or `<id>.bin`
    files listed with their digit in train1K.txt / test100.txt, in id order) or the official layout
    (Train/Test digit folders, evrt.datasets.nmnist's order)."""
    from evrt.formats.atis_bin import read_atis_bin
    root = Path(root)
    listing = root / {"train": "train1K.txt", "test": "test100.txt"}[split]
    if not listing.exists():
        from evrt.datasets.nmnist import NMNIST
        ds = NMNIST(root, split=split)
        n = len(ds) if limit is None else min(limit, len(ds))
        return [(s.name, s.label, s.events) for s in (ds[i] for i in range(n))]
    rows = []
    for line in listing.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            rid, label = (int(v) for v in line.split()[:2])
            rows.append((rid, label))
    rows.sort()
    out = []
    for rid, label in rows[:limit]:
        path = next((root / f"{rid}{ext}" for ext in (".bs2", ".bin") if (root / f"{rid}{ext}").exists()), None)
        if path is None:
            raise SystemExit(f"{listing}: recording {rid} has no {rid}.bs2 or {rid}.bin in {root}")
        out.append((str(rid), label, read_atis_bin(path).events))
    return out


def load_nmnist(root, split: str, spec, limit: int | None = None, workers: int = 1):
    """(frames float16 [N, T, 2, 34, 34], labels int64 [N] = digit, names, events per sample)."""
    recs = nmnist_recordings(root, split, limit)
    return (_frames([e for _, _, e in recs], spec, workers), np.array([y for _, y, _ in recs], np.int64),
            [n for n, _, _ in recs], np.array([len(e) for _, _, e in recs]))


# ---------------------------------------------------------------------------------------------- models
def default_hparams(family: str) -> dict:
    base = dict(embed=64, heads=4, depth=1, mlp_ratio=4.0, T=16, pooling_stat="1111", window=4,
                lr=2e-3, weight_decay=0.02, batch_size=32, shift=8)
    if family == "spikingresformer":
        base.update(planes="16,32,64", res_heads="1,2,4", patches="4,2,1", blocks="1,1,1", group=16, T=8,
                    shift=4, lr=2e-3)
    if family == "csdformer":
        base.update(embed=64, heads=2, depth=1, mlp_ratio=2.0, L=4, in_scale=0.1, img_size=32, T=1,
                    lr=3e-3, weight_decay=1e-4, batch_size=64)
    return base


def build(family: str, hp: dict):
    import importlib
    K = int(hp.get("num_classes", 11))
    ints = lambda s: tuple(int(v) for v in str(s).split(","))  # noqa: E731
    if family == "csdformer":
        R = importlib.import_module("tools.reference.csdformer")
        return R.build_model(img_size=hp["img_size"], embed_dim=hp["embed"], num_heads=hp["heads"], depth=hp["depth"],
                             mlp_ratio=hp["mlp_ratio"], L=hp["L"], num_classes=K, in_scale=hp["in_scale"])
    from tools.reference import RTFormer, SDT, Spikformer, SpikingResformer
    if family == "spikformer":
        return Spikformer(num_classes=K, embed_dims=hp["embed"], num_heads=hp["heads"], mlp_ratios=hp["mlp_ratio"],
                          depths=hp["depth"], in_channels=2, T=hp["T"])
    if family == "sdt":
        return SDT(num_classes=K, embed_dims=hp["embed"], num_heads=hp["heads"], mlp_ratio=hp["mlp_ratio"],
                   depths=hp["depth"], in_channels=2, T=hp["T"], pooling_stat=hp["pooling_stat"])
    if family == "rtformer":
        return RTFormer(num_classes=K, embed_dims=hp["embed"], num_heads=hp["heads"], mlp_ratio=hp["mlp_ratio"],
                        depths=hp["depth"], in_channels=2, T=hp["T"], pooling_stat=hp["pooling_stat"],
                        window=hp["window"])
    if family == "spikingresformer":
        return SpikingResformer("dvsg", num_classes=K, T=hp["T"], img_size=64, in_channels=3,
                                planes=ints(hp["planes"]), num_heads=ints(hp["res_heads"]),
                                patch_sizes=ints(hp["patches"]), blocks=ints(hp["blocks"]),
                                group_size=int(hp["group"]), neuron="plif")
    raise ValueError(family)


def forward(family: str, model, xb):
    """xb [B, T, C, H, W] float32 -> clip logits [B, K]."""
    if family == "csdformer":
        from tools.reference.csdformer import model_input
        return model(model_input(xb, model.cfg["img_size"]))
    return model(xb.transpose(0, 1).contiguous())


def reset(model):
    from tools.reference.neurons import reset_states
    reset_states(model)


def random_shift(xb, max_px: int, gen):
    """Translate each clip by its own (dy, dx) in [-max_px, max_px], zero fill (= shifting its events)."""
    import torch
    if max_px <= 0:
        return xb
    B, H, W = xb.shape[0], xb.shape[-2], xb.shape[-1]
    d = torch.randint(-max_px, max_px + 1, (B, 2), generator=gen).tolist()
    out = torch.zeros_like(xb)
    for i, (dy, dx) in enumerate(d):
        out[i, ..., max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = \
            xb[i, ..., max(-dy, 0):H + min(-dy, 0), max(-dx, 0):W + min(-dx, 0)]
    return out


def evaluate(family, model, x, y, dev, batch_size=64):
    import torch
    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(dev).float()
            preds.append(forward(family, model, xb).argmax(1).cpu())
            reset(model)
    p = torch.cat(preds).numpy() if preds else np.zeros(0, np.int64)
    return float((p == y).mean()) if len(y) else float("nan"), p


def checkpoint_args(family, hp, a, extra) -> argparse.Namespace:
    ns = dict(model=family, T=hp["T"], num_heads=hp["heads"], embed_dims=hp["embed"], depths=hp["depth"],
              mlp_ratio=hp["mlp_ratio"], num_classes=int(hp.get("num_classes", 11)), seed=a.seed,
              epochs=extra["epochs"], lr=hp["lr"], weight_decay=hp["weight_decay"], batch_size=hp["batch_size"],
              data=str(a.root), dataset=a.dataset, label_order="digit" if a.dataset == "nmnist" else "gesture",
              framing=frame_spec(family, hp["T"], a.dataset).to_dict(), shift_aug=hp["shift"])
    if family in ("sdt", "rtformer"):
        ns["pooling_stat"] = hp["pooling_stat"]
    if family == "rtformer":
        ns["window"] = hp["window"]
    if family == "spikingresformer":
        ns.update(img_size=64, input_size=64, planes=hp["planes"], res_heads=hp["res_heads"], patches=hp["patches"],
                  blocks=hp["blocks"], group_size=hp["group"])
    if family == "csdformer":
        ns.update(L=hp["L"], in_scale=hp["in_scale"], img_size=hp["img_size"], T=1)
    return argparse.Namespace(**ns)


def save(family, model, path, args, epoch, metric):
    import torch
    from tools.reference import checkpoints as C
    if family == "spikformer":
        C.save_spikformer_checkpoint(model, path, args, epoch=epoch, max_test_acc1=metric)
    elif family == "sdt":
        C.save_sdt_checkpoint(model, path, args, epoch=epoch, metric=metric)
    elif family == "rtformer":
        C.save_rtformer_checkpoint(model, path, args, epoch=epoch, metric=metric)
    elif family == "spikingresformer":
        ck = C.save_spikingresformer_checkpoint(model, path, epoch=epoch, max_acc1=metric)
        ck["args"] = args          # main.py's container plus the args (T, input size) for evrt convert
        torch.save(ck, path)
    elif family == "csdformer":
        from tools.reference.csdformer import save_checkpoint
        save_checkpoint(model, path, args)


# ----------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", choices=FAMILIES)
    ap.add_argument("--dataset", choices=("dvsgesture", "nmnist"), default="dvsgesture")
    ap.add_argument("--root", type=Path, required=True,
                    help="training data (original DvsGesture layout; nmnist: slayer subset or official layout)")
    ap.add_argument("--val-count", type=int, default=150,
                    help="nmnist: the last N training recordings (by id) are held out for validation")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--test-root", type=Path, default=None,
                    help="data whose test split is reported each epoch (default: --root)")
    ap.add_argument("--train-splits", default="train", help="splits of --root to train on, e.g. train,test")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if os.environ.get("CUDA_VISIBLE_DEVICES", "x") != "" else "cpu")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="time budget: after epoch 1 the epoch count (and cosine schedule) shrinks to fit")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N samples of each split (smoke test)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--val", action="store_true", help="at the end, also report accuracy on --root's own test split")
    ap.add_argument("--generate", type=int, default=None, metavar="USERS",
                    help="first generate a synthetic set with users up to USERS into --root (evrt.synth defaults)")
    ap.add_argument("--gen-seed", type=int, default=7)
    ap.add_argument("--gen-test-users", type=int, default=4)
    ap.add_argument("--gen-first-user", type=int, default=1, help="generate users K..USERS only")
    ap.add_argument("--gen-theta", default=None,
                    help="comma-separated contrast thresholds, one per user in turn (default: the generator's)")
    ap.add_argument("--prepare", default=None, metavar="FAMILIES",
                    help="only frame --root's splits (and --fresh-root's test split) for these families "
                         "(comma-separated, with --T etc.) into the frame cache, then exit")
    ap.add_argument("--cache-frames", action="store_true",
                    help="keep each split's frames beside the data (.frames_*.npy) and reuse them")
    ap.add_argument("--fresh-root", type=Path, default=None,
                    help="after the final epoch, also score this folder's test split (users never seen in training)")
    ap.add_argument("--tf32", action="store_true",
                    help="CUDA speed-ups while training: TF32 matrix products and cuDNN autotuning (the saved "
                         "model is evaluated in float32 everywhere else)")
    for k in ("embed", "heads", "depth", "T", "window", "group", "L", "img_size", "batch_size", "shift"):
        ap.add_argument(f"--{k.replace('_', '-')}", dest=k, type=int, default=None)
    for k in ("mlp_ratio", "lr", "weight_decay", "in_scale"):
        ap.add_argument(f"--{k.replace('_', '-')}", dest=k, type=float, default=None)
    for k in ("pooling_stat", "planes", "res_heads", "patches", "blocks"):
        ap.add_argument(f"--{k.replace('_', '-')}", dest=k, default=None)
    a = ap.parse_args(argv)

    if a.generate:
        if not (a.root / "trials_to_train.txt").exists():
            thetas = [float(v) for v in a.gen_theta.split(",")] if a.gen_theta else None
            generate(a.root, a.generate, a.gen_seed, a.gen_test_users, workers=a.workers, thetas=thetas,
                     first_user=a.gen_first_user)
        if not a.family and not a.prepare:
            return 0
    if a.prepare:
        specs = []
        for fam in a.prepare.split(","):
            if fam not in FAMILIES:
                ap.error(f"--prepare: unknown family {fam!r}")
            T = 1 if fam == "csdformer" else (a.T or default_hparams(fam)["T"])
            sp = frame_spec(fam, T, a.dataset)
            if sp not in specs:
                specs.append(sp)
        for root, split in [(a.root, "train"), (a.root, "test")] + ([(a.fresh_root, "test")] if a.fresh_root else []):
            prepare_frames(root, split, specs, a.limit, a.workers)
        return 0
    if not a.family or not a.out:
        ap.error("--family and --out are required for training")

    import torch
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    torch.backends.cuda.matmul.allow_tf32 = bool(a.tf32)
    torch.backends.cudnn.allow_tf32 = bool(a.tf32)
    torch.backends.cudnn.benchmark = bool(a.tf32)   # fixed shapes: let cuDNN pick its fastest kernels
    dev = torch.device(a.device if (a.device != "cuda" or torch.cuda.is_available()) else "cpu")
    fam = a.family
    hp = default_hparams(fam)
    for k in list(hp) + ["L", "img_size", "in_scale"]:
        v = getattr(a, k, None)
        if v is not None:
            hp[k] = v
    if fam == "csdformer":
        hp["T"] = 1
    nm = a.dataset == "nmnist"
    if nm:
        if fam not in NMNIST_FAMILIES:
            ap.error(f"--dataset nmnist trains {', '.join(NMNIST_FAMILIES)} (2-channel count frames), not {fam}")
        hp["num_classes"] = 10
    spec = frame_spec(fam, hp["T"], a.dataset)
    a.out.mkdir(parents=True, exist_ok=True)
    log_path = a.out / "train_log.json"
    t0 = time.time()
    if nm:   # monitor = held-out validation recordings; the test recordings are scored once, at the end
        x_all, y_all, names_all, n_ev = load_nmnist(a.root, "train", spec, a.limit, a.workers)
        nv = min(a.val_count, len(y_all) // 2)
        x_tr, y_tr, x_va, y_va = x_all[:-nv], y_all[:-nv], x_all[-nv:], y_all[-nv:]
        val_names = names_all[-nv:]
        x_te, y_te, te_names, _ = load_nmnist(a.test_root or a.root, "test", spec, None, a.workers)
        x_mon, y_mon = x_va, y_va
    else:
        xs, ys = [], []
        for split in a.train_splits.split(","):
            x, y, _, _ = load_split(a.root, split, spec, a.limit, a.workers, a.cache_frames)
            xs.append(x)
            ys.append(y)
        x_tr, y_tr = np.concatenate(xs), np.concatenate(ys)
        x_te, y_te, te_names, _ = load_split(a.test_root or a.root, "test", spec, a.limit, a.workers,
                                             a.cache_frames and a.test_root is None)
        x_mon, y_mon = x_te, y_te
    print(f"[{fam}] data: train {x_tr.shape} test {x_te.shape} frames {spec.to_dict()} "
          f"({time.time() - t0:.1f}s)  hparams {hp}", flush=True)
    X = torch.from_numpy(x_tr).to(dev)
    Y = torch.from_numpy(y_tr).to(dev)
    Xte = torch.from_numpy(x_te)
    Xmon = torch.from_numpy(x_mon)

    model = build(fam, hp).to(dev)
    params = sum(p.numel() for p in model.parameters())
    if fam == "csdformer":
        from tools.reference.csdformer import calibrate
        with torch.no_grad():
            calibrate(model, forward_input_csd(model, X[:64].float()))
    opt = torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    bs = hp["batch_size"]
    steps_per_epoch = max(1, math.ceil(len(X) / bs))
    plan = {"epochs": a.epochs}
    warm = min(steps_per_epoch, 100)

    def lr_at(step):
        total = plan["epochs"] * steps_per_epoch
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gen = torch.Generator().manual_seed(a.seed)
    history = []
    step = 0
    t_train = time.time()
    epoch = 0
    stopped = None
    while epoch < plan["epochs"]:
        if a.max_minutes and time.time() - t_train > a.max_minutes * 60 * 1.15:
            stopped = f"time guard: stopped after {epoch} of {plan['epochs']} epochs ({time.time() - t_train:.0f}s)"
            print(f"[{fam}] {stopped}", flush=True)
            break
        model.train()
        perm = torch.randperm(len(X), generator=gen).to(dev)
        tot_loss, tot_ok, n = 0.0, 0, 0
        te0 = time.time()
        for i in range(0, len(X), bs):
            idx = perm[i:i + bs]
            xb = random_shift(X[idx].float(), hp["shift"], gen)
            logits = forward(fam, model, xb)
            loss = torch.nn.functional.cross_entropy(logits, Y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            reset(model)
            if fam == "csdformer":
                with torch.no_grad():
                    for m in model.quantisers().values():
                        m.theta.clamp_(min=1e-3)
            tot_loss += float(loss.detach()) * len(idx)
            tot_ok += int((logits.argmax(1) == Y[idx]).sum())
            n += len(idx)
        epoch += 1
        ep_s = time.time() - te0
        if epoch in (1, 2) and a.max_minutes:
            # epoch 1 includes start-up (cuDNN autotuning, allocator growth): fit again after epoch 2 with its
            # own time, which may give back epochs (never more than --epochs)
            left = a.max_minutes * 60 - (time.time() - t_train)
            fit = min(a.epochs, max(epoch, epoch + int(left / max(ep_s, 1e-3))))
            if fit != plan["epochs"]:
                print(f"[{fam}] time budget {a.max_minutes} min: {ep_s:.1f}s/epoch after epoch {epoch} -> {fit} "
                      f"epochs instead of {plan['epochs']}", flush=True)
                plan["epochs"] = fit
        do_eval = epoch % max(1, plan["epochs"] // 10) == 0 or epoch == plan["epochs"]
        mon = "val" if nm else "test"
        te_acc = evaluate(fam, model, Xmon, y_mon, dev)[0] if do_eval else None
        row = dict(epoch=epoch, loss=tot_loss / n, train_acc=tot_ok / n, lr=sched.get_last_lr()[0],
                   epoch_s=round(ep_s, 2))
        row[f"{mon}_acc"] = te_acc
        history.append(row)
        print(f"[{fam}] epoch {epoch}/{plan['epochs']} loss {row['loss']:.4f} train {row['train_acc']:.3f} "
              + (f"{mon} {te_acc:.3f} " if te_acc is not None else "") + f"({ep_s:.1f}s, {time.time() - t0:.0f}s total)",
              flush=True)
    train_s = time.time() - t_train
    torch.backends.cuda.matmul.allow_tf32 = False   # the reported evaluations run in plain float32
    torch.backends.cudnn.allow_tf32 = False
    te_acc, te_pred = evaluate(fam, model, Xte, y_te, dev)
    val_acc = None
    if nm:
        val_acc, val_pred = evaluate(fam, model, Xmon, y_mon, dev)
        print(f"[{fam}] validation (last {len(y_mon)} training recordings): {val_acc:.3f}", flush=True)
    elif a.val:
        x_va, y_va, _, _ = load_split(a.root, "test", spec, a.limit, a.workers, a.cache_frames)
        val_acc = evaluate(fam, model, torch.from_numpy(x_va), y_va, dev)[0]
        print(f"[{fam}] validation ({a.root} test split, {len(y_va)} samples): {val_acc:.3f}", flush=True)
    fresh = None
    if a.fresh_root and not nm:
        x_fr, y_fr, fr_names, fr_ev = load_split(a.fresh_root, "test", spec, a.limit, a.workers, a.cache_frames)
        fr_acc, fr_pred = evaluate(fam, model, torch.from_numpy(x_fr), y_fr, dev)
        fresh = dict(root=str(a.fresh_root), acc=fr_acc, n=int(len(y_fr)), correct=int((fr_pred == y_fr).sum()),
                     pred=fr_pred.tolist(), true=y_fr.tolist(), names=fr_names, events_mean=float(fr_ev.mean()))
        print(f"[{fam}] fresh users ({a.fresh_root} test split, {len(y_fr)} samples): {fr_acc:.3f}", flush=True)
    model = model.cpu().float().eval()
    reset(model)
    ckpt_path = a.out / CKPT_NAME[fam]
    args = checkpoint_args(fam, hp, a, plan)
    save(fam, model, ckpt_path, args, epoch, te_acc)
    log = dict(family=fam, hparams=hp, params=params, checkpoint=ckpt_path.name, framing=spec.to_dict(),
               train_samples=int(len(X)), train_root=str(a.root), train_splits=a.train_splits,
               test_root=str(a.test_root or a.root), test_acc_device=te_acc, val_acc=val_acc, test_pred_device=te_pred.tolist(),
               test_names=te_names, dataset=a.dataset, epochs=epoch, epochs_planned=plan["epochs"], epochs_asked=a.epochs,
               stopped=stopped, fresh=fresh, tf32=bool(a.tf32), seed=a.seed, train_s=round(train_s, 1),
               device=str(dev), gpu=torch.cuda.get_device_name(dev) if dev.type == "cuda" else None, threads=torch.get_num_threads() if dev.type == "cpu" else None, torch=torch.__version__, history=history,
               command="python tools/train.py " + " ".join(sys.argv[1:] if argv is None else argv))
    if nm:
        log.update(val_names=val_names, val_count=int(len(y_mon)), val_pred=val_pred.tolist(),
                   train_names=names_all[:len(y_tr)], train_events_mean=float(n_ev[:len(y_tr)].mean()))
    log_path.write_text(json.dumps(log, indent=1))
    print(f"[{fam}] done: test {te_acc:.3f}, {params} params, {train_s:.0f}s training -> {ckpt_path}", flush=True)
    return 0


def forward_input_csd(model, xb):
    from tools.reference.csdformer import model_input
    return model_input(xb, model.cfg["img_size"])


if __name__ == "__main__":
    sys.exit(main())
