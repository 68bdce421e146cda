"""--fit on the commands that feed a model: a recording from a bigger sensor keeps its scene with the
default, and the user is told before the run starts."""
import json

import numpy as np
import pytest

from evrt import geometry as geo
from evrt.cli import main
from evrt.engine import Session
from evrt.events import make_events
from evrt.formats.npz import write_npz
from evrt.cli.options import mapping_from, parse_size
from evrt.errors import EvrtError
from evrt.toy import toy_graph


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("fitmodel") / "m128.evrt"
    toy_graph(seed=3, T=4, sensor=(128, 128), channels=8, num_classes=5).save(path)
    return str(path)


def scene(sensor, n=6000, seed=0):
    """Events spread over the whole sensor, denser in the middle (a scene, not noise in one corner)."""
    rng = np.random.default_rng(seed)
    w, h = sensor
    x = np.clip(rng.normal(w / 2, w / 4, n).round(), 0, w - 1)
    y = np.clip(rng.normal(h / 2, h / 4, n).round(), 0, h - 1)
    return make_events(np.sort(rng.integers(0, 400_000, n)), x, y, rng.integers(0, 2, n))


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("sensor", [(320, 240), (346, 260)])
def test_replay_keeps_the_scene_with_the_default_fit(capsys, tmp_path, model, sensor):
    ev = scene(sensor)
    path = tmp_path / "big.npz"
    write_npz(path, ev, sensor_size=sensor)
    outside = geo.count_outside(ev, (128, 128)) / len(ev)
    assert outside > 0.5  # as is, most of this scene would be lost
    code, out, err = cli(capsys, "replay", path, "--model", model, "--speed", "max", "--json")
    assert code == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert summary["dropped_events"] / len(ev) < 0.05
    assert summary["events_streamed"] == len(ev)
    line = err.strip().splitlines()[0]  # said before the run, on stderr (stdout stays JSON)
    assert f"sensor {sensor[0]}x{sensor[1]} differs from the model's 128x128" in line
    assert f"{100 * outside:.1f} % of the events would fall outside" in line and "divided by 3" in line
    # --fit none: as before, everything outside the model's grid is dropped, and that is said too
    code, out, err = cli(capsys, "replay", path, "--model", model, "--speed", "max", "--json", "--fit", "none")
    summary = json.loads(out.splitlines()[-1])
    assert code == 0 and summary["dropped_events"] == geo.count_outside(ev, (128, 128))
    assert "--fit none" in err


def test_predict_fits_like_the_library(capsys, tmp_path, model):
    ev = scene((320, 240), seed=4)
    path = tmp_path / "p.npz"
    write_npz(path, ev, sensor_size=(320, 240))
    sess = Session(model)
    for mode in geo.FIT_MODES:
        code, out, err = cli(capsys, "predict", model, path, "--fit", mode, "--json")
        assert code == 0, err
        res = json.loads(out)
        mapped, dropped = geo.fit_to_sensor(ev, (320, 240), (128, 128), mode)
        ref = sess.run_clip(mapped)
        np.testing.assert_allclose(res["logits"], ref.logits)
        assert res["fit"]["mode"] == mode and res["fit"]["dropped"] == dropped
        assert f"--fit {mode}" in err
    # same size: nothing to say, nothing done
    write_npz(tmp_path / "same.npz", scene((128, 128)), sensor_size=(128, 128))
    code, out, err = cli(capsys, "predict", model, tmp_path / "same.npz", "--json")
    assert code == 0 and err == "" and json.loads(out)["fit"]["mode"] is None


def test_unstated_sensor_uses_the_events_extent(capsys, tmp_path, model):
    ev = scene((320, 240), seed=2)
    write_npz(tmp_path / "nosize.npz", ev)
    code, out, err = cli(capsys, "predict", model, tmp_path / "nosize.npz", "--json")
    assert code == 0 and "states no sensor size" in err and json.loads(out)["fit"]["dropped"] == 0


class _Log:
    def __init__(self):
        self.lines = []

    def warn(self, msg, **_):
        self.lines.append(msg)


class _Args:
    crop = None
    downsample = 1
    flip_x = flip_y = False
    fit = "downsample"


class _Src:
    def __init__(self, size, events=None):
        self.sensor_size, self.events = size, events


def test_serve_and_source_mapping_fits_and_announces():
    ev = scene((346, 260), seed=1)
    log = _Log()
    m = mapping_from(_Args(), _Src((346, 260), ev), (128, 128), log)
    assert m.out_size((346, 260)) == (128, 128) and m.fit.factor == 3
    out = m(ev, (346, 260))
    assert geo.count_outside(out, (128, 128)) == 0 and len(out) == len(ev) and m.dropped == 0
    assert len(log.lines) == 1 and "of the events would fall outside" in log.lines[0]
    # a camera (no events known yet): the fractions are pixel areas
    log = _Log()
    mapping_from(_Args(), _Src((640, 480)), (128, 128), log)
    assert "of the sensor area" in log.lines[0]
    # manual crop first, then the fit maps what is left
    args = _Args()
    args.crop, args.fit = "0,0,256,256", "crop"
    m = mapping_from(args, _Src((346, 260), ev), (128, 128), _Log())
    out = m(ev, (346, 260))
    assert geo.count_outside(out, (128, 128)) == 0 and len(out) + m.dropped == len(ev)
    # no model size (plain `evrt source`): nothing is fitted
    assert mapping_from(_Args(), _Src((346, 260), ev), None, _Log()).fit is None


def test_parse_size():
    assert parse_size("128x96") == (128, 96) and parse_size(None) is None
    for bad in ("128", "0x5", "ax3"):
        with pytest.raises(EvrtError, match="--model-size"):
            parse_size(bad, "--model-size")


def test_replay_real_dvxplorer_recording_keeps_the_scene(capsys, model):
    """A real 320x240 DVXplorer cut (tests/data, AEDAT 4) through a 128x128 model."""
    from pathlib import Path

    from evrt.formats import read_recording

    path = Path(__file__).parent / "data" / "dvxplorer_cut.aedat4"
    rec = read_recording(path)
    assert rec.sensor_size == (320, 240)
    code, out, err = cli(capsys, "replay", path, "--model", model, "--speed", "max", "--json")
    assert code == 0, err
    summary = json.loads(out.splitlines()[-1])
    kept, dropped = geo.fit_to_sensor(rec.events, (320, 240), (128, 128))
    assert summary["dropped_by_reason"]["out_of_sensor"] == dropped == 0
    assert summary["dropped_events"] / len(rec.events) < 0.05
    outside = geo.count_outside(rec.events, (128, 128)) / len(rec.events)
    assert f"sensor 320x240 differs from the model's 128x128: {100 * outside:.1f} %" in err
