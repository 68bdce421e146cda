"""`evrt watch`: print the predictions published by `evrt classify` or `evrt serve --publish`."""
from __future__ import annotations

import sys
import threading
import time

WAIT_REPORT_S = 30.0


def register(sub) -> None:
    from .options import PRED_ADDR
    p = sub.add_parser("watch", help="print live predictions", description="Print predictions as they arrive.")
    p.add_argument("--connect", default=PRED_ADDR, metavar="ADDR", help=f"prediction publisher (default {PRED_ADDR})")
    p.add_argument("--pattern", choices=("sub", "pull"), default="sub")
    p.add_argument("--json", action="store_true", help="print each prediction as one JSON line")
    p.add_argument("--limit", type=int, metavar="N", help="exit after N predictions")
    p.add_argument("--idle-exit", type=float, metavar="S", help="exit when nothing arrives for S seconds")
    p.add_argument("--until-eos", action="store_true", help="exit at the end of the first stream")
    p.add_argument("--curve-keys", metavar="DIR", help="CURVE client keys (made by `evrt keys DIR`)")
    p.add_argument("--web", metavar="[HOST:]PORT",
                   help="also serve a live page of the predictions here (host 127.0.0.1 unless given; needs the "
                        "[web] extra)")
    p.add_argument("--web-rate", type=float, default=10.0, metavar="HZ", help="page updates per second at most")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..pipeline.metrics import Log

    from ..web.server import live_page

    log = Log("watch", args.json)
    with live_page(args.web, args.web_rate, f"evrt watch · {args.connect}", log) as live:
        return _watch(args, log, live)


def _watch(args, log, live) -> int:
    import zmq

    from ..pipeline.classify import prediction_printer
    from .options import curve_from
    from ..pipeline.metrics import stop_on_signals
    from ..pipeline.protocol import TOPIC_EOS, ProtocolError, decode_json
    from ..pipeline.sockets import open_socket
    from ..streaming import Prediction

    stop = threading.Event()
    restore = stop_on_signals(stop, log)
    ctx = zmq.Context()
    curve = curve_from(args)
    sock = open_socket(ctx, zmq.PULL if args.pattern == "pull" else zmq.SUB, args.connect, bind=False,
                       curve=curve)
    show = prediction_printer(args.json)
    n = bad = 0
    last = said = time.monotonic()
    try:
        while not stop.is_set():
            if not sock.poll(100):
                if args.idle_exit is not None and time.monotonic() - last > args.idle_exit:
                    break
                if args.idle_exit is None and time.monotonic() - max(last, said) > WAIT_REPORT_S:
                    said = time.monotonic()  # never wait in silence: say what for, and how to stop
                    log.info(f"no predictions for {said - last:.0f} s from {args.connect}; waiting "
                             "(--idle-exit S stops after S idle seconds)")
                continue
            last = time.monotonic()
            try:
                topic, obj = decode_json(sock.recv_multipart())
            except ProtocolError:
                bad += 1
                if live is not None:
                    live.extra_drops["malformed_messages"] = bad
                continue
            if topic == TOPIC_EOS:
                log.info("end of stream", **obj)
                if live is not None:
                    live.end_of_stream(obj)
                if args.until_eos:
                    break
                continue
            pred = Prediction.from_dict(obj)
            show(pred)
            if live is not None:
                live.prediction(pred)
            n += 1
            if args.limit is not None and n >= args.limit:
                break
    finally:
        sock.close(0)
        ctx.term()
        restore()
    if bad:
        print(f"evrt watch: {bad} malformed messages ignored", file=sys.stderr)
    return 0
