"""`evrt classify`: receive event messages, step a model, publish predictions as JSON."""
from __future__ import annotations

import json
import threading


def register(sub) -> None:
    from .options import EVENTS_ADDR, PRED_ADDR, add_common, add_framing
    p = sub.add_parser("classify", help="classify an event stream received over ZeroMQ",
                       description="Receive events (from `evrt source`), run the model one window at a time and "
                                   "publish predictions ([b'pred', JSON]) for `evrt watch` or any subscriber.")
    p.add_argument("--model", required=True, metavar="M.evrt")
    p.add_argument("--connect", default=EVENTS_ADDR, metavar="ADDR", help=f"event source (default {EVENTS_ADDR})")
    p.add_argument("--publish", default=PRED_ADDR, metavar="ADDR", help=f"bind predictions here (default {PRED_ADDR})")
    p.add_argument("--pattern", choices=("sub", "pull"), default="sub",
                   help="sub: live (pairs with source --pattern pub), predictions on PUB; pull: replay/eval "
                        "(pairs with push), predictions on PUSH, nothing lost")
    p.add_argument("--print", action="store_true", help="also print each prediction on stdout")
    p.add_argument("--max-streams", type=int, metavar="N", help="exit after N streams ended (END_OF_STREAM)")
    p.add_argument("--idle-exit", type=float, metavar="S", help="exit when nothing arrives for S seconds")
    add_framing(p)
    add_common(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import zmq

    from ..pipeline.classify import ClassifyWorker, prediction_printer
    from .options import classifier_from, curve_from, describe_framer
    from ..pipeline.metrics import Log, Metrics, stop_on_signals
    from ..pipeline.sockets import LINGER_MS, drain_and_term, open_socket

    log = Log("classify", args.json)
    clf = classifier_from(args)
    stop = threading.Event()
    restore = stop_on_signals(stop, log)
    ctx = zmq.Context()
    curve = curve_from(args)
    socks = []
    try:
        pull = args.pattern == "pull"
        out = open_socket(ctx, zmq.PUSH if pull else zmq.PUB, args.publish, bind=True, hwm=args.hwm, curve=curve,
                          log=log)
        socks.append(out)
        inp = open_socket(ctx, zmq.PULL if pull else zmq.SUB, args.connect, bind=False, hwm=args.hwm, curve=curve)
        socks.append(inp)
        log.info(f"model {args.model}: {len(clf.classes)} classes, a step {describe_framer(clf.framer)}; "
                 f"events from {args.connect} ({'PULL' if pull else 'SUB'}), predictions on {args.publish}")
        worker = ClassifyWorker(clf, inp, out, log=log, metrics=Metrics(args.metrics_every), stop=stop,
                                on_prediction=[prediction_printer(args.json)] if args.print else ())
        summary = worker.run(max_streams=args.max_streams, idle_exit_s=args.idle_exit)
        log.info("summary", **summary) if args.json else log.info("done: " + json.dumps(summary))
    finally:
        if curve:
            curve.stop()
        # pull (replay/eval): the last predictions must reach the consumer; sub (live): a second at most
        drain_and_term(ctx, socks, stop, log,
                       linger_ms=-1 if args.pattern == "pull" and not stop.is_set() else LINGER_MS)
        restore()
    return 0
