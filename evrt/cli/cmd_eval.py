"""evrt eval --dataset dvsgesture --root DIR --model MODEL: clip-mode accuracy with the reference framing."""
from __future__ import annotations

import json

DATASETS = ("dvsgesture",)


def register(sub):
    p = sub.add_parser("eval", help="evaluate a model on a labelled dataset (clip mode, reference framing)")
    # --dataset is checked in run(), not by argparse choices, so a wrong name is a one-line error
    p.add_argument("--dataset", required=True, help=f"one of: {', '.join(DATASETS)}")
    p.add_argument("--root", required=True, help="dataset folder (DVS128 Gesture original layout or tonic's)")
    p.add_argument("--model", default=None, help="an .evrt file or a zoo model name (default: the zoo default)")
    p.add_argument("--split", choices=["test", "train"], default="test")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate the first N samples only")
    p.add_argument("--order", choices=["recording", "spikingjelly"], default="recording",
                   help="sample order (matters with --limit): recording/label-file order or spikingjelly's")
    p.add_argument("--label-order", choices=["recording", "spikingjelly"], default=None,
                   help="gesture order of the model's outputs, for models without gesture class names "
                        "(e.g. class_0..class_10); when the names are gestures they decide and this is checked")
    p.add_argument("--precision", choices=["float32", "float64"], default="float32")
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


def run(args) -> int:
    from pathlib import Path

    from ..engine import Session
    from ..errors import EvrtError
    from ..evaluate import evaluate
    from ..zoo import DEFAULT_MODEL, resolve_model

    if args.dataset.lower() not in DATASETS:
        raise EvrtError(f"unknown dataset {args.dataset!r} (known: {', '.join(DATASETS)})")
    root = Path(args.root)
    if not root.is_dir():
        raise EvrtError(f"dataset root {root} does not exist or is not a folder")
    if args.limit is not None and args.limit < 1:
        raise EvrtError("--limit must be at least 1")

    from ..datasets.dvsgesture import CLASS_NAMES, DVSGesture

    model = resolve_model(args.model or DEFAULT_MODEL)
    sess = Session(model, precision=args.precision, mode="clip")
    ds = DVSGesture(root, split=args.split, order=args.order, label_order="gesture")
    classes = list(CLASS_NAMES)
    omap = output_map(sess.classes, classes, args.label_order)
    n = len(ds) if args.limit is None else min(args.limit, len(ds))
    if n == 0:
        raise EvrtError(f"{root}: the {args.split} split has no samples")
    # labels in gesture-id space; the model's outputs are mapped into it by name (omap)
    samples = ((s.events, s.gesture_id, s.name) for s in (ds[i] for i in range(n)))
    res = evaluate(sess, samples, progress=not args.json, classes=classes, output_map=omap, total=n)
    res.extra = {"dataset": args.dataset.lower(), "root": str(root), "layout": ds.layout, "split": args.split,
                 "model": model, "precision": args.precision, "T": sess.T}
    from ..neurobench import neurobench_metrics
    res.extra["neurobench"] = neurobench_metrics(sess.report(), sess.graph, args.precision, res.n)
    if args.json:
        print(json.dumps(res.to_dict()))
        return 0
    print(f"{args.dataset.lower()} {args.split} ({ds.layout} layout, {n} samples), model {model}, "
          f"{args.precision}, T={sess.T}")
    print(res.to_text())
    return 0
