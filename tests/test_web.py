"""The live page's server side: what it shows, bounded pushing, several and slow viewers, busy ports."""
import asyncio
import json
import socket
import struct
import threading
import time

import numpy as np
import pytest

from conftest import ON_CI

if ON_CI:
    import aiohttp  # noqa: F401  (CI installs the [web] extra)
else:
    pytest.importorskip("aiohttp")

from evrt.cli import main
from evrt.errors import EvrtError
from evrt.events import make_events
from evrt.streaming import Prediction
from evrt.web import LiveState
from evrt.web.server import WebServer, parse_web_addr


def pred(step, k, n_classes=3, t_us=None):
    logits = [0.0] * n_classes
    logits[k] = 5.0
    t = t_us if t_us is not None else 1_000_000 + step * 10_000
    return Prediction(step=step, start_us=t - 10_000, end_us=t, n_events=100, class_index=k, class_name=f"c{k}",
                      confidence=0.9, logits=logits, latency_ms=1.5, acs=1000, macs=10)


def test_parse_web_addr():
    assert parse_web_addr("8080") == ("127.0.0.1", 8080)
    assert parse_web_addr("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_web_addr("[::1]:0") == ("::1", 0)
    for bad in ("", "host:", "x:99999", "abc"):
        with pytest.raises(EvrtError, match="--web"):
            parse_web_addr(bad)


def test_live_state_image_and_snapshot():
    live = LiveState(sensor_size=(4, 3), classes=["a", "b", "c"], image_us=1000)
    live.events(make_events([0, 10], [0, 1], [0, 0], [1, 0]))            # older than the image span
    live.events(make_events([5000, 5001, 5002, 5003], [1, 1, 3, 2], [0, 0, 2, 1], [1, 0, 1, 0]))
    w, h, img = live.image()
    img = np.frombuffer(img, np.uint8).reshape(h, w)
    expect = np.zeros((3, 4), np.uint8)
    expect[0, 1], expect[2, 3], expect[1, 2] = 3, 1, 2  # ON and OFF on one pixel = 3
    assert (w, h) == (4, 3) and np.array_equal(img, expect)
    assert live.snapshot().get("now") is None
    for i in range(5):
        live.prediction(pred(i, i % 3))
    s = live.snapshot()
    assert s["now"]["class_name"] == "c1" and s["now"]["step"] == 4 and np.argmax(s["now"]["probs"]) == 1
    assert len(s["timeline"]["probs"]) == 5 and s["latency_ms"]["last"] == 1.5
    assert s["rates"]["acs_per_s"] == pytest.approx(5000 / 0.05)  # 5 windows of 10 ms of stream
    assert s["classes"] == ["c0", "c1", "c2"]  # names learnt from the predictions


async def _viewers(url, seconds):
    """One reading viewer, one that never reads (slow), one that leaves at once."""
    import aiohttp
    got = []
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url + "ws") as gone:
            await gone.close()
        slow = await http.ws_connect(url + "ws", max_msg_size=0)
        async with http.ws_connect(url + "ws") as ws:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    m = await ws.receive(timeout=seconds)
                except asyncio.TimeoutError:
                    break
                if m.type == aiohttp.WSMsgType.TEXT:
                    got.append(json.loads(m.data))
                elif m.type == aiohttp.WSMsgType.BINARY:
                    got.append(struct.unpack("<HH", m.data[:4]) + (len(m.data) - 4,))
        await slow.close()
    return got


def test_server_pushes_at_a_bounded_rate_to_several_viewers_without_blocking_producers():
    W, H = 1280, 720  # ~0.9 MB a frame at 20 Hz: a viewer that never reads fills its socket in a second
    live = LiveState(sensor_size=(W, H), classes=["a", "b", "c"])
    server = WebServer(live, "127.0.0.1", 0, rate_hz=20).start()
    stop = threading.Event()
    calls = [0, 0.0]

    def produce():
        i = 0
        rng = np.random.default_rng(0)
        while not stop.is_set():
            t = 1_000_000 + i * 1000
            ev = make_events(np.full(2000, t), rng.integers(0, W, 2000), rng.integers(0, H, 2000),
                             rng.integers(0, 2, 2000))
            t0 = time.perf_counter()
            live.events(ev)
            live.prediction(pred(i, i % 3, t_us=t))
            calls[1] = max(calls[1], time.perf_counter() - t0)
            calls[0] += 1
            i += 1
            time.sleep(0.0005)

    th = threading.Thread(target=produce, daemon=True)
    th.start()
    try:
        got = asyncio.run(_viewers(server.url, 3.0))
    finally:
        stop.set()
        th.join(5)
        server.stop()
    states = [g for g in got if isinstance(g, dict)]
    images = [g for g in got if isinstance(g, tuple)]
    # bounded: at most 20 frames a second (+ the one sent on joining), while the producer made thousands
    assert 5 <= len(states) <= 3.0 * 20 + 5 and calls[0] > 10 * len(states)
    assert all(img == (W, H, W * H) for img in images) and len(images) >= len(states) - 1
    assert server.skipped > 0  # the viewer that never reads skipped frames instead of queueing them
    steps = [s["now"]["step"] for s in states if "now" in s]
    assert steps == sorted(steps) and len(set(steps)) > 3
    assert max(s["viewer"]["viewers"] for s in states) >= 2  # the slow viewer was there too
    assert calls[1] < 0.05  # a producer call never waited for a viewer (worst case, loaded machine)


def test_busy_port_is_one_clear_line(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(EvrtError, match="already in use"):
            WebServer(LiveState(), "127.0.0.1", port).start()
        assert main(["serve", "--camera", "file:nothing.npy", "--model", "sdt-synth-gesture", "--web",
                     str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already in use" in err[0] and str(port) in err[0], err


def test_missing_aiohttp_says_how_to_install(monkeypatch):
    import builtins
    real = builtins.__import__

    def no_aiohttp(name, *a, **k):
        if name.startswith("aiohttp"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_aiohttp)
    with pytest.raises(EvrtError, match=r'pip install "evrt\[web\]"'):
        WebServer(LiveState())


def test_page_is_package_data_without_external_assets():
    from importlib import resources
    page = resources.files("evrt.web").joinpath("static/index.html").read_text()
    assert "new WebSocket" in page and 'id="events"' in page and 'id="pred"' in page
    for external in ("http://", "https://", "//cdn", "src=\"http"):
        assert external not in page.replace('"https:" ? "wss://"', ""), external


def test_watch_web_shows_a_remote_classifiers_predictions(monkeypatch):
    """`evrt watch --web` for a classifier elsewhere: the page state follows the published predictions."""
    import urllib.request

    import zmq

    from evrt.pipeline.protocol import TOPIC_PRED, encode_json
    from evrt.pipeline.testing import Background, tcp
    from evrt.web.server import WebServer
    servers = []   # the page listens on a port the OS picks (--web 127.0.0.1:0); its server says which
    start = WebServer.start

    def recorded_start(self):
        servers.append(self)
        return start(self)
    monkeypatch.setattr(WebServer, "start", recorded_start)
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    watch = Background(main, ["watch", "--connect", tcp(port), "--web", "127.0.0.1:0", "--limit", "40",
                              "--json"])
    try:
        state, i = {}, 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and watch.is_alive():
            pub.send_multipart(encode_json(TOPIC_PRED, pred(i, 2 if i < 30 else 1).to_dict()))
            i += 1
            time.sleep(0.05)
            web = servers[0].port if servers else 0
            if not web:
                continue  # not listening yet
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web}/state.json", timeout=5) as r:
                    state = json.loads(r.read())
            except OSError:
                continue  # not listening yet
            if state.get("now", {}).get("step", -1) >= 10:
                break
        assert state["now"]["class_name"] == "c2" and state["rates"]["acs_per_s"] > 0 and "layers" not in state
        while watch.is_alive() and time.monotonic() < deadline:  # the remaining predictions, then --limit ends it
            pub.send_multipart(encode_json(TOPIC_PRED, pred(i, 1).to_dict()))
            i += 1
            time.sleep(0.02)
        assert watch.result(30) == 0
    finally:
        pub.close(0)
        ctx.term()


def test_layer_rows_are_the_sessions_counters_over_the_last_interval():
    from evrt.pipeline.testing import synthetic_events
    from evrt.toy import toy_graph
    from evrt.engine import Session
    from evrt.streaming import StreamClassifier
    from evrt.framing import StreamFramer
    sess = Session(toy_graph(seed=3, T=4), mode="continuous", reset_every=None)
    clf = StreamClassifier(sess, StreamFramer(count=500))
    live = LiveState(sensor_size=(32, 32), layer_every_s=0.0)
    live.session = sess
    ev = synthetic_events(3000, sensor=(32, 32))
    preds = clf.push(ev[:2500])
    before = {l.name: (l.spikes, l.acs) for l in sess.report().layers}
    for p in preds:
        live.prediction(p)
    last = clf.push(ev[2500:]) + clf.end_of_stream()
    assert len(last) == 1
    live.prediction(last[0])
    after = {l.name: (l.spikes, l.acs, l.neurons) for l in sess.report().layers}
    rows = {r["name"]: r for r in live.snapshot()["layers"]}
    sec = (last[0].end_us - preds[-1].end_us) / 1e6
    assert rows
    for name, r in rows.items():
        spikes, acs, neurons = after[name]
        if neurons:
            assert r["rate"] == pytest.approx((spikes - before[name][0]) / neurons)
        assert r["acs_per_s"] == pytest.approx((acs - before[name][1]) / sec)
