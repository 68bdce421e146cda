"""The pipeline over real sockets on 127.0.0.1: every test has timeouts and stops by itself.

(a) replay over PUSH/PULL == in-process StreamClassifier; (b) PUB/SUB flood: bounded memory, drops
counted from sequence gaps; (c) malformed messages dropped and counted, valid traffic unaffected;
(d) classifier / source restarts give fresh state; (e) CURVE refuses unauthenticated clients over PUB/SUB
and PUSH/PULL; (f) loopback by default, a warning for an exposed bind without CURVE. Every bound socket
gets its port from the OS (bind_any).
"""
import threading
import time
import types

import numpy as np
import pytest
import zmq

from evrt.engine import Session
from evrt.framing import StreamFramer
from evrt.pipeline import protocol as P
from evrt.pipeline.classify import ClassifyWorker
from evrt.pipeline.metrics import Metrics
from evrt.pipeline.sockets import make_keys, Curve, open_socket
from evrt.pipeline.source import ArraySource, Publisher, publish
from evrt.pipeline.testing import Background, FakeSession, bind_any, collect_predictions, synthetic_events
from evrt.streaming import Prediction, StreamClassifier
from evrt.toy import toy_graph

TIMEOUT = 30.0


@pytest.fixture(scope="module")
def graph():
    return toy_graph(seed=3, T=4)


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def make_clf(graph, **framing):
    return StreamClassifier(Session(graph, mode="continuous", reset_every=None), StreamFramer(**framing))


def in_process(graph, packets, **framing):
    clf = make_clf(graph, **framing)
    out = []
    for p in packets:
        out += clf.push(p)
    return out + clf.end_of_stream()


class Classifier:
    """A ClassifyWorker in a thread with its own sockets (PULL in, PUSH out unless live)."""

    def __init__(self, ctx, clf, in_addr, live=False, hwm=64, curve=None, **run_kw):
        self.out, self.out_addr = bind_any(ctx, zmq.PUB if live else zmq.PUSH, hwm=hwm)
        self.inp = open_socket(ctx, zmq.SUB if live else zmq.PULL, in_addr, bind=False, hwm=hwm, curve=curve)
        self.stop = threading.Event()
        self.worker = ClassifyWorker(clf, self.inp, self.out, metrics=Metrics(0), stop=self.stop)
        self.sink = open_socket(ctx, zmq.SUB if live else zmq.PULL, self.out_addr, bind=False, hwm=100_000)
        self.bg = Background(self.worker.run, **run_kw)

    def close(self, timeout=TIMEOUT):
        self.stop.set()
        summary = self.bg.result(timeout)
        for s in (self.out, self.inp, self.sink):
            s.close(linger=0)
        return summary


def assert_same(got_dicts, expect):
    got = [Prediction.from_dict(d) for d in got_dicts]
    assert len(got) == len(expect)
    for g, e in zip(got, expect):
        assert g.same_as(e), (g, e)


# ------------------------------------------------------------------------------------------- (a)
@pytest.mark.parametrize("framing", [{"count": 1500}, {"window_us": 20_000}], ids=["count", "window"])
def test_a_replay_push_pull_equals_in_process(ctx, graph, framing):
    ev = synthetic_events(30_000, duration_us=400_000, seed=4)
    tx, src_addr = bind_any(ctx, zmq.PUSH, hwm=4)  # small HWM: back-pressure must not lose anything
    c = Classifier(ctx, make_clf(graph, **framing), src_addr, hwm=4, max_streams=1)
    source = ArraySource(ev, sensor_size=(32, 32), packet_us=7_000, max_packet=900)
    pub = Publisher(tx)
    Background(publish, source, pub).result(TIMEOUT)
    preds, eos = collect_predictions(c.sink, TIMEOUT)
    summary = c.close()
    tx.close(linger=0)
    assert len(eos) == 1 and eos[0]["stream_id"] == pub.stream_id and summary["lost_messages"] == 0
    assert_same(preds, in_process(graph, list(ArraySource(ev, packet_us=7_000, max_packet=900)), **framing))
    assert all(p["stream_id"] == pub.stream_id for p in preds)
    assert summary["events_in"] == len(ev) and not summary["dropped"]


# ------------------------------------------------------------------------------------------- (b)
def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class SendLog:
    """The sequence numbers of the messages a Publisher really handed to ZeroMQ, recorded at the socket."""

    def __init__(self, pub):
        self.seqs = []
        sock, send = pub.sock, pub.sock.send_multipart

        def record(frames, **kw):
            out = send(frames, **kw)
            self.seqs.append(P.decode(frames).seq)
            return out
        pub.sock = types.SimpleNamespace(poll=sock.poll, send_multipart=record)


def test_b_pub_sub_flood_memory_bounded_and_gaps_counted(ctx):
    n_msgs, per_msg = 1000, 20_000  # 1000 x 260 kB = 260 MB offered to a consumer taking 15 ms a message
    tx, src_addr = bind_any(ctx, zmq.PUB, hwm=8)
    c = Classifier(ctx, StreamClassifier(FakeSession(delay_s=0.015), StreamFramer(count=per_msg)), src_addr,
                   live=True, hwm=8, max_streams=1)
    got = []   # (seq, kind, events) of what reached the classifier, recorded before its bookkeeping sees it
    handle = c.worker.handle

    def record(frames):
        msg = P.decode(frames)
        got.append((msg.seq, msg.kind, len(msg.events) if msg.kind == P.EVENTS else 0))
        return handle(frames)
    c.worker.handle = record
    pub = Publisher(tx)
    sent = SendLog(pub)
    deadline = time.monotonic() + TIMEOUT
    while c.worker.metrics.messages_in == 0 and time.monotonic() < deadline:  # wait for the subscription
        pub.send_reset()
        time.sleep(0.02)
    assert c.worker.metrics.messages_in > 0
    template = synthetic_events(per_msg, seed=5)
    peak, base, done = [0], _rss_bytes(), threading.Event()

    def watch_rss():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.005)
    mon = Background(watch_rss)
    for i in range(n_msgs):
        ev = template.copy()  # a fresh buffer per message, as a camera delivers
        ev["t"] += i * 1_000_000
        assert pub.send_events(ev)
    # end the stream: PUB may drop an END at the high-water mark too, so repeat until one arrives
    while not c.worker.streams_ended and time.monotonic() < deadline:
        pub.send_end()
        time.sleep(0.05)
    done.set()
    mon.result(TIMEOUT)
    summary = c.close()
    tx.close(linger=0)
    m = c.worker.metrics
    assert c.worker.streams_ended >= 1, "no end-of-stream reached the classifier"
    received = [q for q, _, _ in got]
    print(f"sent {len(sent.seqs)}, received {len(received)}, lost {m.lost}, RSS growth {(peak[0] - base) / 2**20:.1f} MB")
    # the loss the classifier reports is what the publisher sent between the first and the last message
    # the classifier got, minus what it got; both sides recorded at the sockets, not by the tracker
    assert received == sorted(received) and set(received) <= set(sent.seqs)
    window = [q for q in sent.seqs if received[0] <= q <= received[-1]]
    assert m.messages_in == len(received)
    assert m.lost == len(window) - len(received) > 0, "the slow consumer should have lost messages"
    assert summary["events_in"] == sum(n for _, _, n in got) < n_msgs * per_msg
    growth = peak[0] - base
    assert growth < 64 * 2**20, f"memory grew {growth / 2**20:.0f} MB while flooding 260 MB"


# ------------------------------------------------------------------------------------------- (c)
def test_c_malformed_messages_dropped_counted_valid_traffic_intact(ctx, graph):
    from test_pipeline_protocol import malformed

    ev = synthetic_events(12_000, duration_us=300_000, seed=6)
    packets = list(ArraySource(ev, packet_us=10_000))
    bad = malformed()
    unexpected = P.encode(P.PREDICTION, 1, 0)
    tx, src_addr = bind_any(ctx, zmq.PUSH, hwm=1000)
    c = Classifier(ctx, make_clf(graph, count=1000), src_addr, hwm=1000, max_streams=1)
    pub = Publisher(tx)
    per_kind = 1000
    k = 0

    def send_junk(n):
        nonlocal k
        for _ in range(n):
            tx.send_multipart(bad[k % len(bad)][1])
            k += 1
    for i, pkt in enumerate(packets):
        send_junk(per_kind * len(bad) // len(packets) + 1)
        tx.send_multipart(unexpected)
        pub.send_events(pkt)
    send_junk(per_kind * len(bad) - k if k < per_kind * len(bad) else 0)
    pub.send_end()
    preds, eos = collect_predictions(c.sink, TIMEOUT)
    summary = c.close()
    tx.close(linger=0)
    expect = {}
    for j in range(k):
        reason = bad[j % len(bad)][0]
        expect[reason] = expect.get(reason, 0) + 1
    expect["unexpected_kind"] = len(packets)
    assert k >= per_kind * len(bad) and summary["dropped"] == expect
    assert len(eos) == 1 and summary["lost_messages"] == 0
    assert_same(preds, in_process(graph, packets, count=1000))


# ------------------------------------------------------------------------------------------- (d)
def test_d_classifier_restart_mid_stream_resumes_fresh(ctx, graph):
    ev = synthetic_events(16_000, duration_us=400_000, seed=7)
    packets = list(ArraySource(ev, packet_us=10_000))
    half = len(packets) // 2
    tx, src_addr = bind_any(ctx, zmq.PUSH, hwm=4)
    pub = Publisher(tx)
    a = Classifier(ctx, make_clf(graph, count=1200), src_addr)
    for p in packets[:half]:
        assert pub.send_events(p)
    deadline = time.monotonic() + TIMEOUT
    while a.worker.metrics.messages_in < half and time.monotonic() < deadline:
        time.sleep(0.01)
    # the classifier dies mid-stream; until the source's socket has seen it go, PUSH would still deal
    # messages into the dead peer's queue (lost, as ZeroMQ documents), so wait for the disconnect
    gone = tx.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    a.close()
    assert gone.poll(int(TIMEOUT * 1000)), "the source never saw the classifier disconnect"
    tx.disable_monitor()
    gone.close(linger=0)
    b = Classifier(ctx, make_clf(graph, count=1200), src_addr, max_streams=1)
    sender = Background(lambda: [pub.send_events(p) for p in packets[half:]] + [pub.send_end()])
    sender.result(TIMEOUT)
    preds, eos = collect_predictions(b.sink, TIMEOUT)
    b.close()
    tx.close(linger=0)
    assert b.worker.tracker.first_seq == half and preds[0]["step"] == 0
    assert_same(preds, in_process(graph, packets[half:], count=1200))


def test_d_source_restart_and_reset_message_reset_the_session(ctx, graph):
    ev = synthetic_events(10_000, duration_us=200_000, seed=8)
    packets = list(ArraySource(ev, packet_us=10_000))
    tx, src_addr = bind_any(ctx, zmq.PUSH)
    c = Classifier(ctx, make_clf(graph, count=700), src_addr, max_streams=1)
    first = Publisher(tx)
    for p in packets[:7]:
        first.send_events(p)
    second = Publisher(tx)  # the source restarted: new stream id, sequence from 0
    for p in packets[7:12]:
        second.send_events(p)
    second.send_reset()
    for p in packets[12:]:
        second.send_events(p)
    second.send_end()
    preds, eos = collect_predictions(c.sink, TIMEOUT)
    c.close()
    tx.close(linger=0)
    n1 = len(in_process(graph, packets[:7], count=700)) - 1  # the first stream's open window stays open
    n2 = len(make_clf(graph, count=700).push(np.concatenate(packets[7:12])))
    # the restarted source is a new stream with its own session; only the RESET message resets one
    assert c.worker.metrics.resets == 1 and c.worker.sessions_opened == 2
    assert {p["stream_id"] for p in preds[:n1]} == {first.stream_id}
    assert {p["stream_id"] for p in preds[n1:]} == {second.stream_id}
    assert_same(preds[:n1], in_process(graph, packets[:7], count=700)[:n1])
    assert_same(preds[n1:n1 + n2], make_clf(graph, count=700).push(np.concatenate(packets[7:12])))
    assert_same(preds[n1 + n2:], in_process(graph, packets[12:], count=700))


# ------------------------------------------------------------------------------------------- (e)
@pytest.fixture
def keyrings(tmp_path):
    """(server's keys, an intruder's well-formed keypair that the server never authorised)."""
    make_keys(tmp_path / "keys")
    make_keys(tmp_path / "intruder")
    intruder = Curve(tmp_path / "intruder")
    intruder.server_public = Curve(tmp_path / "keys").server_public  # knows the server's public key
    return tmp_path / "keys", intruder


def test_e_curve_pub_sub_authenticated_client_only(keyrings):
    keys, intruder = keyrings
    server_ctx, good_ctx, plain_ctx, bad_ctx = (zmq.Context() for _ in range(4))
    curve = Curve(keys)
    try:
        tx, addr = bind_any(server_ctx, zmq.PUB, curve=curve)
        good = open_socket(good_ctx, zmq.SUB, addr, bind=False, curve=Curve(keys))
        plain = open_socket(plain_ctx, zmq.SUB, addr, bind=False)
        bad = open_socket(bad_ctx, zmq.SUB, addr, bind=False, curve=intruder)
        pub = Publisher(tx)
        got = {"good": 0, "plain": 0, "bad": 0}
        ev = synthetic_events(100)
        deadline = time.monotonic() + TIMEOUT
        while got["good"] < 20 and time.monotonic() < deadline:  # PUB drops until a handshake completes
            pub.send_events(ev)
            for name, s in (("good", good), ("plain", plain), ("bad", bad)):
                while s.poll(0):
                    msg = P.decode(s.recv_multipart())
                    assert np.array_equal(msg.events, ev)
                    got[name] += 1
            time.sleep(0.02)
        assert got["good"] >= 20 and got["plain"] == 0 and got["bad"] == 0, got
        for s in (tx, good, plain, bad):
            s.close(linger=0)
    finally:
        curve.stop()
        for c in (server_ctx, good_ctx, plain_ctx, bad_ctx):
            c.destroy(linger=0)


def test_e_curve_push_pull_authenticated_client_only(keyrings):
    """PUSH deals messages round-robin to every attached peer: the authorised client receiving all of
    them proves that neither the plain nor the intruding client was ever attached."""
    keys, intruder = keyrings
    server_ctx, good_ctx, plain_ctx, bad_ctx = (zmq.Context() for _ in range(4))
    curve = Curve(keys)
    try:
        tx, addr = bind_any(server_ctx, zmq.PUSH, curve=curve)
        plain = open_socket(plain_ctx, zmq.PULL, addr, bind=False)
        bad = open_socket(bad_ctx, zmq.PULL, addr, bind=False, curve=intruder)
        good = open_socket(good_ctx, zmq.PULL, addr, bind=False, curve=Curve(keys))
        pub = Publisher(tx)
        packets = [synthetic_events(50, seed=i) for i in range(40)]
        sender = Background(lambda: all(pub.send_events(p) for p in packets))  # blocks until a peer is attached
        received = []
        deadline = time.monotonic() + TIMEOUT
        while len(received) < len(packets) and time.monotonic() < deadline:
            if good.poll(50):
                received.append(P.decode(good.recv_multipart()).events)
        assert sender.result(TIMEOUT)
        assert len(received) == len(packets) and all(np.array_equal(a, b) for a, b in zip(received, packets))
        assert not plain.poll(200) and not bad.poll(0)
        for s in (tx, good, plain, bad):
            s.close(linger=0)
    finally:
        curve.stop()
        for c in (server_ctx, good_ctx, plain_ctx, bad_ctx):
            c.destroy(linger=0)


# ------------------------------------------------------------------------------------ (f) exposure
def test_f_addresses_default_to_loopback():
    from evrt.cli import build_parser
    from evrt.pipeline.sockets import is_loopback, normalize_addr
    for spec in ("5555", ":5555", "tcp://127.0.0.1:5555", "localhost:1", "tcp://[::1]:7"):
        assert is_loopback(normalize_addr(spec)), spec
    for spec in ("0.0.0.0:5555", "tcp://*:5555", "tcp://eth0:5555", "tcp://192.168.1.4:5555", "camera.local:1"):
        assert not is_loopback(normalize_addr(spec)), spec
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    defaults = {(cmd, a.dest): a.default for cmd in ("source", "classify", "watch", "serve")
                for a in sub[cmd]._actions if a.dest in ("bind", "publish", "connect")}
    assert ("source", "bind") in defaults and ("classify", "publish") in defaults
    for where, default in defaults.items():
        if default is not None:
            assert is_loopback(normalize_addr(default)), f"{where} defaults to {default}, reachable from outside"


@pytest.mark.parametrize("addr,secure,warned", [("tcp://0.0.0.0:*", False, True), ("tcp://0.0.0.0:*", True, False),
                                               ("tcp://127.0.0.1:*", False, False)],
                         ids=["exposed-plain", "exposed-curve", "loopback"])
def test_f_warning_for_an_exposed_bind_without_curve(ctx, tmp_path, capsys, addr, secure, warned):
    curve = None
    if secure:
        make_keys(tmp_path / "keys")
        curve = Curve(tmp_path / "keys")
    try:
        sock = open_socket(ctx, zmq.PUB, addr, bind=True, curve=curve)
        sock.close(linger=0)
    finally:
        if curve:
            curve.stop()
    err = capsys.readouterr().err
    assert ("without --curve-keys" in err and "warning" in err) == warned, err
