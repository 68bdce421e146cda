"""evrt replay PATH --model MODEL: play a recording through a streaming classifier, at recorded speed or
as fast as possible, printing each prediction as it happens; labelled samples are also classified one
by one with the reference clip framing, and scored.

Built from library parts only: the recording reader (evrt.formats), the pipeline's paced source
(evrt.pipeline.source.ArraySource), the streaming classifier (evrt.streaming), the clip scorer and
warm-up (evrt.evaluate) and the session's Report totals; this module only prints."""
from __future__ import annotations

import json
import sys
import time

import numpy as np

CHUNK_US = 10_000  # packets of 10 ms of stream time: the pacing granularity at --speed 1


def register(sub):
    from .options import add_fit, add_threads
    p = sub.add_parser("replay", help="stream a recording through a model, printing predictions as they happen")
    p.add_argument("path", help="a recording: AEDAT 3.1 (+ _labels.csv), AEDAT 4, .npz, .npy")
    p.add_argument("--model", default=None, help="an .evrt file or a zoo model name (default: the zoo default)")
    p.add_argument("--speed", default="1", help="1 = recorded speed, 2 = twice as fast, max = no pacing")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--count", type=int, default=None, metavar="N", help="a step closes every N events")
    g.add_argument("--window-us", type=int, default=None, metavar="D", help="a step closes every D µs")
    p.add_argument("--mode", choices=["clip", "continuous"], default="continuous",
                   help="clip: state and readout reset every T steps; continuous: sliding mean over T steps")
    p.add_argument("--labels", choices=["auto", "gesture", "model"], default="auto",
                   help="what a recording's integer labels index: DVS128 Gesture ids (csv class - 1) or the "
                        "model's outputs; auto = gesture for AEDAT 3.1, model otherwise")
    p.add_argument("--precision", choices=["float32", "float64", "int8"], default="float32")
    add_fit(p)
    add_threads(p)
    p.add_argument("--json", action="store_true", help="one JSON object per line; nothing else on stdout")
    p.set_defaults(func=run)


def parse_speed(text: str) -> float | None:
    """None = as fast as possible."""
    from ..errors import EvrtError

    if str(text).lower() in ("max", "inf"):
        return None
    try:
        v = float(text)
    except ValueError:
        raise EvrtError(f"--speed must be a positive number or 'max', got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise EvrtError(f"--speed must be a positive number or 'max', got {text!r}")
    return v


class _Out:
    """Prints predictions, samples and the summary as text or JSON lines (flushed: this is live output)."""

    def __init__(self, as_json: bool, t0_us: int):
        self.json, self.t0 = as_json, t0_us

    def emit(self, kind: str, obj: dict, text: str) -> None:
        print(json.dumps({"type": kind, **obj}, separators=(",", ":")) if self.json else text, flush=True)

    def prediction(self, p) -> None:
        t = (p.end_us - self.t0) / 1e6
        self.emit("prediction", {**p.to_dict(), "time_s": t},
                  f"step {p.step:6d}  t={t:9.3f}s  {p.class_name:28s} p={p.confidence:.3f}  "
                  f"{p.n_events:7d} ev  {p.latency_ms:7.2f} ms")

    def sample(self, s: dict) -> None:
        mark = "ok " if s["correct"] else "BAD"
        self.emit("sample", s, f"sample {s['index']:3d} [{(s['start_us'] - self.t0) / 1e6:8.3f}, "
                               f"{(s['end_us'] - self.t0) / 1e6:8.3f})s  true {s['true']:28s} pred {s['pred']:28s} "
                               f"p={s['confidence']:.3f} {mark}")


def _label_names(rec, session, space: str) -> list:
    """True class name of each label row."""
    from ..datasets.dvsgesture import CLASS_NAMES

    if space == "auto":
        space = "gesture" if rec.format == "aedat3.1" else "model"
    names = CLASS_NAMES if space == "gesture" else session.classes
    return [names[int(l)] if 0 <= int(l) < len(names) else str(int(l)) for l in rec.labels["label"]]


def run(args) -> int:
    from ..engine import Session
    from ..errors import EvrtError
    from ..evaluate import score_clip, warm_up
    from ..events import validate
    from ..formats import read_recording
    from ..geometry import fit_recording, model_sensor
    from ..graph import Graph
    from ..pipeline.source import ArraySource
    from ..streaming import StreamClassifier, stream_framer_for
    from ..zoo import DEFAULT_MODEL, resolve_model

    speed = parse_speed(args.speed)
    if args.count is not None and args.count < 1 or args.window_us is not None and args.window_us < 1:
        raise EvrtError("--count and --window-us must be at least 1")
    rec = read_recording(args.path)
    for note in rec.notes:  # e.g. labelled spans outside the recording, skipped rather than scored
        print(f"evrt replay: warning: {rec.path}: {note}", file=sys.stderr)
    from .options import threads_from
    threads_from(args)
    model = resolve_model(args.model or DEFAULT_MODEL)
    graph = Graph.load(model)
    # the stream and the per-sample clips get separate sessions: run_clip resets state, which would
    # break the stream's continuity
    sess = Session(graph, precision=args.precision, mode=args.mode,
                   reset_every="T" if args.mode == "clip" else None)
    clip_sess = Session(graph, precision=args.precision, mode="clip")
    clf = StreamClassifier(sess, stream_framer_for(sess.meta, args.count, args.window_us))
    sensor = model_sensor(sess.meta)
    rec, fit = fit_recording(rec, sensor, args.fit)
    if fit.message:
        print(f"evrt replay: {fit.message}", file=sys.stderr)
    # a live stream must be time-ordered and inside the sensor: drop (and count) what is not, as a
    # camera driver would, rather than refuse the whole recording
    ev, checked = validate(rec.events, sensor_size=sensor, policy="drop")
    checked.dropped_out_of_sensor += fit.dropped

    labels = rec.labels if rec.labels is not None and len(rec.labels) else None
    truth = _label_names(rec, sess, args.labels) if labels is not None else []
    sample_events = list(rec.samples()) if labels is not None else []
    order = np.argsort(labels["end_us"], kind="stable") if labels is not None else []  # emit by end time

    # JIT warm-up, excluded from every timing below
    w0 = time.perf_counter()
    clf.warm_up()
    if labels is not None:
        warm_up(clip_sess)
    warmup_s = time.perf_counter() - w0

    out = _Out(args.json, int(ev["t"][0]) if len(ev) else 0)
    preds, samples = [], []
    stream_s = sample_s = sleep_s = 0.0
    next_sample = 0

    def run_samples(upto_us):
        """Score, in clip mode, every labelled sample that has ended by upto_us (None: all)."""
        nonlocal next_sample, sample_s
        while next_sample < len(order) and (upto_us is None or int(labels["end_us"][order[next_sample]]) <= upto_us):
            i = int(order[next_sample])
            next_sample += 1
            s = {"index": i, "start_us": int(labels["start_us"][i]), "end_us": int(labels["end_us"][i]),
                 "label": int(labels["label"][i]), **score_clip(clip_sess, sample_events[i][1], truth[i])}
            sample_s += s["latency_ms"] / 1e3
            samples.append(s)
            out.sample(s)

    def emit(new):
        for p in new:
            out.prediction(p)
        preds.extend(new)

    # the pipeline's paced source: a packet is delivered when the recording's clock reaches its last
    # event (speed None: at once); time spent waiting for a packet is the pacing sleep
    packets = iter(ArraySource(ev, sensor_size=sensor, speed=speed, packet_us=CHUNK_US))
    start = time.perf_counter()
    while True:
        c0 = time.perf_counter()
        chunk = next(packets, None)
        sleep_s += time.perf_counter() - c0
        if chunk is None:
            break
        c0 = time.perf_counter()
        new = clf.push(chunk)
        stream_s += time.perf_counter() - c0
        emit(new)
        run_samples(int(chunk["t"][-1]) + 1 if len(chunk) else None)
    c0 = time.perf_counter()
    new = clf.end_of_stream()
    stream_s += time.perf_counter() - c0
    emit(new)
    run_samples(None)
    wall = time.perf_counter() - start

    summary = _summary(rec, sess, clip_sess, preds, samples, speed, wall, stream_s, sample_s, sleep_s, warmup_s,
                       clf, model, checked)
    if args.json:
        print(json.dumps({"type": "summary", **summary}, separators=(",", ":")), flush=True)
    else:
        print(_summary_text(summary), flush=True)
    return 0


def _summary(rec, sess, clip_sess, preds, samples, speed, wall, stream_s, sample_s, sleep_s, warmup_s, clf,
             model, checked) -> dict:
    n = len(rec.events)
    dur = rec.duration_us / 1e6
    tot = sess.report().totals()
    lat = np.array([p.latency_ms for p in preds]) if preds else np.zeros(1)
    correct = sum(s["correct"] for s in samples)
    energy = tot["energy_pj"]
    return {
        "path": rec.path, "format": rec.format, "model": model, "mode": sess.mode, "precision": sess.precision,
        "state_policy": sess.state_policy,
        "framing": {"count": clf.framer.count, "window_us": clf.framer.window_us},
        "speed": speed if speed is not None else "max",
        "events": n, "events_streamed": int(clf.events_in), "duration_s": dur, "steps": len(preds),
        "wall_s": wall, "stream_compute_s": stream_s, "sample_compute_s": sample_s, "sleep_s": sleep_s,
        "warmup_s": warmup_s,
        # throughput of the streaming path alone; the real-time factor counts everything the replay did
        "events_per_s": clf.events_in / stream_s if stream_s > 0 else None,
        "realtime_factor": dur / wall if wall > 0 else None,
        "compute_realtime_factor": dur / stream_s if stream_s > 0 else None,
        "step_latency_ms": {"mean": float(lat.mean()), "p50": float(np.percentile(lat, 50)),
                            "p99": float(np.percentile(lat, 99)), "max": float(lat.max())},
        "acs": tot["acs"], "macs": tot["macs"], "energy_uj": energy / 1e6,
        "acs_per_s": tot["acs"] / dur if dur > 0 else None,
        "energy_uj_per_s": energy / 1e6 / dur if dur > 0 else None,
        # dropped before streaming (out of the sensor, time going backwards) + inside the model
        "dropped_events": int(checked.dropped + sess.dropped_events),
        "dropped_by_reason": {"out_of_sensor": checked.dropped_out_of_sensor,
                              "time_backwards": checked.dropped_time_backwards,
                              "negative_time": checked.dropped_negative_time,
                              "in_model": int(sess.dropped_events)},
        "samples": len(samples), "samples_correct": int(correct),
        "sample_accuracy": correct / len(samples) if samples else None,
        "sample_dropped_events": int(clip_sess.dropped_events),
    }


def _summary_text(s: dict) -> str:
    def num(v, fmt):
        return format(v, fmt) if v is not None else "-"

    lines = [f"replayed {s['events']:,} events over {s['duration_s']:.3f} s in {s['steps']} steps "
             f"(speed {s['speed']}, framing {s['framing']}); {s['state_policy']}",
             f"wall {s['wall_s']:.3f} s (slept {s['sleep_s']:.3f} s); real-time factor "
             f"{num(s['realtime_factor'], '.2f')}x; streaming alone {num(s['events_per_s'], ',.0f')} events/s = "
             f"{num(s['compute_realtime_factor'], '.2f')}x real time",
             f"step latency mean {s['step_latency_ms']['mean']:.2f} ms, p99 {s['step_latency_ms']['p99']:.2f} ms; "
             f"JIT warm-up {s['warmup_s']:.2f} s (excluded)",
             f"{num(s['acs_per_s'], ',.0f')} ACs and {num(s['energy_uj_per_s'], '.3f')} uJ per second of stream "
             f"({s['acs']:,} ACs, {s['macs']:,} MACs in all); dropped events: {s['dropped_events']}"]
    if s["samples"]:
        lines.append(f"labelled samples: accuracy {s['sample_accuracy']:.4f} ({s['samples_correct']}/{s['samples']})")
    return "\n".join(lines)
