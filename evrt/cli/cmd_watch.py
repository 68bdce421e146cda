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
    p.set_defaults(func=run)


def run(args) -> int:
    import zmq

    from ..pipeline.classify import prediction_printer
    from .options import curve_from
    from ..pipeline.metrics import Log, stop_on_signals
    from ..pipeline.protocol import TOPIC_EOS, ProtocolError, decode_json
    from ..pipeline.sockets import open_socket
    from ..streaming import Prediction

    log = Log("watch", args.json)
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
                continue
            if topic == TOPIC_EOS:
                log.info("end of stream", **obj)
                if args.until_eos:
                    break
                continue
            show(Prediction.from_dict(obj))
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
