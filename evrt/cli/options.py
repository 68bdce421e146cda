"""argparse options shared by the commands (source, classify, serve, watch, replay) and the objects
built from them."""
from __future__ import annotations

from ..errors import EvrtError
from ..pipeline.sockets import DEFAULT_HWM

EVENTS_ADDR = "tcp://127.0.0.1:5555"
PRED_ADDR = "tcp://127.0.0.1:5556"


def add_common(p, metrics: bool = True) -> None:
    p.add_argument("--json", action="store_true", help="log one JSON object per line (stderr)")
    p.add_argument("--hwm", type=_positive_int, default=DEFAULT_HWM,
                   help=f"high-water mark: messages queued per socket before PUB drops / PUSH blocks "
                        f"(default {DEFAULT_HWM})")
    p.add_argument("--curve-keys", metavar="DIR",
                   help="encrypt and authenticate with CURVE keys from DIR (made by `evrt keys DIR`)")
    if metrics:
        p.add_argument("--metrics-every", type=float, default=10.0, metavar="S",
                       help="print a metrics line every S seconds (0: never; default 10)")


def _positive_int(text: str) -> int:
    import argparse
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return v


def add_threads(p) -> None:
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="cores each model step may use (default: $EVRT_THREADS, else all usable cores); "
                        "results are the same for every N")


def threads_from(args) -> int:
    """Apply --threads (when given) process-wide; returns the count in effect."""
    from ..kernels.threads import get_threads, set_threads
    n = getattr(args, "threads", None)
    try:
        return set_threads(n) if n is not None else get_threads()
    except ValueError as e:   # a bad EVRT_THREADS
        raise EvrtError(str(e)) from None


def add_mapping(p) -> None:
    p.add_argument("--crop", metavar="X,Y,W,H", help="keep only this sensor region")
    p.add_argument("--downsample", type=int, default=1, metavar="N", help="divide coordinates by N")
    p.add_argument("--flip-x", action="store_true", help="mirror horizontally")
    p.add_argument("--flip-y", action="store_true", help="mirror vertically")


def add_fit(p) -> None:
    from ..geometry import DEFAULT_FIT, FIT_MODES
    p.add_argument("--fit", choices=FIT_MODES, default=DEFAULT_FIT,
                   help="when the recording's or camera's sensor differs from the model's: downsample = divide "
                        "coordinates by the smallest integer that fits the whole sensor and centre it (default); "
                        "crop = keep the centred model-sized window; none = as is, events outside are dropped")


def add_framing(p) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--count", type=int, metavar="N", help="a step every N events (default: the model's meta)")
    g.add_argument("--window-us", type=int, metavar="D", help="a step every D µs (empty windows are steps)")
    p.add_argument("--precision", choices=("float32", "float64", "int8"), default="float32")
    p.add_argument("--mode", choices=("continuous", "clip"), default="continuous",
                   help="readout: sliding mean over the last T steps (continuous) or mean since the last reset")
    p.add_argument("--reset-every", type=int, metavar="STEPS",
                   help="reset the neuron state every STEPS steps (default: never in continuous mode, T in clip mode)")
    add_threads(p)


def mapping_from(args, source=None, target=None, log=None):
    """The SensorMap of --crop/--downsample/--flip-*, plus --fit onto ``target`` (the model's grid) when
    the source's (mapped) sensor differs from it; the plan is announced on ``log`` before streaming."""
    from ..pipeline.source import SensorMap
    crop = None
    if args.crop:
        try:
            crop = tuple(int(v) for v in args.crop.split(","))
        except ValueError:
            raise EvrtError(f"--crop {args.crop!r}: expected four integers X,Y,W,H") from None
    m = SensorMap(crop=crop, downsample=args.downsample, flip_x=args.flip_x, flip_y=args.flip_y)
    in_size = tuple(getattr(source, "sensor_size", None) or ())
    if target is None or len(in_size) != 2 or min(in_size) < 1:
        return m
    from ..geometry import describe_fit, plan_fit
    size = m.manual_size(in_size)
    if tuple(size) != tuple(target):
        ev = getattr(source, "events", None)  # a recording: count on its events, a camera: by area
        if ev is not None and not m.manual_identity:
            ev, m.dropped = m(ev, in_size), 0
        m.fit = plan_fit(size, target, getattr(args, "fit", "downsample"))
        if log is not None and not m.fit.identity:  # a smaller sensor lands on the grid as it is
            log.warn(describe_fit(m.fit, ev))
    return m


def parse_size(text, what="size"):
    """'128x128' -> (128, 128); None stays None."""
    if text is None:
        return None
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise EvrtError(f"{what} {text!r}: expected WIDTHxHEIGHT, e.g. 128x128") from None
    if w < 1 or h < 1:
        raise EvrtError(f"{what} {text!r}: width and height must be >= 1")
    return w, h


def curve_from(args):
    if not getattr(args, "curve_keys", None):
        return None
    from ..pipeline.sockets import Curve
    return Curve(args.curve_keys)


def classifier_from(args):
    from ..streaming import StreamClassifier
    threads_from(args)
    reset_every = args.reset_every if args.reset_every is not None else ("T" if args.mode == "clip" else None)
    clf = StreamClassifier.from_model(args.model, precision=args.precision, mode=args.mode,
                                      reset_every=reset_every, count=args.count, window_us=args.window_us)
    clf.warm_up()
    return clf


def describe_framer(f) -> str:
    return f"every {f.count} events" if f.count else f"every {f.window_us} µs"
