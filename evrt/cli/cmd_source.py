"""`evrt source`: publish a camera, a DV network stream or a paced recording as event messages."""
from __future__ import annotations

import json
import sys
import threading


def register(sub) -> None:
    from .options import EVENTS_ADDR, add_common, add_fit, add_mapping
    from ..pipeline.source import CAMERA_HELP
    p = sub.add_parser("source", help="publish events from a camera or a recording over ZeroMQ",
                       description="Publish events from a camera or a recording. " + CAMERA_HELP)
    p.add_argument("--camera", metavar="SPEC", help=CAMERA_HELP)
    p.add_argument("--bind", default=EVENTS_ADDR, metavar="ADDR", help=f"endpoint to bind (default {EVENTS_ADDR})")
    p.add_argument("--pattern", choices=("auto", "pub", "push"), default="auto",
                   help="pub: live fan-out, drops when consumers are slow; push: back-pressure, nothing lost "
                        "(auto: push for file:, pub for cameras)")
    p.add_argument("--list-cameras", action="store_true", help="list connected cameras and exit")
    p.add_argument("--no-eos", action="store_true", help="do not send END_OF_STREAM when the source ends")
    p.add_argument("--record", metavar="OUT.aedat4",
                   help="also write what is published (after --crop/--downsample/--flip) to a new AEDAT4 file "
                        "(needs the [camera] extra)")
    add_mapping(p)
    p.add_argument("--model-size", metavar="WxH",
                   help="the consuming model's input grid (e.g. 128x128); with it, --fit maps the sensor onto it")
    add_fit(p)
    add_common(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import zmq

    from ..errors import EvrtError
    from .options import curve_from, mapping_from, parse_size
    from ..pipeline.metrics import Log, Metrics, stop_on_signals
    from ..pipeline.sockets import LINGER_MS, drain_and_term, open_watched
    from ..pipeline.source import Publisher, list_cameras, open_source, publish

    if args.list_cameras:
        cams = list_cameras()
        print("\n".join(cams) if cams else "no cameras found", file=sys.stdout)
        return 0 if cams else 1
    if not args.camera:
        raise EvrtError("--camera SPEC is required (or --list-cameras)")
    log = Log("source", args.json)
    source = open_source(args.camera, log)
    mapping = mapping_from(args, source, parse_size(args.model_size, "--model-size"), log)
    recorder = recorder_from(args.record, source, mapping, log)
    pattern = args.pattern if args.pattern != "auto" else ("push" if args.camera.startswith("file:") else "pub")
    stop = threading.Event()
    restore = stop_on_signals(stop, log)
    ctx = zmq.Context()
    curve = curve_from(args)
    sock = pub = None
    try:
        sock, watch = open_watched(ctx, zmq.PUB if pattern == "pub" else zmq.PUSH, args.bind, True, "consumer", log,
                                   hwm=args.hwm, curve=curve)
        log.info(f"bound {args.bind} ({pattern.upper()})")
        pub = Publisher(sock, stop=stop, watch=watch, log=log)
        metrics = Metrics(args.metrics_every)
        try:
            publish(source, pub, mapping, log=log, metrics=metrics, end_of_stream=not args.no_eos, record=recorder)
        finally:
            if recorder is not None:
                recorder.close()
        summary = {"messages": pub.sent_messages, "events": pub.sent_events, "stream_id": pub.stream_id,
                   "elapsed_s": round(metrics.clock() - metrics.t0, 3)}
        if recorder is not None:
            summary.update(recorded=recorder.path, recorded_events=recorder.written_events,
                           record_skipped_events=recorder.skipped_events)
        if args.json:
            log.info("summary", **summary)
        else:
            log.info("done: " + json.dumps(summary))
    finally:
        if pub is not None and pub.watch is not None:
            pub.watch.poll()
            pub.watch.close()  # its monitor socket would keep the context from terminating
        if curve:
            curve.stop()
        # PUSH (replay): deliver everything still queued, however slow the consumer; PUB: a second at most
        drain_and_term(ctx, [sock] if sock is not None else [], stop, log,
                       linger_ms=-1 if pattern == "push" and not stop.is_set() else LINGER_MS)
        restore()
    return 0


def recorder_from(path, source, mapping, log):
    """An AEDAT4 recorder for ``--record`` (None without it), at the mapped sensor size."""
    if not path:
        return None
    import os

    from ..errors import EvrtError
    from ..pipeline.dvio import AedatRecorder
    src_path = getattr(source, "name", "").partition("file:")[2]
    if src_path and os.path.exists(src_path) and os.path.exists(path) and os.path.samefile(src_path, path):
        raise EvrtError(f"--record {path} is the recording being replayed; evrt never overwrites its input")
    size = getattr(source, "sensor_size", (0, 0))
    return AedatRecorder(path, mapping.out_size(size) if size and min(size) > 0 else size, log=log)
