"""Issue 14, the pipeline half: hostile peers, clock jumps, many cameras into one classifier.

Workers run in threads on loopback ports the OS picks (bind_any); subprocesses meet on private ipc://
endpoints (a fresh path each); every wait has a deadline."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
import zmq

from evrt.framing import StreamFramer
from evrt.pipeline import protocol as P
from evrt.pipeline.classify import ClassifyWorker
from evrt.pipeline.metrics import Log, Metrics
from evrt.pipeline.sockets import Curve, PeerWatch, make_keys, open_socket
from evrt.pipeline.source import ArraySource, Publisher
from evrt.pipeline.testing import Background, FakeSession, bind_any, collect_predictions, private_endpoint, synthetic_events
from evrt.streaming import StreamClassifier

TIMEOUT = 30.0


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def fake_clf(**framing):
    return StreamClassifier(FakeSession(), StreamFramer(**(framing or {"count": 500})))


def in_process(packets, **framing):
    clf = fake_clf(**framing)
    out = []
    for p in packets:
        out += clf.push(p)
    return out + clf.end_of_stream()


def logger():
    buf = io.StringIO()
    return Log("classify", stream=buf), buf


def same(got: list, expect: list) -> bool:
    from evrt.streaming import Prediction
    return len(got) == len(expect) and all(Prediction.from_dict(g).same_as(e) for g, e in zip(got, expect))


# ------------------------------------------------------------------------------- decoder and bounds
def test_tonic_message_with_negative_t_or_x_is_dropped_and_counted():
    bad = np.zeros(2, P.DTYPES[P.DTYPE_TONIC])  # x, y, p, t signed: a peer can send t < 0
    bad["t"] = [5, -1]
    frames = P.encode(P.EVENTS, 1, 0, bad)
    with pytest.raises(P.ProtocolError) as e:
        P.decode(frames)
    assert e.value.reason == "bad_events"
    bad["t"], bad["x"] = [1, 2], [3, -4]
    w = ClassifyWorker(fake_clf(), None)
    assert w.handle(P.encode(P.EVENTS, 1, 0, bad)) == []   # main: EventError ended `evrt classify`
    ok = np.zeros(600, P.DTYPES[P.DTYPE_TONIC])
    ok["t"] = np.arange(600)
    assert len(w.handle(P.encode(P.EVENTS, 1, 1, ok))) == 1
    assert w.metrics.drops["bad_events"] == 1


@pytest.mark.parametrize("jump", [2**62, 3 * 3600 * 10**6], ids=["2^62us", "3_hours"])
def test_clock_jump_gives_bounded_empty_steps_then_a_reported_resync(jump):
    """main: t=0 then t=2^62 with 50 ms windows asked for 671 TiB; a 3 h gap meant 216,000 steps."""
    log, buf = logger()
    w = ClassifyWorker(fake_clf(window_us=50_000), None, log=log)
    ev = make_ev([0, 10, jump, jump + 1, jump + 60_000])
    t0 = time.monotonic()
    w.handle(P.encode(P.EVENTS, 9, 0, ev[:2]))
    preds = w.handle(P.encode(P.EVENTS, 9, 1, ev[2:]))
    assert time.monotonic() - t0 < 20
    fr = w.clf.framer
    assert len(preds) == 1 + fr.max_empty + 1   # the first window, the bound of empty ones, the window after the jump
    assert fr.resyncs == 1 and w.metrics.drops["time_jump_resync"] == 1
    assert "time jumped" in buf.getvalue()
    assert sum(p.n_events for p in preds) + len(fr._pending) == 5
    assert preds[-1].start_us <= jump < preds[-1].end_us and preds[-1].n_events == 2  # the grid is kept


def make_ev(t):
    from evrt.events import make_events
    t = np.asarray(t, np.uint64)
    return make_events(t, np.zeros(len(t)), np.zeros(len(t)), np.ones(len(t)))


def test_events_per_step_are_bounded():
    fr = StreamFramer(window_us=1000, max_events=100)
    wins = fr.push_windows(make_ev(np.zeros(250)))     # one instant, 250 events: the window stays open
    wins += fr.push_windows(make_ev([5000]))
    assert [len(w.events) for w in wins][0] == 100 and fr.dropped_events == 150
    with pytest.raises(ValueError):
        StreamFramer(count=101, max_events=100)


def test_oversized_message_is_refused_by_zeromq_and_the_worker_goes_on(ctx):
    rx, addr = bind_any(ctx, zmq.PULL, max_msg_bytes=64 << 10)
    assert rx.maxmsgsize == 64 << 10
    big = open_socket(ctx, zmq.PUSH, addr, bind=False)
    big.send_multipart([b"x" * 54, b"\0" * (1 << 20)])      # 1 MiB > 64 KiB: the peer is cut off
    good = open_socket(ctx, zmq.PUSH, addr, bind=False)
    good.send_multipart(P.encode(P.EVENTS, 1, 0, make_ev([1, 2])))
    assert rx.poll(int(TIMEOUT * 1000))
    msg = P.decode(rx.recv_multipart())
    assert len(msg.events) == 2
    assert not rx.poll(300)   # the oversized message never arrives


def test_hwm_must_be_positive(capsys):
    from evrt.cli import main
    with pytest.raises(SystemExit):
        main(["classify", "--model", "x.evrt", "--hwm", "-1"])
    assert "--hwm" in capsys.readouterr().err


# ----------------------------------------------------------------------------- many cameras, one model
def test_interleaved_streams_each_get_their_own_session():
    """main: two streams interleaved into one classify reset the Session at every switch (119 resets,
    steps=0). Now each stream id has a Session and its predictions equal a lone run of that stream."""
    streams = {sid: list(ArraySource(synthetic_events(4000, seed=sid), packet_us=20_000)) for sid in (11, 22)}
    w = ClassifyWorker(fake_clf(), None)
    got = {11: [], 22: []}
    for i in range(max(map(len, streams.values()))):
        for sid, pk in streams.items():
            if i < len(pk):
                for p in w.handle(P.encode(P.EVENTS, sid, i, pk[i])):
                    got[sid].append(p.to_dict())
    for sid, pk in streams.items():
        for p in w.handle(P.encode(P.END_OF_STREAM, sid, len(pk))):
            got[sid].append(p.to_dict())
    assert w.metrics.resets == 0 and w.sessions_opened == 2 and w.streams_ended == 2
    for sid, pk in streams.items():
        assert got[sid] and all(p["stream_id"] == sid for p in got[sid])
        assert same(got[sid], in_process(pk))


def test_sessions_are_bounded_and_the_idlest_is_evicted_with_a_log_line():
    log, buf = logger()
    w = ClassifyWorker(fake_clf(), None, log=log, max_sessions=2)
    for sid in (1, 2, 1, 3):   # stream 2 is the idlest when 3 arrives
        w.handle(P.encode(P.EVENTS, sid, 0 if sid != 1 or 1 not in w.streams else 1, make_ev([1, 2, 3])))
    assert set(w.streams) == {1, 3} and w.evictions == 1
    assert "evicting the idlest" in buf.getvalue() and "evicted_stream=2" in buf.getvalue()


def test_shards_split_streams_between_classifiers_without_double_counting(ctx):
    """Fan-out (every SUB gets every message) + --shard K/N: each stream is classified by exactly one
    of N classifiers, and the union of their predictions equals a lone run of each stream."""
    tx, addr = bind_any(ctx, zmq.PUB, hwm=10_000)
    workers, outs, sinks = [], [], []
    for k in range(2):
        out, out_addr = bind_any(ctx, zmq.PUSH, hwm=10_000)
        sinks.append(open_socket(ctx, zmq.PULL, out_addr, bind=False, hwm=10_000))
        inp = open_socket(ctx, zmq.SUB, addr, bind=False, hwm=10_000)
        w = ClassifyWorker(fake_clf(), inp, out, shard=(k, 2), metrics=Metrics(0))
        workers.append((w, Background(w.run, max_streams=2)))
        outs += [out, inp]
    streams = {sid: list(ArraySource(synthetic_events(3000, seed=sid), packet_us=30_000)) for sid in (4, 5, 6, 7)}
    pubs = {sid: Publisher(tx, stream_id=sid) for sid in streams}
    deadline = time.monotonic() + TIMEOUT   # PUB/SUB: wait until both subscribers hear a probe
    while any(w.other_shard + w.metrics.messages_in == 0 for w, _ in workers) and time.monotonic() < deadline:
        Publisher(tx, stream_id=0).send_reset()   # stream 0: shard 0 resets a fresh session, shard 1 ignores it
        time.sleep(0.05)
    for sid, pk in streams.items():
        for p in pk:
            pubs[sid].send_events(p)
        pubs[sid].send_end()
    results = [collect_predictions(s, TIMEOUT, until_eos=2) for s in sinks]
    for w, bg in workers:
        w.stop.set()
        bg.result(TIMEOUT)
    by_stream = {}
    for k, (preds, eos) in enumerate(results):
        assert {e["stream_id"] % 2 for e in eos} == {k}
        for p in preds:
            by_stream.setdefault(p["stream_id"], set()).add(k)
    assert all(len(v) == 1 for v in by_stream.values()) and set(by_stream) == set(streams)
    for sid, pk in streams.items():
        preds = [p for r in results for p in r[0] if p["stream_id"] == sid]
        assert same(preds, in_process(pk))
    for s in outs + sinks:
        s.close(0)


def test_pull_predictions_with_no_consumer_are_counted_not_a_stall(ctx):
    """main: `classify --pattern pull --print` with nobody taking predictions stalled once the PUSH
    queue filled, while the source reported the stream delivered."""
    out, _ = bind_any(ctx, zmq.PUSH, hwm=2)
    log, buf = logger()
    w = ClassifyWorker(fake_clf(count=10), None, out, log=log, peers=PeerWatch(out))
    t0 = time.monotonic()
    preds = w.handle(P.encode(P.EVENTS, 1, 0, make_ev(np.arange(200))))
    assert len(preds) == 20 and time.monotonic() - t0 < 10
    assert w.metrics.drops["prediction_no_consumer"] >= 18 and "no prediction consumer" in buf.getvalue()
    w.peers.close()
    out.close(0)


def test_refused_curve_peer_is_logged(ctx, tmp_path):
    make_keys(tmp_path / "keys")
    make_keys(tmp_path / "intruder")
    curve = Curve(tmp_path / "keys")
    srv, addr = bind_any(ctx, zmq.PUSH, curve=curve)
    log, buf = logger()
    watch = PeerWatch(srv, log, "consumer")
    bad_ctx = zmq.Context()
    bad = open_socket(bad_ctx, zmq.PULL, addr, bind=False, curve=Curve(tmp_path / "intruder"))
    deadline = time.monotonic() + TIMEOUT
    while watch.refused == 0 and time.monotonic() < deadline:
        watch.poll()
        time.sleep(0.02)
    assert watch.refused >= 1 and "refused a consumer" in buf.getvalue()
    bad.close(0)
    bad_ctx.term()
    watch.close()
    curve.stop()
    srv.close(0)


def test_a_waiting_worker_says_why(ctx, monkeypatch):
    import evrt.pipeline.classify as C
    monkeypatch.setattr(C, "WAIT_REPORT_S", 0.2)
    inp, _ = bind_any(ctx, zmq.PULL)
    log, buf = logger()
    w = ClassifyWorker(fake_clf(), inp, log=log)
    bg = Background(w.run)
    deadline = time.monotonic() + TIMEOUT
    while "waiting for a source" not in buf.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    w.stop.set()
    bg.result(TIMEOUT)
    assert "--idle-exit" in buf.getvalue()
    inp.close(0)


# thread pools reserve address space per core (OpenBLAS buffers, glibc arenas): the budget is stated,
# and tested, for one thread of each, as a deployment under `ulimit -v` would set them
BUDGET_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "NUMBA_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}


def test_classify_keeps_to_its_memory_budget_under_ulimit(tmp_path):
    """docs/ROBUSTNESS.md states `evrt classify` runs in 1 GiB of address space whatever peers send.
    main took three 300 MiB messages to 780 MB; here one 600 MiB message arrives under `ulimit -v 1 GiB`
    (it would not fit next to the ~540 MB the process maps), then a normal stream is classified."""
    import json
    import os
    import resource
    import subprocess
    import sys
    from pathlib import Path

    from evrt.toy import toy_graph
    model = tmp_path / "toy.evrt"
    toy_graph(seed=3, T=4).save(str(model))
    ev_addr, big_addr, pred_addr = private_endpoint(), private_endpoint(), private_endpoint()
    budget = 1 << 30

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (budget, budget))

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "evrt", "classify", "--model", str(model),
                             "--connect", f"{big_addr},{ev_addr}", "--publish", pred_addr, "--pattern", "pull", "--count", "500", "--max-streams", "1",
                             "--idle-exit", "60", "--json", "--metrics-every", "0"], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=limit,
                            env=dict(os.environ, **BUDGET_ENV))
    ctx = zmq.Context()
    try:
        big = open_socket(ctx, zmq.PUSH, big_addr, bind=True)
        tx = open_socket(ctx, zmq.PUSH, ev_addr, bind=True)
        sink = open_socket(ctx, zmq.PULL, pred_addr, bind=False)
        huge = np.zeros(600 << 20, np.uint8)   # untouched zero pages: cheap for this process
        head = P.HEADER.pack(P.MAGIC, P.VERSION, P.EVENTS, 5, 0, 0, 0, len(huge) // 13, P.DTYPE_EVRT, 32, 32, 0)
        assert big.poll(60_000, zmq.POLLOUT)
        big.send_multipart([head, memoryview(huge)], copy=False)
        pub = Publisher(tx, stream_id=6)
        packets = list(ArraySource(synthetic_events(5000, seed=3), packet_us=20_000))
        for p in packets:
            assert pub.send_events(p)
        assert pub.send_end()
        preds, eos = collect_predictions(sink, 120)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        ctx.destroy(linger=0)
    assert proc.returncode == 0, err[-2000:]
    assert eos and eos[0]["events"] == 5000 and sum(p["n_events"] for p in preds) == 5000
    summary = [json.loads(line) for line in err.splitlines() if '"summary"' in line][-1]
    assert summary["events_in"] == 5000 and summary["streams_ended"] == 1


def test_watch_survives_malformed_predictions(ctx, capsys):
    """main: `evrt watch` given [b'pred', b'{}'] or a JSON list died with a traceback."""
    from evrt.cli import main
    from evrt.streaming import Prediction
    tx, addr = bind_any(ctx, zmq.PUSH)
    good = Prediction(0, 0, 10, 5, 1, "b", 0.5, [0.1, 0.9], 1.0, 7, 0)

    def send():
        for frames in ([b"pred", b"{}"], [b"pred", b"[1]"], [b"pred", b'{"step": "x"}'], P.encode_json(P.TOPIC_PRED,
                                                                                                     good.to_dict())):
            tx.send_multipart(frames)
    sender = Background(send)
    code = main(["watch", "--connect", addr, "--pattern", "pull", "--limit", "1", "--idle-exit", "30", "--json"])
    sender.result(TIMEOUT)
    out, err = capsys.readouterr()
    assert code == 0 and Prediction.from_dict(__import__("json").loads(out)).same_as(good)
    assert "3 malformed messages ignored" in err and "Traceback" not in err
    tx.close(0)


@pytest.mark.parametrize("opt", [["--count", "0"], ["--count", str(10**9)], ["--window-us", "-5"],
                                 ["--shard", "2/2"], ["--max-sessions", "0"]])
def test_classify_bad_options_are_one_line_errors(tmp_path, capsys, opt):
    from evrt.cli import main
    from evrt.toy import toy_graph
    model = tmp_path / "toy.evrt"
    toy_graph(seed=3, T=4).save(str(model))
    code = main(["classify", "--model", str(model), "--connect", private_endpoint(), "--publish", private_endpoint(),
                 *opt])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
