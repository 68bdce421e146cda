"""The pipeline commands as users run them: separate processes, bounded by timeouts. Processes meet on
ipc:// endpoints in a fresh directory, so no two tests (or test runs) can ever want the same address."""
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest

from evrt.cli import main
from evrt.pipeline.testing import synthetic_events
from evrt.streaming import Prediction, StreamClassifier
from evrt.toy import toy_graph

TIMEOUT = 90


def evrt(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "evrt", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def finish(proc, timeout=TIMEOUT):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{proc.args} did not stop: {err[-2000:]}")
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pipeline_cli")
    toy_graph(seed=5, T=4).save(d / "toy.evrt")
    np.save(d / "rec.npy", synthetic_events(14_000, duration_us=300_000, seed=9))
    return d


@pytest.fixture
def endpoint():
    d = tempfile.mkdtemp(prefix="evrt-")  # short on purpose: an ipc path may hold ~100 bytes
    yield lambda name: f"ipc://{d}/{name}"
    shutil.rmtree(d, ignore_errors=True)


def expected(files):
    clf = StreamClassifier.from_model(str(files / "toy.evrt"))
    ev = np.load(files / "rec.npy")
    return clf.push(ev) + clf.end_of_stream()


def compare(lines, expect):
    got = [Prediction.from_dict(json.loads(line)) for line in lines if line.startswith("{")]
    assert len(got) == len(expect) and len(got) > 0
    for g, e in zip(got, expect):
        assert g.same_as(e), (g, e)


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "curve"])
def test_source_classify_watch_processes_equal_in_process(files, secure, tmp_path, endpoint):
    p_ev, p_pred = endpoint("events"), endpoint("predictions")
    keys = []
    if secure:
        assert main(["keys", str(tmp_path / "keys")]) == 0
        keys = ["--curve-keys", tmp_path / "keys"]
    classify = evrt("classify", "--model", files / "toy.evrt", "--connect", p_ev, "--publish", p_pred,
                    "--pattern", "pull", "--max-streams", 1, "--idle-exit", 60, "--json", *keys)
    watch = evrt("watch", "--connect", p_pred, "--pattern", "pull", "--json", "--until-eos",
                 "--idle-exit", 60, *keys)
    source = evrt("source", "--camera", f"file:{files / 'rec.npy'}?speed=max", "--bind", p_ev,
                  "--pattern", "push", "--json", *keys)
    rc_s, _, err_s = finish(source)
    rc_c, _, err_c = finish(classify)
    rc_w, out_w, err_w = finish(watch)
    assert (rc_s, rc_c, rc_w) == (0, 0, 0), (err_s, err_c, err_w)
    compare(out_w.splitlines(), expected(files))
    summary = [json.loads(line) for line in err_c.splitlines() if '"summary"' in line][-1]
    assert summary["events_in"] == 14_000 and summary["lost_messages"] == 0 and summary["dropped"] == {}


def test_serve_replay_prints_the_same_predictions(files):
    rc, out, err = finish(evrt("serve", "--camera", f"file:{files / 'rec.npy'}?speed=max", "--model",
                               files / "toy.evrt", "--json"))
    assert rc == 0, err
    compare(out.splitlines(), expected(files))


def test_sigint_stops_classify_cleanly_with_summary(files, endpoint):
    classify = evrt("classify", "--model", files / "toy.evrt", "--connect", endpoint("events"), "--publish",
                    endpoint("predictions"), "--metrics-every", 0.2, "--idle-exit", 60)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(classify.stderr.readline, "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + TIMEOUT
    # wait for the first metrics line: the receive loop is running
    while not any("ev/s in" in ln for ln in lines) and time.monotonic() < deadline and classify.poll() is None:
        time.sleep(0.1)
    classify.send_signal(signal.SIGINT)
    try:
        rc = classify.wait(20)
    except subprocess.TimeoutExpired:
        classify.kill()
        pytest.fail("classify ignored SIGINT")
    reader.join(5)
    err = "".join(lines)
    assert rc == 0 and "SIGINT" in err and "done:" in err, err


def test_auto_without_camera_exits_nonzero(capsys, monkeypatch):
    import evrt.pipeline.source as S
    monkeypatch.setattr(S, "_dv", lambda: None)
    assert main(["source", "--camera", "auto"]) == 2
    err = capsys.readouterr().err
    assert "found no camera" in err and 'pip install "evrt[camera]"' in err


def test_keys_command(tmp_path, capsys):
    assert main(["keys", str(tmp_path / "k")]) == 0
    for name in ("server.key", "server.key_secret", "client.key", "client.key_secret",
                 "authorized_clients/client.key"):
        assert (tmp_path / "k" / name).exists()
    assert main(["keys", str(tmp_path / "k")]) == 2  # refuses to overwrite without --force


def test_source_with_curve_serves_only_authorised_clients(files, tmp_path, endpoint):
    """`evrt source --curve-keys` over PUSH: a plain and an intruding client connect first and get
    nothing; the authorised one gets the whole recording (PUSH would have dealt messages to any
    attached peer, so the others were never attached)."""
    import zmq

    from evrt.pipeline import protocol as P
    from evrt.pipeline.sockets import Curve, make_keys, open_socket
    make_keys(tmp_path / "keys")
    make_keys(tmp_path / "intruder")
    intruder = Curve(tmp_path / "intruder")
    intruder.server_public = Curve(tmp_path / "keys").server_public
    addr = endpoint("events")
    source = evrt("source", "--camera", f"file:{files / 'rec.npy'}?speed=max", "--bind", addr, "--pattern", "push",
                  "--curve-keys", tmp_path / "keys", "--json")
    ctx = zmq.Context()
    try:
        plain = open_socket(ctx, zmq.PULL, addr, bind=False)
        bad = open_socket(ctx, zmq.PULL, addr, bind=False, curve=intruder)
        time.sleep(0.5)  # give the refused handshakes a head start; it can only make the check stricter
        good = open_socket(ctx, zmq.PULL, addr, bind=False, curve=Curve(tmp_path / "keys"))
        events, ended = 0, False
        deadline = time.monotonic() + TIMEOUT
        while not ended and time.monotonic() < deadline:
            if good.poll(50):
                msg = P.decode(good.recv_multipart())
                events += len(msg.events) if msg.kind == P.EVENTS else 0
                ended = msg.kind == P.END_OF_STREAM
        rc, _, err = finish(source)
        assert rc == 0, err
        assert ended and events == 14_000
        assert not plain.poll(100) and not bad.poll(0)
    finally:
        ctx.destroy(linger=0)


def test_exposed_bind_without_curve_warns_on_the_command_line(files):
    rc, _, err = finish(evrt("source", "--camera", f"file:{files / 'rec.npy'}?speed=max", "--bind",
                             "tcp://0.0.0.0:*", "--pattern", "pub"))
    assert rc == 0, err
    assert "warning" in err and "without --curve-keys" in err
