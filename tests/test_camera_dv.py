"""The real dv-processing stack (extra [camera]), on loopback: a NetworkWriter in its own process serves a
cut of a shipped recording; evrt's dv:// source, discovery, serve and --record are checked against it."""
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import ON_CI

if ON_CI:
    import dv_processing  # noqa: F401  (CI installs the [camera] extra: a missing package must fail)
else:
    pytest.importorskip("dv_processing")

from evrt.cli import main
from evrt.errors import EvrtError
from evrt.formats.aedat31 import read_labels_csv
from evrt.pipeline.metrics import Log
from evrt.pipeline.source import DvNetworkSource, load_recording, open_source
from evrt.pipeline.testing import Background


def free_port() -> int:
    """A port nothing listens on now. Only for dv-processing's NetworkWriter, which takes a fixed port
    in its own process (no port 0): start_writer retries if another process takes it first."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

HERE = os.path.dirname(os.path.abspath(__file__))
REC = os.path.join(HERE, "..", "examples", "data", "dvsgesture_synth", "user06_fluorescent_led.aedat")
# the cut: sensor time [T0, T0 + 1.5 s) holds the first gesture's start (the recording's own labels)
T0 = int(read_labels_csv(REC[:-len(".aedat")] + "_labels.csv")[0]["start"]) - 300_000
CUT = (T0, T0 + 1_500_000)
CUT2 = (T0 + 3_000_000, T0 + 3_600_000)
TIMEOUT = 90


def cut(span):
    ev, size = load_recording(REC)
    return ev[(ev["t"] >= span[0]) & (ev["t"] < span[1])], size


class Writer:
    """tests/dv_writer.py in a subprocess: a real NetworkWriter on 127.0.0.1:port."""

    def __init__(self, port, span):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(HERE, ".."), os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "dv_writer.py"), str(port), REC,
                                      str(span[0]), str(span[1])], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)
        line = self.proc.stdout.readline()
        if line.strip() != "listening":
            self.kill()
            raise RuntimeError(f"dv writer did not start on port {port}: {line!r}")

    def wait_sent(self) -> int:
        return int(self.proc.stdout.readline().split()[1])

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)


def start_writer(span):
    """A writer on a free port (retried: another process may take the port between probe and bind)."""
    for _ in range(5):
        port = free_port()
        try:
            return port, Writer(port, span)
        except RuntimeError:
            continue
    pytest.fail("could not start a dv-processing NetworkWriter on 127.0.0.1")


def take(it, n, stop=None, timeout=TIMEOUT):
    """At least n events from the source iterator; ``stop`` (the source's stop event) is set after
    ``timeout`` so a stream that never delivers ends the wait instead of hanging the test."""
    got, total = [], 0
    watchdog = threading.Timer(timeout, stop.set) if stop is not None else None
    if watchdog:
        watchdog.start()
    try:
        for p in it:
            got.append(p)
            total += len(p)
            if total >= n:
                break
    finally:
        if watchdog:
            watchdog.cancel()
    return np.concatenate(got) if got else np.zeros(0)


def test_dv_network_stream_arrives_exactly_and_reconnects():
    expect, size = cut(CUT)
    port, w = start_writer(CUT)
    logbuf = io.StringIO()
    try:
        src = open_source(f"dv://127.0.0.1:{port}", Log("test", stream=logbuf))
        assert isinstance(src, DvNetworkSource) and src.sensor_size == size == (128, 128)
        calls = []
        src.on_disconnect, src.on_reconnect = (lambda: calls.append("eos")), (lambda: calls.append("reset"))
        it = iter(src)
        got = take(it, len(expect), src.stop)
        assert w.wait_sent() == len(expect)
        assert got.dtype == expect.dtype and np.array_equal(got, expect)  # t, x, y, polarity exactly
        # the sender stops and comes back on the same port: evrt says so and goes on with the new stream
        w.kill()
        expect2, _ = cut(CUT2)
        nxt = Background(take, it, len(expect2), src.stop)
        deadline = time.monotonic() + TIMEOUT
        while "reconnecting" not in logbuf.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert calls == ["eos"]
        w = Writer(port, CUT2)
        got2 = nxt.result(TIMEOUT)
        assert np.array_equal(got2, expect2) and calls == ["eos", "reset"] and src.reconnects == 1
        log = logbuf.getvalue()
        assert "the sender stopped; reconnecting" in log and "reconnected" in log, log
        src.stop.set()
    finally:
        w.kill()


def test_dv_without_sender_and_without_reconnect():
    port = free_port()
    with pytest.raises(EvrtError, match=r"cannot connect to DV stream dv://127.0.0.1:\d+: connect: Connection refused$"):
        open_source(f"dv://127.0.0.1:{port}")
    port, w = start_writer(CUT2)
    try:
        src = open_source(f"dv://127.0.0.1:{port}?reconnect=0")
        it = iter(src)
        take(it, 1, src.stop)
        w.kill()
        with pytest.raises(EvrtError, match="the stream stopped"):
            for _ in it:
                pass
    finally:
        w.kill()


def test_real_discovery_without_a_camera(capsys):
    import dv_processing as dv
    assert dv.io.camera.discover() == []  # this machine has no camera attached
    with pytest.raises(EvrtError) as e:
        open_source("auto")
    msg = str(e.value)
    assert "\n" not in msg and "found 0" in msg and "dv_processing.io.camera.discover" in msg
    with pytest.raises(EvrtError, match="no iniVation camera is connected"):
        open_source("inivation")
    with pytest.raises(EvrtError, match=r"cannot open iniVation camera XYZ123: Could not find device with given serial number$"):
        open_source("inivation:XYZ123")
    assert main(["source", "--list-cameras"]) == 1 and "no cameras found" in capsys.readouterr().out
    assert main(["source", "--camera", "auto"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "found no camera" in err[0], err


def _read_aedat4_with_dv(path):
    import dv_processing as dv
    from evrt.pipeline.dvio import from_store
    r = dv.io.MonoCameraRecording(path)
    out = []
    while r.isRunning():
        b = r.getNextEventBatch()
        if b is None:
            break
        out.append(from_store(b))
    return np.concatenate(out), tuple(r.getEventResolution())


def test_source_record_replayed_file_reads_back_identically(tmp_path, capsys):
    ev, size = load_recording(REC)
    out = tmp_path / "rec.aedat4"
    assert main(["source", "--camera", f"file:{REC}?speed=max", "--pattern", "pub", "--bind",
                 f"tcp://127.0.0.1:{free_port()}", "--record", str(out), "--metrics-every", "0"]) == 0
    got, got_size = _read_aedat4_with_dv(str(out))
    assert got_size == size and np.array_equal(got, ev)
    # mapped: what is published is what is recorded
    out2 = tmp_path / "half.aedat4"
    assert main(["source", "--camera", f"file:{REC}?speed=max", "--pattern", "pub", "--bind",
                 f"tcp://127.0.0.1:{free_port()}", "--record", str(out2), "--downsample", "2",
                 "--metrics-every", "0"]) == 0
    got, got_size = _read_aedat4_with_dv(str(out2))
    assert got_size == (64, 64) and np.array_equal(got["x"], ev["x"] // 2) and np.array_equal(got["t"], ev["t"])
    # never over an existing file, never over the input
    capsys.readouterr()
    assert main(["source", "--camera", f"file:{out}?speed=max", "--pattern", "pub", "--record", str(out)]) == 2
    assert "never overwrites its input" in capsys.readouterr().err


def test_record_live_dv_stream(tmp_path):
    import zmq
    from evrt.pipeline.dvio import AedatRecorder
    from evrt.pipeline.source import Publisher, publish
    expect, size = cut(CUT)
    port, w = start_writer(CUT)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    try:
        src = open_source(f"dv://127.0.0.1:{port}")
        rec = AedatRecorder(tmp_path / "live.aedat4", src.sensor_size)
        pub = Publisher(sock)
        th = Background(publish, src, pub, record=rec, end_of_stream=False)
        deadline = time.monotonic() + TIMEOUT
        while rec.written_events < len(expect) and time.monotonic() < deadline:
            time.sleep(0.05)
        pub.stop.set()
        th.result(TIMEOUT)
        rec.close()
        got, got_size = _read_aedat4_with_dv(str(tmp_path / "live.aedat4"))
        assert got_size == size and np.array_equal(got, expect)
    finally:
        w.kill()
        sock.close(0)
        ctx.term()


def test_serve_dv_stream_equals_in_process_and_reports(tmp_path):
    """`evrt serve --camera dv://` against the real writer: the predictions are the in-process classifier's
    on the same events (nothing dropped), or the drops are reported."""
    from evrt.streaming import Prediction, StreamClassifier
    expect_ev, _ = cut(CUT)
    clf = StreamClassifier.from_model("sdt-synth-gesture")
    expect = clf.push(expect_ev) + clf.end_of_stream()
    port, w = start_writer(CUT)
    serve = subprocess.Popen([sys.executable, "-m", "evrt", "serve", "--camera", f"dv://127.0.0.1:{port}", "--model",
                              "sdt-synth-gesture", "--json", "--metrics-every", "0", "--hwm", "100000"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(serve.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        assert w.wait_sent() == len(expect_ev)
        deadline = time.monotonic() + TIMEOUT
        while len(lines) < len(expect) - 1 and time.monotonic() < deadline and serve.poll() is None:
            time.sleep(0.05)
        w.kill()  # the sender goes away: serve finishes the open window (END_OF_STREAM) and keeps waiting
        while len(lines) < len(expect) and time.monotonic() < deadline and serve.poll() is None:
            time.sleep(0.05)
        serve.send_signal(signal.SIGINT)
        serve.wait(TIMEOUT)
        reader.join(10)
        err = serve.stderr.read()
    finally:
        serve.kill()
        w.kill()
    summary = [json.loads(ln) for ln in err.splitlines() if '"summary"' in ln][-1]
    got = [Prediction.from_dict(json.loads(ln)) for ln in lines if ln.startswith("{")]
    if summary["lost_messages"]:
        assert "messages lost upstream" in err
    else:
        assert summary["events_in"] == len(expect_ev)
        assert len(got) == len(expect) and all(g.same_as(e, atol=1e-9) for g, e in zip(got, expect))
    assert "the sender stopped; reconnecting" in err


def test_serve_record_writes_what_it_classifies(tmp_path, capsys):
    ev, size = cut(CUT2)
    from evrt.formats.npz import write_npz
    write_npz(tmp_path / "cut.npz", ev, sensor_size=size)
    out = tmp_path / "served.aedat4"
    assert main(["serve", "--camera", f"file:{tmp_path / 'cut.npz'}?speed=max", "--model", "sdt-synth-gesture",
                 "--quiet", "--metrics-every", "0", "--record", str(out)]) == 0
    got, got_size = _read_aedat4_with_dv(str(out))
    assert got_size == size and np.array_equal(got, ev)
