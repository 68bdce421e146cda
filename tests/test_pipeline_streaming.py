"""StreamClassifier (in-process streaming), sensor mapping, packetising sources, stream tracking."""
import json

import numpy as np
import pytest

from conftest import ON_CI

from evrt.engine import Session
from evrt.errors import EvrtError
from evrt.events import EVENT_DTYPE, make_events
from evrt.framing import StreamFramer
from evrt.pipeline.classify import StreamTracker
from evrt.pipeline.source import ArraySource, SensorMap, open_source
from evrt.pipeline.testing import FakeSession, synthetic_events
from evrt.streaming import Prediction, StreamClassifier, softmax, stream_framer_for
from evrt.toy import toy_graph


@pytest.fixture(scope="module")
def graph():
    return toy_graph(seed=1, T=4)


def test_count_framing_matches_manual_stepping(graph):
    ev = synthetic_events(9_500, seed=2)
    clf = StreamClassifier(Session(graph, mode="continuous", reset_every=None), StreamFramer(count=2000))
    preds = []
    for lo in range(0, len(ev), 777):  # packet boundaries must not matter
        preds += clf.push(ev[lo:lo + 777])
    preds += clf.end_of_stream()
    ref = Session(graph, mode="continuous", reset_every=None)
    expect = [ref.step(ev[i:i + 2000]) for i in range(0, len(ev), 2000)]
    assert [p.step for p in preds] == list(range(5)) and [p.n_events for p in preds] == [2000] * 4 + [1500]
    for p, o in zip(preds, expect):
        assert np.allclose(p.logits, o.readout, rtol=0, atol=0)
        assert p.class_index == int(np.argmax(o.readout)) and p.class_name == graph.meta["classes"][p.class_index]
        assert p.confidence == pytest.approx(softmax(o.readout)[p.class_index])
        assert p.acs == o.acs and p.macs == o.macs and p.latency_ms >= 0
    assert (preds[0].start_us, preds[0].end_us) == (int(ev["t"][0]), int(ev["t"][1999]) + 1)


def test_time_windows_empty_windows_are_steps():
    ev = make_events([100, 150, 1_250, 1_260, 5_000], [1, 2, 3, 4, 5], [0] * 5, [1] * 5)
    clf = StreamClassifier(FakeSession(), StreamFramer(window_us=1000))
    preds = clf.push(ev) + clf.end_of_stream()
    assert [(p.start_us, p.end_us, p.n_events) for p in preds] == [
        (100, 1100, 2), (1100, 2100, 2), (2100, 3100, 0), (3100, 4100, 0), (4100, 5100, 1)]


def test_prediction_json_round_trip_is_exact(graph):
    clf = StreamClassifier.from_model(graph, count=1000)
    p = clf.push(synthetic_events(1000))[0]
    q = Prediction.from_dict(json.loads(p.to_json()))
    assert q == p and q.same_as(p)


def test_reset_gives_fresh_state(graph):
    ev = synthetic_events(6000, seed=3)
    clf = StreamClassifier.from_model(graph, count=1500)
    clf.push(ev[:2500])
    clf.reset()
    a = clf.push(ev[2500:])
    b = StreamClassifier.from_model(graph, count=1500).push(ev[2500:])
    assert a[0].step == 0 and all(x.same_as(y) for x, y in zip(a, b)) and len(a) == len(b) == 2


def test_framer_from_model_meta(graph):
    assert stream_framer_for(graph.meta).count == 2000
    assert stream_framer_for({"stream": {"window_us": 5000}}).window_us == 5000
    assert stream_framer_for(graph.meta, window_us=10).window_us == 10


def test_sensor_map():
    ev = make_events([0, 1, 2, 3], [0, 10, 639, 320], [0, 10, 479, 240], [0, 1, 0, 1])
    m = SensorMap(crop=(10, 10, 620, 460), downsample=4, flip_x=True)
    out = m(ev, (640, 480))
    assert m.out_size((640, 480)) == (155, 115)
    # (0,0) and (639,479) fall outside the crop; (10,10) -> (619,0) after flip -> //4
    assert out["t"].tolist() == [1, 3] and out["x"].tolist() == [619 // 4, (619 - 310) // 4]
    assert out["y"].tolist() == [0, 230 // 4]
    assert SensorMap()(ev, (640, 480)) is ev
    with pytest.raises(EvrtError):
        SensorMap(crop=(0, 0, 0, 5))


def test_array_source_packets_and_pacing():
    ev = synthetic_events(5000, duration_us=100_000)
    src = ArraySource(ev, packet_us=10_000, max_packet=300)
    pkts = list(src)
    assert np.array_equal(np.concatenate(pkts), ev) and max(map(len, pkts)) <= 300
    import time
    t = time.monotonic()
    list(ArraySource(ev, speed=1.0))
    assert time.monotonic() - t >= 0.09  # 100 ms of sensor time at real speed


def test_file_source_and_specs(tmp_path):
    ev = synthetic_events(100)
    np.save(tmp_path / "r.npy", ev)
    src = open_source(f"file:{tmp_path / 'r.npy'}?speed=max")
    assert src.speed is None and np.array_equal(np.concatenate(list(src)), ev)
    for bad in ("nope", "file:/does/not/exist.npy", f"file:{tmp_path / 'r.npy'}?speed=fast", "dv://host"):
        with pytest.raises(EvrtError):
            open_source(bad)


def test_auto_without_camera_explains(monkeypatch):
    import evrt.pipeline.source as S
    monkeypatch.setattr(S, "_dv", lambda: None)
    with pytest.raises(EvrtError, match=r'pip install "evrt\[camera\]"'):
        open_source("auto")
    with pytest.raises(EvrtError, match="dv-processing"):
        open_source("inivation")


def test_stream_tracker():
    tr = StreamTracker()
    assert tr.observe(1, 5) == ("first", 0)
    assert tr.observe(1, 6) == (None, 0)
    assert tr.observe(1, 9) == (None, 2)
    assert tr.observe(1, 0) == ("restart", 0)
    assert tr.observe(2, 1) == ("new_stream", 0)


class _FakeStore:
    def __init__(self, a):
        self.a = a

    def numpy(self):
        return self.a


class _FakeCamera:
    """A camera as dv_processing.io.camera.open returns it (dv-processing 2.0), as far as evrt uses it:
    three batches (one empty poll), then it stops (unplugged). No camera here, so this is the one fake
    left; test_fake_camera_mirrors_the_real_api keeps it honest."""
    def __init__(self, name=""):
        self.name = name or "DVXplorer_FAKE1"
        dt = np.dtype([("timestamp", "<i8"), ("x", "<i2"), ("y", "<i2"), ("polarity", "i1")])
        a = np.zeros(5, dt)
        a["timestamp"], a["x"], a["y"], a["polarity"] = np.arange(5) * 10, [0, 100, 639, 5, 7], [0, 50, 479, 5, 7], 1
        self.batches = [_FakeStore(a[:2]), None, _FakeStore(a[2:])]

    def isRunning(self):
        return bool(self.batches)

    def getNextEventBatch(self):
        return self.batches.pop(0)

    def getCameraName(self):
        return self.name

    def getEventResolution(self):
        return (640, 480)

    def isEventStreamAvailable(self):
        return True


def _fake_dv():
    import types
    desc = types.SimpleNamespace(cameraModel=types.SimpleNamespace(name="DVXPLORER"), serialNumber="FAKE1")
    camera = types.SimpleNamespace(open=lambda serial="": _FakeCamera(f"DVXplorer_{serial}" if serial else ""),
                                   discover=lambda: [desc])
    return types.SimpleNamespace(io=types.SimpleNamespace(camera=camera))


def test_inivation_source_with_a_fake_camera(monkeypatch):
    import evrt.pipeline.source as S
    monkeypatch.setattr(S, "_dv", _fake_dv)
    src = open_source("auto")
    assert src.name == "inivation:DVXplorer_FAKE1" and src.sensor_size == (640, 480)
    pkts = []
    with pytest.raises(EvrtError, match="stopped sending"):
        for p in src:
            pkts.append(p)
    ev = np.concatenate(pkts)
    assert ev.dtype == EVENT_DTYPE and ev["x"].tolist() == [0, 100, 639, 5, 7] and ev["on"].all()
    assert S.list_cameras() == ["DVXPLORER FAKE1"]
    assert open_source("inivation:XYZ").name == "inivation:DVXplorer_XYZ"


def test_fake_camera_mirrors_the_real_api():
    """Every name the fake provides exists in the real dv-processing (where it is installed)."""
    if not ON_CI:
        pytest.importorskip("dv_processing")
    import dv_processing as dv
    for name in ("open", "discover"):
        assert callable(getattr(dv.io.camera, name))
    for name in ("cameraModel", "serialNumber"):
        assert hasattr(dv.io.camera.USBDevice.DeviceDescriptor, name)
    for name in ("isRunning", "getNextEventBatch", "getCameraName", "getEventResolution", "isEventStreamAvailable"):
        assert hasattr(dv.io.camera.CameraInputBase, name), name
    assert tuple(dv.EventStore().numpy().dtype.names) == ("timestamp", "x", "y", "polarity")


def test_metrics_line_and_json_logs():
    import io
    from evrt.pipeline.metrics import Log, Metrics
    now = [0.0]
    m = Metrics(interval_s=1.0, clock=lambda: now[0])
    for i in range(100):
        m.step_done(float(i))
    m.events_in, m.lost, m.queue_depth = 5000, 3, 2
    m.drops["magic"] += 4
    now[0] = 2.0
    assert m.due()
    buf = io.StringIO()
    snap = m.report(Log("classify", json_lines=True, stream=buf))
    line = json.loads(buf.getvalue())
    assert line["msg"] == "metrics" and line["events_per_s"] == 2500 and line["steps_per_s"] == 50
    assert line["step_p50_ms"] == pytest.approx(49.5) and line["dropped"] == {"magic": 4} and line["queue_depth"] == 2
    assert snap["lost_messages"] == 3 and not m.due()
    buf = io.StringIO()
    m.report(Log("classify", stream=buf))
    assert "ev/s in" in buf.getvalue() and "magic 4" in buf.getvalue()
