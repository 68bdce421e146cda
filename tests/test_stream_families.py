"""Every zoo family streams: `evrt serve` on a cut of a shipped recording prints the same predictions as
`evrt replay` of the same cut; converted (CSDformer-style) models stream in segments whose prediction is
exactly their clip-mode result on the segment's events."""
import json
import os

import numpy as np
import pytest

from evrt.cli import main
from evrt.engine import Session
from evrt.formats.npz import write_npz
from evrt.pipeline.source import load_recording
from evrt.streaming import Prediction, StreamClassifier
from evrt.zoo import resolve_model

HERE = os.path.dirname(os.path.abspath(__file__))
REC = os.path.join(HERE, "..", "examples", "data", "dvsgesture_synth", "user06_fluorescent_led.aedat")
FAMILIES = ["sdt", "spikformer", "spikingresformer", "rtformer", "csdformer"]


def _cut(tmp_path_factory, name, t0, t1):
    ev, size = load_recording(REC)
    ev = ev[(ev["t"] >= t0) & (ev["t"] < t1)]
    path = tmp_path_factory.mktemp("families") / f"{name}.npz"
    write_npz(path, ev, sensor_size=size)
    return str(path), ev


@pytest.fixture(scope="module")
def cut(tmp_path_factory):
    """Sensor time [1.0 s, 7.0 s) of a shipped recording: its start and first gesture, ~50k events."""
    return _cut(tmp_path_factory, "cut", 1_000_000, 7_000_000)


@pytest.fixture(scope="module")
def long_cut(tmp_path_factory):
    """Sensor time [1.0 s, 40.0 s): the first six gestures (~6 s each), ~320k events. CSDformer predicts once
    per training-sized clip (~80k events), so it needs this much for several predictions."""
    return _cut(tmp_path_factory, "long", 1_000_000, 40_000_000)


def _predictions(text: str, replay: bool) -> list:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            obj = json.loads(line)
            if not replay or obj.get("type") == "prediction":
                out.append(Prediction.from_dict(obj))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_serve_equals_replay(family, cut, long_cut, capsys):
    path, ev = long_cut if family == "csdformer" else cut
    model = f"{family}-synth-gesture"
    assert main(["replay", path, "--model", model, "--speed", "max", "--json"]) == 0
    replayed = _predictions(capsys.readouterr().out, replay=True)
    assert main(["serve", "--camera", f"file:{path}?speed=max", "--model", model, "--json",
                 "--metrics-every", "0"]) == 0
    served = _predictions(capsys.readouterr().out, replay=False)
    assert len(replayed) >= 3 and len(served) == len(replayed)
    for s, r in zip(served, replayed):
        assert s.same_as(r), (family, s, r)
    assert sum(p.n_events for p in served) == len(ev)


def test_converted_model_streams_in_clip_segments(long_cut):
    _, ev = long_cut
    clf = StreamClassifier.from_model("csdformer-synth-gesture")
    n_in, T = clf.segment
    assert (n_in, T) == (1, 25)  # one input step, 24 drain steps
    preds = clf.push(ev) + clf.end_of_stream()
    clip = Session(resolve_model("csdformer-synth-gesture"), mode="clip")
    n = clf.framer.count
    assert len(preds) == -(-len(ev) // n)
    for i, p in enumerate(preds):
        res = clip.run_clip(ev[i * n:(i + 1) * n])
        assert p.n_events == len(ev[i * n:(i + 1) * n]) and p.segment_step == T - 1
        assert np.array_equal(np.asarray(p.logits), res.logits) and p.acs == res.acs
    assert len({p.class_name for p in preds}) > 1  # the input restarts: predictions follow the gestures
