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
    p.add_argument("--connect", default=EVENTS_ADDR, metavar="ADDR",
                   help=f"event source(s), comma-separated for several (default {EVENTS_ADDR})")
    p.add_argument("--publish", default=PRED_ADDR, metavar="ADDR", help=f"bind predictions here (default {PRED_ADDR})")
    p.add_argument("--pattern", choices=("sub", "pull"), default="sub",
                   help="sub: live (pairs with source --pattern pub), predictions on PUB; pull: replay/eval "
                        "(pairs with push), predictions on PUSH, nothing lost")
    p.add_argument("--print", action="store_true", help="also print each prediction on stdout")
    p.add_argument("--max-streams", type=int, metavar="N", help="exit after N streams ended (END_OF_STREAM)")
    p.add_argument("--idle-exit", type=float, metavar="S", help="exit when nothing arrives for S seconds")
    p.add_argument("--max-sessions", type=int, default=8, metavar="N",
                   help="streams (cameras) kept with their own state at once; a new one evicts the idlest (default 8)")
    p.add_argument("--shard", metavar="K/N", help="take only the streams whose id is K modulo N (N classifiers "
                   "subscribed to one PUB source share its streams, each stream on exactly one of them)")
    add_framing(p)
    add_common(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import zmq

    from ..pipeline.classify import ClassifyWorker, prediction_printer
    from .options import classifier_from, curve_from, describe_framer
    from ..pipeline.metrics import Log, Metrics, stop_on_signals
    from ..errors import EvrtError
    from ..pipeline.sockets import LINGER_MS, drain_and_term, open_watched

    log = Log("classify", args.json)
    shard = parse_shard(args.shard)
    if args.max_sessions < 1:
        raise EvrtError(f"--max-sessions must be at least 1, got {args.max_sessions}")
    if args.idle_exit is not None and not args.idle_exit > 0:
        raise EvrtError(f"--idle-exit must be a positive number of seconds, got {args.idle_exit}")
    clf = classifier_from(args)
    stop = threading.Event()
    restore = stop_on_signals(stop, log)
    ctx = zmq.Context()
    curve = curve_from(args)
    socks, watches = [], []
    try:
        pull = args.pattern == "pull"
        # watched from before bind/connect: refused CURVE peers are logged; a PUSH with no consumer
        # drops (and counts) predictions rather than stalls
        out, out_watch = open_watched(ctx, zmq.PUSH if pull else zmq.PUB, args.publish, True, "prediction consumer",
                                      log, hwm=args.hwm, curve=curve)
        socks.append(out)
        watches.append(out_watch)
        inp, in_watch = open_watched(ctx, zmq.PULL if pull else zmq.SUB, args.connect, False, "event source", log,
                                     hwm=args.hwm, curve=curve)
        socks.append(inp)
        watches.append(in_watch)
        log.info(f"model {args.model}: {len(clf.classes)} classes, a step {describe_framer(clf.framer)}; "
                 f"events from {args.connect} ({'PULL' if pull else 'SUB'}), predictions on {args.publish}")
        worker = ClassifyWorker(clf, inp, out, log=log, metrics=Metrics(args.metrics_every), stop=stop,
                                on_prediction=[prediction_printer(args.json)] if args.print else (),
                                max_sessions=args.max_sessions, shard=shard, peers=out_watch if pull else None,
                                in_peers=in_watch)
        summary = worker.run(max_streams=args.max_streams, idle_exit_s=args.idle_exit)
        log.info("summary", **summary) if args.json else log.info("done: " + json.dumps(summary))
    finally:
        for w in watches:  # their monitor sockets would keep the context from terminating
            w.poll()
            w.close()
        if curve:
            curve.stop()
        # pull (replay/eval): the last predictions must reach the consumer; sub (live): a second at most
        drain_and_term(ctx, socks, stop, log,
                       linger_ms=-1 if args.pattern == "pull" and not stop.is_set() else LINGER_MS)
        restore()
    return 0


def parse_shard(text):
    from ..errors import EvrtError
    if not text:
        return (0, 1)
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise EvrtError(f"--shard must look like K/N (e.g. 0/2), got {text!r}") from None
    if not (n >= 1 and 0 <= k < n):
        raise EvrtError(f"--shard K/N needs 0 <= K < N, got {text!r}")
    return (k, n)
