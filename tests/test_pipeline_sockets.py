"""The pipeline over real sockets on 127.0.0.1: every test has timeouts and stops by itself.

(a) replay over PUSH/PULL == in-process StreamClassifier; (b) PUB/SUB flood: bounded memory, drops
counted from sequence gaps; (c) malformed messages dropped and counted, valid traffic unaffected;
(d) classifier / source restarts give fresh state; (e) CURVE refuses unauthenticated clients.
"""
import threading
import time

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
from evrt.pipeline.testing import Background, FakeSession, collect_predictions, free_port, synthetic_events, tcp
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
        self.out_addr = tcp(free_port())
        self.out = open_socket(ctx, zmq.PUB if live else zmq.PUSH, self.out_addr, bind=True, hwm=hwm)
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
    src_addr = tcp(free_port())
    tx = open_socket(ctx, zmq.PUSH, src_addr, bind=True, hwm=4)  # small HWM: back-pressure must not lose anything
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


def test_b_pub_sub_flood_memory_bounded_and_gaps_counted(ctx):
    n_msgs, per_msg = 1000, 20_000  # 1000 x 260 kB = 260 MB offered to a consumer taking 15 ms a message
    src_addr = tcp(free_port())
    tx = open_socket(ctx, zmq.PUB, src_addr, bind=True, hwm=8)
    c = Classifier(ctx, StreamClassifier(FakeSession(delay_s=0.015), StreamFramer(count=per_msg)), src_addr,
                   live=True, hwm=8, max_streams=1)
    pub = Publisher(tx)
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
        pub.send_events(ev)
    # let the consumer drain what reached it, then end the stream
    seen = -1
    while seen != c.worker.metrics.messages_in and time.monotonic() < deadline:
        seen = c.worker.metrics.messages_in
        time.sleep(0.3)
    for _ in range(50):
        pub.send_end()
        if c.worker.streams_ended:
            break
        time.sleep(0.1)
    done.set()
    mon.result(5)
    summary = c.close()
    tx.close(linger=0)
    m = c.worker.metrics
    tr = c.worker.tracker
    assert m.lost > 0, "the slow consumer should have lost messages"
    print(f"received {m.messages_in}, lost {m.lost}, RSS growth {(peak[0] - base) / 2**20:.1f} MB")
    # every message between the first and the last one seen is either received or counted lost
    assert m.messages_in + m.lost == tr.next_seq - tr.first_seq
    assert summary["events_in"] % per_msg == 0 and summary["events_in"] < n_msgs * per_msg
    growth = peak[0] - base
    assert growth < 64 * 2**20, f"memory grew {growth / 2**20:.0f} MB while flooding 260 MB"


# ------------------------------------------------------------------------------------------- (c)
def test_c_malformed_messages_dropped_counted_valid_traffic_intact(ctx, graph):
    from test_pipeline_protocol import malformed

    ev = synthetic_events(12_000, duration_us=300_000, seed=6)
    packets = list(ArraySource(ev, packet_us=10_000))
    bad = malformed()
    unexpected = P.encode(P.PREDICTION, 1, 0)
    src_addr = tcp(free_port())
    tx = open_socket(ctx, zmq.PUSH, src_addr, bind=True, hwm=1000)
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
    src_addr = tcp(free_port())
    tx = open_socket(ctx, zmq.PUSH, src_addr, bind=True, hwm=4)
    pub = Publisher(tx)
    a = Classifier(ctx, make_clf(graph, count=1200), src_addr)
    for p in packets[:half]:
        assert pub.send_events(p)
    deadline = time.monotonic() + TIMEOUT
    while a.worker.metrics.messages_in < half and time.monotonic() < deadline:
        time.sleep(0.01)
    a.close()  # the classifier dies mid-stream
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
    src_addr = tcp(free_port())
    tx = open_socket(ctx, zmq.PUSH, src_addr, bind=True)
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
def test_e_curve_authenticated_client_only(tmp_path):
    make_keys(tmp_path / "keys")
    other = tmp_path / "intruder"
    make_keys(other)  # a well-formed keypair that the server never authorised
    server_ctx, good_ctx, plain_ctx, bad_ctx = (zmq.Context() for _ in range(4))
    curve = Curve(tmp_path / "keys")
    addr = tcp(free_port())
    try:
        tx = open_socket(server_ctx, zmq.PUB, addr, bind=True, curve=curve)
        good = open_socket(good_ctx, zmq.SUB, addr, bind=False, curve=Curve(tmp_path / "keys"))
        plain = open_socket(plain_ctx, zmq.SUB, addr, bind=False)
        intruder_keys = Curve(other)
        intruder_keys.server_public = curve.server_public  # knows the server's public key, not authorised
        bad = open_socket(bad_ctx, zmq.SUB, addr, bind=False, curve=intruder_keys)
        pub = Publisher(tx)
        got = {"good": 0, "plain": 0, "bad": 0}
        ev = synthetic_events(100)
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            pub.send_events(ev)
            for name, s in (("good", good), ("plain", plain), ("bad", bad)):
                while s.poll(0):
                    msg = P.decode(s.recv_multipart())
                    assert np.array_equal(msg.events, ev)
                    got[name] += 1
            time.sleep(0.02)
            if got["good"] >= 20:
                break
        assert got["good"] > 0 and got["plain"] == 0 and got["bad"] == 0, got
        for s in (tx, good, plain, bad):
            s.close(linger=0)
    finally:
        curve.stop()
        for c in (server_ctx, good_ctx, plain_ctx, bad_ctx):
            c.destroy(linger=0)
