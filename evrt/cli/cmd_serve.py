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
    p.add_argument("--web", metavar="[HOST:]PORT",
                   help="serve a live page here (host 127.0.0.1 unless given; port 0 = any free port): events, "
                        "class probabilities, per-layer activity, latency, drops (needs the [web] extra)")
    p.add_argument("--web-rate", type=float, default=10.0, metavar="HZ",
                   help="page updates per second at most (default 10); slow viewers skip frames")
    p.add_argument("--record", metavar="OUT.aedat4",
                   help="also write the streamed events (after mapping) to a new AEDAT4 file ([camera] extra)")
    add_mapping(p)
    add_fit(p)
    add_framing(p)
    add_common(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..pipeline.metrics import Log

    import os

    from ..web.server import live_page

    log = Log("serve", args.json)
    cam = args.camera if not args.camera.startswith("file:") else "file:" + os.path.basename(args.camera[5:])
    with live_page(args.web, args.web_rate, f"evrt serve · {args.model} · {cam}", log) as live:
        return _run(args, log, live)


def _run(args, log, live) -> int:
    import zmq

    from ..errors import EvrtError
    from ..geometry import model_sensor
    from ..pipeline.classify import ClassifyWorker, prediction_printer
    from .options import classifier_from, curve_from, describe_framer, mapping_from
    from ..pipeline.metrics import Metrics, stop_on_signals
    from ..pipeline.sockets import open_socket
    from ..pipeline.source import Publisher, open_source, publish
    from .cmd_source import recorder_from

    source = open_source(args.camera, log)
    clf = classifier_from(args)
    mapping = mapping_from(args, source, model_sensor(clf.session.meta), log)
    recorder = recorder_from(args.record, source, mapping, log)
    metrics = Metrics(args.metrics_every)
    sinks = [] if args.quiet else [prediction_printer(args.json)]
    if live is not None:
        in_size = getattr(source, "sensor_size", None)
        model_size = model_sensor(clf.session.meta) or ()
        live.sensor_size = tuple(mapping.out_size(in_size)) if in_size and min(in_size) > 0 else model_size
        live.classes, live.session, live.metrics = list(clf.classes), clf.session, metrics
        sinks.append(live.prediction)
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
                publish(source, pub, mapping, log=log, record=_Tee(live, recorder))
            except EvrtError as exc:  # camera unplugged, stream closed: stop the whole pipeline
                errors.append(exc)
                stop.set()

        th = threading.Thread(target=source_thread, name="evrt-source", daemon=True)
        log.info(f"model {args.model}: a step {describe_framer(clf.framer)}; source {args.camera}")
        worker = ClassifyWorker(clf, rx, out, log=log, metrics=metrics, stop=stop, on_prediction=sinks)
        th.start()
        summary = worker.run(max_streams=1 if replay else None)
        if live is not None:
            live.end_of_stream()
        stop.set()
        th.join(timeout=2.0)
        summary["source_messages"], summary["source_events"] = pub.sent_messages, pub.sent_events
        if recorder is not None:
            summary.update(recorded=recorder.path, recorded_events=recorder.written_events)
        log.info("summary", **summary) if args.json else log.info("done: " + json.dumps(summary))
    finally:
        if recorder is not None:
            recorder.close()
        for s in socks:
            s.close(linger=200)
        if curve:
            curve.stop()
        ctx.term()
        restore()
    if errors:
        raise errors[0]
    return 0


class _Tee:
    """Hands each sent packet to the live page and the recorder (either may be None)."""

    def __init__(self, *sinks):
        self.sinks = [s for s in sinks if s is not None]

    def write(self, ev) -> None:
        for s in self.sinks:
            s.write(ev)
