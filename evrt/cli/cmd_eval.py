"""evrt eval --dataset NAME --root DIR --model MODEL: clip-mode accuracy with the reference framing."""
from __future__ import annotations

import json
import re
import sys

from ..datasets import DATASETS


def register(sub):
    from .options import add_fit, add_threads
    p = sub.add_parser("eval", help="evaluate a model on a labelled dataset (clip mode, reference framing)")
    # --dataset is checked in run(), not by argparse choices, so a wrong name is a one-line error
    p.add_argument("--dataset", required=True, help=f"one of: {', '.join(DATASETS)}")
    p.add_argument("--root", required=True, help="dataset folder, in the dataset's download layout or tonic's "
                                                 "(docs/DATASETS.md)")
    p.add_argument("--model", default=None, help="an .evrt file or a zoo model name (default: the zoo default)")
    p.add_argument("--split", choices=["test", "train", "all"], default="test",
                   help="the public training scripts' split (all: every sample; not for dvsgesture)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate the first N samples only")
    p.add_argument("--order", choices=["recording", "spikingjelly"], default="recording",
                   help="sample order (matters with --limit): recording/label-file order or spikingjelly's")
    p.add_argument("--label-order", choices=["recording", "spikingjelly"], default=None,
                   help="gesture order of the model's outputs, for models without gesture class names "
                        "(e.g. class_0..class_10); when the names are gestures they decide and this is checked")
    p.add_argument("--precision", choices=["float32", "float64", "int8"], default="float32")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes, one thread each (default: the usable cores, unless the first "
                        "sample shows the whole run takes under 3 s in one process); results are identical to "
                        "--workers 1")
    add_fit(p)
    add_threads(p)
    p.add_argument("--json", action="store_true", help="one JSON object on stdout, no progress bar")
    p.set_defaults(func=run)


def output_map(model_classes, dataset_classes, label_order=None) -> list[int]:
    """Model output index -> dataset class index. By name; --label-order only for models whose names
    say nothing (none, or placeholders such as class_0 that match no gesture)."""
    from ..datasets.dvsgesture import SPIKINGJELLY_ORDER
    from ..errors import EvrtError
    from ..evaluate import map_classes

    by_order = None
    if label_order is not None:
        by_order = list(range(11)) if label_order == "recording" else list(SPIKINGJELLY_ORDER)
        if model_classes and len(model_classes) != 11:
            raise EvrtError(f"--label-order needs a model with 11 outputs; this one has {len(model_classes)}")
    try:
        omap = map_classes(model_classes, dataset_classes)
    except EvrtError as e:
        if by_order is not None:
            return by_order
        raise EvrtError(f"{e}; if the outputs are DVS128 Gesture in a known order, say which with "
                        "--label-order recording|spikingjelly") from None
    if by_order is not None and omap != by_order:
        raise EvrtError(f"--label-order {label_order} contradicts the model's class names "
                        f"({', '.join(model_classes[:3])}, ...); drop the option to map by name")
    return omap


_PLACEHOLDER = re.compile(r"class_(\d+)$")


def index_map(model_classes, dataset_classes) -> list[int]:
    """Model output -> dataset class for the folder datasets: by name when the model's names are the
    dataset's; by position when they are placeholders (``class_0``, ``class_1``, ... as converted
    checkpoints without names get) and the counts agree, since a model trained on the dataset's
    loader has its outputs in the loader's class order."""
    from ..errors import EvrtError
    from ..evaluate import map_classes

    model_classes = list(model_classes or [])
    try:
        return map_classes(model_classes, dataset_classes)
    except EvrtError:
        placeholders = all((m := _PLACEHOLDER.match(str(n))) and int(m.group(1)) == i
                           for i, n in enumerate(model_classes))
        if not placeholders:
            raise
        if len(model_classes) != len(dataset_classes):
            raise EvrtError(f"the model has {len(model_classes)} unnamed outputs, the dataset "
                            f"{len(dataset_classes)} classes") from None
        return list(range(len(model_classes)))


def run(args) -> int:
    from pathlib import Path

    from ..engine import Session
    from ..errors import EvrtError
    from ..evaluate import evaluate
    from ..geometry import describe_fit
    from ..parallel import EvalJob, evaluate_workers, open_job, read_sample, usable_cores
    from ..zoo import DEFAULT_MODEL, resolve_model

    name = args.dataset.lower()
    if name not in DATASETS:
        raise EvrtError(f"unknown dataset {args.dataset!r} (known: {', '.join(DATASETS)})")
    root = Path(args.root)
    if not root.is_dir():
        raise EvrtError(f"dataset root {root} does not exist or is not a folder")
    if args.limit is not None and args.limit < 1:
        raise EvrtError("--limit must be at least 1")
    if args.workers is not None and args.workers < 1:
        raise EvrtError("--workers must be at least 1")

    from ..kernels.threads import set_threads
    from .options import threads_from
    threads = threads_from(args)
    model = resolve_model(args.model or DEFAULT_MODEL)
    sess = Session(model, precision=args.precision, mode="clip")
    job = EvalJob(str(Path(model).resolve()), args.precision, name, str(root.resolve()), args.split, args.order,
                  args.fit)
    ds, plan = open_job(job, sess)
    classes = list(ds.classes)
    if name == "dvsgesture":
        omap = output_map(sess.classes, classes, args.label_order)
    else:
        if args.label_order is not None:
            raise EvrtError("--label-order is for dvsgesture only")
        omap = index_map(sess.classes, classes)
    n = len(ds) if args.limit is None else min(args.limit, len(ds))
    if n == 0:
        raise EvrtError(f"{root}: the {args.split} split has no samples")
    if plan is not None:  # said before the run, measured on the first sample
        print(f"evrt eval: {name} {describe_fit(plan, ds[0].events)} (counted on the first sample)",
              file=sys.stderr)
    fitted = {"events": 0, "dropped": 0}
    workers = min(args.workers or usable_cores(), n)

    if workers > 1:
        set_threads(1)   # this process warms up the kernels the one-thread workers run, and hands out samples
        def count(r):
            fitted["events"] += r["read_events"]
            fitted["dropped"] += r["dropped"]
        # the default adapts: a short evaluation stays in this process (workers take ~1 s to start)
        res = evaluate_workers(sess, job, n, workers, progress=not args.json, classes=classes, output_map=omap,
                               on_sample=count, data=(ds, plan), adaptive=args.workers is None,
                               serial_threads=threads)
        workers = res.extra["workers"]
    else:
        def samples():
            for i in range(n):
                ev, label, sname, n_read, dropped = read_sample(ds, plan, i)
                fitted["events"] += n_read
                fitted["dropped"] += dropped
                yield ev, label, sname
        res = evaluate(sess, samples(), progress=not args.json, classes=classes, output_map=omap, total=n)
    res.extra = {"dataset": name, "root": str(root), "layout": ds.layout, "split": args.split,
                 "model": model, "precision": args.precision, "T": sess.T, "workers": workers,
                 "fit": {**(plan.to_dict() if plan else {"mode": None}), **fitted}}
    from ..neurobench import neurobench_metrics
    res.extra["neurobench"] = neurobench_metrics(sess.report(), sess.graph, args.precision, res.n)
    if args.json:
        print(json.dumps(res.to_dict()))
        return 0
    print(f"{name} {args.split} ({ds.layout} layout, {n} samples), model {model}, {args.precision}, T={sess.T}, "
          f"{workers} worker{'s' if workers > 1 else ''}")
    print(res.to_text())
    if plan is not None:
        print(f"fit {plan.mode}: {fitted['dropped']:,} of {fitted['events']:,} events dropped")
    return 0
