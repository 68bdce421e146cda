"""`evrt serve`: camera (or recording) -> model -> console, in one command.

Threads in one process, joined by inproc:// sockets, rather than three processes: the hand-over is a
pointer (no copy, no TCP), there is one thing to start and stop, and the model is loaded once. The
step holds the GIL, but the source thread only needs it briefly per packet (a driver read or a sleep),
so it is not starved. The sockets are the same PUB/SUB or PUSH/PULL pair `source` and `classify` use,
so serve behaves exactly like the two commands run separately (`--publish` adds the same prediction
socket for `evrt watch`).
"""
from __future__ import annotations

import json
import threading


def register(sub) -> None:
    from .options import add_common, add_fit, add_framing, add_mapping
    from ..pipeline.source import CAMERA_HELP
    p = sub.add_parser("serve", help="camera -> model -> console in one command",
                       description="Run a source, the classifier and a console sink together. " + CAMERA_HELP)
    p.add_argument("--camera", default="auto", metavar="SPEC", help=CAMERA_HELP + " (default auto)")
    p.add_argument("--model", required=True, metavar="M.evrt")
    p.add_argument("--publish", metavar="ADDR", help="also publish predictions here (for `evrt watch`)")
    p.add_argument("--quiet", action="store_true", help="do not print predictions (metrics and summary only)")
    add_mapping(p)
    add_fit(p)
    add_framing(p)
    add_common(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import zmq

    from ..errors import EvrtError
    from ..geometry import model_sensor
    from ..pipeline.classify import ClassifyWorker, prediction_printer
    from .options import classifier_from, curve_from, describe_framer, mapping_from
    from ..pipeline.metrics import Log, Metrics, stop_on_signals
    from ..pipeline.sockets import open_socket
    from ..pipeline.source import Publisher, open_source, publish

    log = Log("serve", args.json)
    source = open_source(args.camera, log)
    clf = classifier_from(args)
    mapping = mapping_from(args, source, model_sensor(clf.session.meta), log)
    replay = args.camera.startswith("file:")
    # a recording must be classified completely (back-pressure); a live camera must stay live (drop)
    kinds = (zmq.PUSH, zmq.PULL) if replay else (zmq.PUB, zmq.SUB)
    stop = threading.Event()
    restore = stop_on_signals(stop, log)
    ctx = zmq.Context()
    curve = curve_from(args)
    socks = []
    errors = []
    try:
        addr = f"inproc://evrt-serve-{id(ctx)}"
        tx = open_socket(ctx, kinds[0], addr, bind=True, hwm=args.hwm)
        rx = open_socket(ctx, kinds[1], addr, bind=False, hwm=args.hwm)
        socks += [tx, rx]
        out = None
        if args.publish:
            out = open_socket(ctx, zmq.PUB, args.publish, bind=True, hwm=args.hwm, curve=curve, log=log)
            socks.append(out)
        pub = Publisher(tx, stop=stop)

        def source_thread():
            try:
                publish(source, pub, mapping, log=log)
            except EvrtError as exc:  # camera unplugged, stream closed: stop the whole pipeline
                errors.append(exc)
                stop.set()

        th = threading.Thread(target=source_thread, name="evrt-source", daemon=True)
        log.info(f"model {args.model}: a step {describe_framer(clf.framer)}; source {args.camera}")
        worker = ClassifyWorker(clf, rx, out, log=log, metrics=Metrics(args.metrics_every), stop=stop,
                                on_prediction=() if args.quiet else [prediction_printer(args.json)])
        th.start()
        summary = worker.run(max_streams=1 if replay else None)
        stop.set()
        th.join(timeout=2.0)
        summary["source_messages"], summary["source_events"] = pub.sent_messages, pub.sent_events
        log.info("summary", **summary) if args.json else log.info("done: " + json.dumps(summary))
    finally:
        for s in socks:
            s.close(linger=200)
        if curve:
            curve.stop()
        ctx.term()
        restore()
    if errors:
        raise errors[0]
    return 0
