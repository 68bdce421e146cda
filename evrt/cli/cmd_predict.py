"""evrt predict MODEL.evrt EVENTS: one clip-mode prediction for a recording, framed by the reference rule."""
from __future__ import annotations

import json
import sys


def register(sub):
    from .options import add_fit, add_threads
    p = sub.add_parser("predict", help="classify one recording as one sample (clip mode, reference framing)")
    p.add_argument("model")
    p.add_argument("events", help="an event file: .npz with t,x,y,p, or any supported recording format")
    p.add_argument("--precision", choices=["float32", "float64", "int8"], default="float32")
    add_fit(p)
    p.add_argument("--json", action="store_true")
    add_threads(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..engine import Session
    from ..errors import EvrtError
    from ..events import validate
    from ..formats import read_recording
    from ..geometry import fit_events, model_sensor
    from ..zoo import resolve_model

    from .options import threads_from
    threads_from(args)
    sess = Session(resolve_model(args.model), precision=args.precision)
    rec = read_recording(args.events)
    if not len(rec.events):  # a header-only or empty file: nothing to fit, nothing to classify
        raise EvrtError(f"{args.events}: no events to classify (the file holds none)")
    fit = fit_events(rec.events, rec.sensor_size, model_sensor(sess.meta), args.fit)
    if fit.message:
        print(f"evrt predict: {fit.message}", file=sys.stderr)
    sensor = model_sensor(sess.meta)
    # the events the model can see; a prediction from none of them would be a confident answer from no input
    ev, report = validate(fit.events, sensor_size=sensor, policy="drop")
    if not len(ev):
        where = f" inside the model's {sensor[0]}x{sensor[1]} sensor" if sensor else ""
        raise EvrtError(f"{args.events}: no events{where} to classify ({report})")
    if not report.ok:
        print(f"evrt predict: warning: {args.events}: {report}", file=sys.stderr)
    res = sess.run_clip(ev)
    k = res.class_index
    out = {"class_index": k, "class_name": sess.class_name(k), "confidence": res.confidence,
           "logits": res.logits.tolist(), "acs": res.acs, "macs": res.macs, "events": int(len(ev)),
           "events_dropped": int(report.dropped), "fit": fit.to_dict()}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['class_name']} (index {k}, p={out['confidence']:.3f}); {res.acs:,} ACs, {res.macs:,} MACs "
              f"over {sess.T} steps, {len(ev):,} events")
        print("logits: " + " ".join(f"{v:.4f}" for v in res.logits))
    return 0
