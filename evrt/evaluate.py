"""Clip-mode evaluation: accuracy, per-class accuracy, confusion matrix, ACs/MACs/energy per sample.

Labels and predictions are compared in the *dataset's* class space, not the model's: a model's output
index k is mapped to a dataset class by name (`map_classes`), so a checkpoint trained with
spikingjelly's folder order and one trained in recording order both score correctly.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import numpy as np

from .counters import PJ_PER_AC, PJ_PER_MAC
from .errors import EvrtError
from .events import EVENT_DTYPE, make_events
from .progress import Progress


def class_key(name: str) -> str:
    """A class name compared across models and datasets: "Right Hand Wave", "right-hand-wave" and
    "right_hand_wave" are the same class."""
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


_norm = class_key   # the old private name


def map_classes(model_classes, dataset_classes) -> list[int]:
    """Output index k of the model -> index into ``dataset_classes``, matched by (normalised) name.
    Raises EvrtError naming the model classes that have no dataset class."""
    model_classes = list(model_classes or [])
    if not model_classes:
        raise EvrtError("the model has no class names (meta['classes']); cannot map its outputs to the "
                        "dataset's classes")
    index = {_norm(n): i for i, n in enumerate(dataset_classes)}
    missing = [n for n in model_classes if _norm(n) not in index]
    if missing:
        shown = ", ".join(repr(n) for n in missing[:4]) + (" ..." if len(missing) > 4 else "")
        raise EvrtError(f"{len(missing)} of the model's {len(model_classes)} class names match no dataset "
                        f"class ({shown}); dataset classes: {', '.join(dataset_classes)}")
    out = [index[_norm(n)] for n in model_classes]
    if len(set(out)) != len(out):
        raise EvrtError("the model's class names are not unique after normalisation: "
                        + ", ".join(model_classes))
    return out


@dataclass
class EvalResult:
    classes: list                 # dataset class names; rows/cols of the confusion matrix
    confusion: np.ndarray         # (K, K) int: rows true class, cols predicted class
    predictions: list             # one dict per sample
    mean_acs: float
    mean_macs: float
    mean_energy_pj: float
    wall_s: float                 # the whole loop, data reading included (warm-up excluded)
    compute_s: float              # inside run_clip only
    warmup_s: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.confusion.sum())

    @property
    def correct(self) -> int:
        return int(np.trace(self.confusion))

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else float("nan")

    def per_class(self) -> dict:
        """name -> {n, correct, accuracy (None when the class has no samples)}."""
        out = {}
        for i, name in enumerate(self.classes):
            n = int(self.confusion[i].sum())
            c = int(self.confusion[i, i])
            out[name] = {"n": n, "correct": c, "accuracy": c / n if n else None}
        return out

    def to_dict(self) -> dict:
        return {"n": self.n, "correct": self.correct, "accuracy": self.accuracy,
                "per_class": self.per_class(), "classes": list(self.classes),
                "confusion": self.confusion.tolist(),
                "mean_acs": self.mean_acs, "mean_macs": self.mean_macs,
                "mean_energy_pj": self.mean_energy_pj, "wall_s": self.wall_s, "compute_s": self.compute_s,
                "samples_per_s": self.n / self.wall_s if self.wall_s > 0 else None,
                "warmup_s": self.warmup_s, **self.extra, "predictions": self.predictions}

    def to_text(self) -> str:
        lines = [f"accuracy: {self.accuracy:.4f} ({self.correct}/{self.n})", "per class:"]
        w = max([len(c) for c in self.classes] + [5])
        for name, r in self.per_class().items():
            acc = f"{r['accuracy']:.3f}" if r["accuracy"] is not None else "  -  "
            lines.append(f"  {name:{w}s} {acc} ({r['correct']}/{r['n']})")
        lines.append("confusion matrix (rows true, columns predicted):")
        lines.extend(_matrix_text(self.confusion, self.classes))
        lines.append(f"per sample: {self.mean_acs:,.0f} ACs, {self.mean_macs:,.0f} MACs, "
                     f"{self.mean_energy_pj / 1e6:.4f} uJ (45 nm)")
        rate = self.n / self.wall_s if self.wall_s > 0 else float("nan")
        lines.append(f"wall time: {self.wall_s:.2f} s ({rate:.2f} samples/s, {self.compute_s:.2f} s in the "
                     f"model); JIT warm-up {self.warmup_s:.2f} s (excluded)")
        return "\n".join(lines)


def _matrix_text(m: np.ndarray, names) -> list:
    # columns are numbered so wide class names do not blow up the table; the legend is the row labels
    w = max(len(names[i]) for i in range(len(names))) if len(names) else 1
    cw = max(3, len(str(int(m.max()))) if m.size else 1)
    head = " " * (w + 6) + " ".join(f"{j:>{cw}d}" for j in range(len(names)))
    rows = [head]
    for i, name in enumerate(names):
        rows.append(f"  {i:>2d} {name:{w}s} " + " ".join(f"{int(v):>{cw}d}" for v in m[i]))
    return rows


def _unpack(s):
    """A sample: an object with .events/.label(/.name), or a tuple (events, label[, name])."""
    if isinstance(s, tuple):
        return s[0], int(s[1]), (s[2] if len(s) > 2 else None)
    return s.events, int(s.label), getattr(s, "name", None)


def run_tiny(session, dense: bool = False) -> None:
    """One tiny clip through `session` (one step for time-window framing, which has no window in an
    empty clip: run_clip refuses it): no events, or with dense an event at every pixel."""
    ev = pixel_events(session.meta) if dense else np.empty(0, EVENT_DTYPE)
    if session.meta.get("framing", {}).get("kind") == "time_window":
        session.step(ev)
    else:
        session.run_clip(ev)


def warm_up(session) -> float:
    """Compile the JIT kernels before anything is timed (Session.warm_up: every variant a clip may pick,
    on an empty clip and on one with an event at every pixel); returns its seconds."""
    t0 = time.perf_counter()
    session.warm_up(lambda dense: run_tiny(session, dense), streaming=False)
    return time.perf_counter() - t0


def pixel_events(meta) -> np.ndarray:
    """Two events (ON and OFF) at every pixel of the model's sensor, in 1 ms: the densest tiny input."""
    w, h = (meta.get("frame") or {}).get("sensor_size") or (2, 2)
    n = int(w) * int(h)
    i = np.arange(2 * n)
    return make_events(i * 1000 // (2 * n), (i // 2) % int(w), (i // 2) // int(w), i % 2)


class _Scores:
    """The scoring shared by the serial loop and the worker processes: samples added in index order."""

    def __init__(self, classes, output_map):
        self.classes = classes
        self.K = K = len(classes)
        self.omap = np.asarray(output_map if output_map is not None else range(K), dtype=np.int64)
        if self.omap.size and (self.omap.min() < 0 or self.omap.max() >= K):
            raise EvrtError("output_map points outside the class list")
        self.confusion = np.zeros((K, K), np.int64)
        self.preds, self.acs, self.macs = [], 0, 0

    def check_label(self, i, label, name) -> None:
        if not 0 <= label < self.K:
            raise EvrtError(f"sample {name or i}: label {label} outside 0..{self.K - 1}")

    def add(self, i, label, name, n_events, res) -> None:
        k = res.class_index
        if k >= len(self.omap):
            raise EvrtError(f"the model has {len(res.logits)} outputs but only {len(self.omap)} are mapped")
        pred = int(self.omap[k])
        self.confusion[label, pred] += 1
        self.acs += res.acs
        self.macs += res.macs
        self.preds.append({"index": i, "name": name, "true": self.classes[label], "pred": self.classes[pred],
                           "output": k, "confidence": res.confidence, "correct": pred == label,
                           "events": int(n_events), "acs": int(res.acs), "macs": int(res.macs)})

    def result(self, wall, compute, warmup_s) -> EvalResult:
        n = max(len(self.preds), 1)
        return EvalResult(self.classes, self.confusion, self.preds, self.acs / n, self.macs / n,
                          (self.acs * PJ_PER_AC + self.macs * PJ_PER_MAC) / n, wall, compute, warmup_s)


def evaluate(session, samples, progress: bool = True, *, classes=None, output_map=None,
             total: int | None = None, warmup: bool = True) -> EvalResult:
    """Run every sample through ``session.run_clip`` and score it.

    samples: iterable of objects with ``.events`` and ``.label`` (or tuples ``(events, label[, name])``),
    the label an index into ``classes``. classes: the dataset's class names (default: the model's).
    output_map: model output index -> index into ``classes`` (default identity; see ``map_classes``).
    progress: draw a bar on stderr when it is a terminal.
    """
    classes = list(classes if classes is not None else session.classes)
    if not classes:
        raise EvrtError("no class names: pass classes= or use a model with meta['classes']")
    scores = _Scores(classes, output_map)
    if total is None and hasattr(samples, "__len__"):
        total = len(samples)
    warmup_s = warm_up(session) if warmup else 0.0
    compute = 0.0
    t0 = time.perf_counter()
    with Progress(total, "eval", enabled=None if progress else False) as bar:
        for i, s in enumerate(samples):
            events, label, name = _unpack(s)
            scores.check_label(i, label, name)
            c0 = time.perf_counter()
            res = session.run_clip(events)
            compute += time.perf_counter() - c0
            scores.add(i, label, name, len(events), res)
            bar.update()
    return scores.result(time.perf_counter() - t0, compute, warmup_s)


def score_clip(session, events, truth: str | None = None) -> dict:
    """One sample in clip mode (framed by the model's reference rule, T steps from a fresh state):
    predicted class, confidence, ACs/MACs and compute time; with `truth` (a class name) also whether
    the prediction names the same class."""
    t0 = time.perf_counter()
    res = session.run_clip(events)
    dt = time.perf_counter() - t0
    k = res.class_index
    name = session.class_name(k)
    out = {"pred": name, "class_index": k, "confidence": res.confidence, "events": int(len(events)),
           "acs": int(res.acs), "macs": int(res.macs), "latency_ms": dt * 1e3}
    if truth is not None:
        out.update(true=truth, correct=class_key(name) == class_key(truth))
    return out


__all__ = ["EvalResult", "class_key", "evaluate", "map_classes", "score_clip", "warm_up"]
