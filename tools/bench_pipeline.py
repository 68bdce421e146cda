"""Pipeline benchmark: what the ZeroMQ hop costs compared with running in-process.

For batches of 1k, 10k and 100k events (one message = one batch = one model step):
  transport   events/s through PUSH/PULL over tcp://127.0.0.1 with decoding, no model
  hop latency one-way time from "send this batch" to "decoded array in the receiver" (median, p99),
              measured one message at a time so no queueing is included; in-process this is zero
  end to end  events/s sustained with the toy model: in-process StreamClassifier vs a sender process
              -> socket -> ClassifyWorker -> prediction socket -> sink (predictions received)

    python tools/bench_pipeline.py [--seconds 2] [--batches 1000 10000 100000]

Not a test: numbers depend on the machine and on what else runs on it.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import threading
import time

import numpy as np
import zmq

from evrt.engine import Session
from evrt.framing import StreamFramer
from evrt.pipeline.classify import ClassifyWorker
from evrt.pipeline.protocol import decode
from evrt.pipeline.sockets import open_socket
from evrt.pipeline.source import Publisher
from evrt.pipeline.testing import bind_any, collect_predictions, synthetic_events
from evrt.streaming import StreamClassifier
from evrt.toy import toy_graph


def batches(batch: int, n: int, seed: int = 0) -> list:
    ev = synthetic_events(batch, sensor=(32, 32), duration_us=10_000, seed=seed)
    out = []
    for i in range(n):
        b = ev.copy()
        b["t"] += i * 10_000
        out.append(b)
    return out


def _sender(addr: str, batch: int, n: int, end: bool):
    ctx = zmq.Context()
    sock = open_socket(ctx, zmq.PUSH, addr, bind=False, hwm=16)
    pub = Publisher(sock, stream_id=1)
    for b in batches(batch, n):
        pub.send_events(b)
    if end:
        pub.send_end()
    sock.close(linger=10_000)
    ctx.term()


def transport(batch: int, seconds: float) -> float:
    n = max(20, int(3e6 // batch))
    ctx = zmq.Context()
    rx, addr = bind_any(ctx, zmq.PULL, hwm=16)
    proc = mp.get_context("fork").Process(target=_sender, args=(addr, batch, n, False))
    proc.start()
    got, t0 = 0, None
    deadline = time.monotonic() + 10 * seconds + 30
    while got < n * batch and time.monotonic() < deadline:
        if rx.poll(100):
            msg = decode(rx.recv_multipart(copy=False))
            if t0 is None:
                t0 = time.perf_counter()  # start at the first arrival: process start-up is not transport
                first = len(msg.events)
            got += len(msg.events)
    dt = time.perf_counter() - t0
    proc.join(10)
    rx.close(0)
    ctx.term()
    return (got - first) / dt


def hop_latency(batch: int, reps: int = 200) -> tuple:
    ctx = zmq.Context()
    tx, addr = bind_any(ctx, zmq.PUSH)
    rx = open_socket(ctx, zmq.PULL, addr, bind=False)
    pub = Publisher(tx, stream_id=1)
    data = batches(batch, 8)
    lat = []
    for i in range(reps + 5):
        b = data[i % len(data)]
        t0 = time.perf_counter()
        pub.send_events(b)
        msg = decode(rx.recv_multipart(copy=False))
        _ = msg.events["t"][-1]  # touch the array
        if i >= 5:
            lat.append((time.perf_counter() - t0) * 1e3)
    tx.close(0)
    rx.close(0)
    ctx.term()
    return float(np.median(lat)), float(np.percentile(lat, 99))


def end_to_end(graph, batch: int, seconds: float) -> tuple:
    n = max(10, min(2000, int(seconds * 2e6 // batch)))
    data = batches(batch, n)
    clf = StreamClassifier(Session(graph, mode="continuous", reset_every=None), StreamFramer(count=batch))
    clf.warm_up()
    t0 = time.perf_counter()
    for b in data:
        clf.push(b)
    inproc = n * batch / (time.perf_counter() - t0)
    step_ms = 1e3 * (time.perf_counter() - t0) / n

    ctx = zmq.Context()
    rx, ev_addr = bind_any(ctx, zmq.PULL, hwm=16)
    out, pred_addr = bind_any(ctx, zmq.PUSH, hwm=1000)
    sink = open_socket(ctx, zmq.PULL, pred_addr, bind=False, hwm=100_000)
    clf = StreamClassifier(Session(graph, mode="continuous", reset_every=None), StreamFramer(count=batch))
    clf.warm_up()
    worker = ClassifyWorker(clf, rx, out)
    th = threading.Thread(target=worker.run, kwargs={"max_streams": 1}, daemon=True)
    th.start()
    proc = mp.get_context("fork").Process(target=_sender, args=(ev_addr, batch, n, True))
    proc.start()
    # time from the first prediction to the end: the sender's start-up is excluded
    while not sink.poll(100):
        pass
    t0 = time.perf_counter()
    preds, eos = collect_predictions(sink, timeout_s=60 * seconds + 60)
    dt = time.perf_counter() - t0
    th.join(30)
    proc.join(10)
    for s in (rx, out, sink):
        s.close(0)
    ctx.term()
    socket_rate = (len(preds) - 1) * batch / dt  # the clock started when the first one was ready
    return inproc, socket_rate, step_ms, len(preds) == n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="rough length of each measurement")
    ap.add_argument("--batches", type=int, nargs="+", default=[1000, 10_000, 100_000])
    args = ap.parse_args()
    graph = toy_graph(seed=0, T=8)
    rows = []
    for b in args.batches:
        tr = transport(b, args.seconds)
        p50, p99 = hop_latency(b)
        inproc, sock, step_ms, complete = end_to_end(graph, b, args.seconds)
        rows.append((b, tr, p50, p99, step_ms, inproc, sock, complete))
    print(f"{'batch':>7s} | {'transport ev/s':>14s} | {'hop p50 ms':>10s} | {'hop p99 ms':>10s} | "
          f"{'step ms':>8s} | {'in-proc ev/s':>12s} | {'socket ev/s':>12s} | {'ratio':>5s} | all")
    print("-" * 107)
    for b, tr, p50, p99, step_ms, inproc, sock, complete in rows:
        print(f"{b:>7d} | {tr:>14,.0f} | {p50:>10.3f} | {p99:>10.3f} | {step_ms:>8.2f} | {inproc:>12,.0f} | "
              f"{sock:>12,.0f} | {sock / inproc:>5.2f} | {'yes' if complete else 'NO'}")
    print("\ntoy model (32x32, 2 conv + SDSA); one message = one step; tcp://127.0.0.1; 'all': every step "
          "predicted")


if __name__ == "__main__":
    main()
