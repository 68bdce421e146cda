"""Synthetic DVS gestures: determinism, plausible statistics, readable by the dataset reader."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from evrt.datasets import DVSGesture
from evrt.synth import SynthConfig, make_recording
from evrt.synth import kinematics as kin

ROOT = Path(__file__).resolve().parents[1]
TINY = SynthConfig(duration=0.4, gap=0.15, test_users=1)


def _tool():
    spec = importlib.util.spec_from_file_location("make_synth_gestures", ROOT / "tools" / "make_synth_gestures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory):
    tool = _tool()
    dirs = []
    for name in ("a", "b"):
        d = tmp_path_factory.mktemp(name)
        assert tool.main(["--out", str(d), "--users", "2", "--seed", "11", "--duration", "0.4",
                          "--gap", "0.15", "--test-users", "1"]) == 0
        dirs.append(d)
    return dirs


def test_same_seed_same_bytes(tiny_sets):
    a, b = tiny_sets
    names = sorted(p.name for p in a.iterdir() if p.name != "synth_stats.json")
    assert names == sorted(p.name for p in b.iterdir() if p.name != "synth_stats.json")
    assert any(n.endswith(".aedat") for n in names)
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n


def test_different_seed_differs():
    ev1, _, _ = make_recording(1, 1, 0, TINY)
    ev2, _, _ = make_recording(2, 1, 0, TINY)
    assert len(ev1) != len(ev2) or not np.array_equal(ev1, ev2)


def test_statistics(tiny_sets):
    ds = DVSGesture(tiny_sets[0], "train")
    samples = list(ds)
    assert {s.gesture_id for s in samples} == set(range(11))
    for s in samples:
        ev = s.events
        dur = (ev["t"][-1] - ev["t"][0]) * 1e-6
        rate = len(ev) / dur
        assert 1e3 < rate < 5e5, (s.name, rate)
        assert 0.2 < ev["on"].mean() < 0.8, s.name               # both polarities
        assert ev["x"].max() < 128 and ev["y"].max() < 128
        assert np.all(np.diff(ev["t"].astype(np.int64)) >= 0)
        assert len(np.unique(ev["t"])) > len(ev) // 20             # µs timestamps, not frame ticks
    assert len(DVSGesture(tiny_sets[0], "test")) == 11


def test_cw_and_ccw_differ_only_in_direction():
    subj = kin.Subject.random(np.random.default_rng(0))
    t = np.linspace(0, 2, 400)
    cw, _, _, _ = kin.gesture_targets(3, t, subj, np.random.default_rng(5))
    ccw, _, _, _ = kin.gesture_targets(4, t, subj, np.random.default_rng(5))
    # the same circle (same centre and radius) traversed in opposite directions
    np.testing.assert_allclose(cw.mean(0), ccw.mean(0), atol=1.5)
    def turn(w):  # signed area swept: + for clockwise on screen (y down)
        d = w[:, :2] - w[:, :2].mean(0)
        return np.sum(d[:-1, 0] * d[1:, 1] - d[:-1, 1] * d[1:, 0])
    assert turn(cw) > 0 > turn(ccw)


def test_first_user_writes_the_same_recordings(tiny_sets, tmp_path):
    # users 2.. of a set are the same files as in the full set: shipping only the last users is honest
    tool = _tool()
    assert tool.main(["--out", str(tmp_path), "--users", "3", "--first-user", "2", "--seed", "11",
                      "--duration", "0.4", "--gap", "0.15", "--test-users", "1"]) == 0
    assert not any(p.name.startswith("user01") for p in tmp_path.iterdir())
    full = tiny_sets[0]
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("user02"))
    assert names and names == sorted(p.name for p in full.iterdir() if p.name.startswith("user02"))
    for n in names:
        assert (tmp_path / n).read_bytes() == (full / n).read_bytes(), n


def test_defaults_are_realistic_length():
    # DVS128 Gesture samples last approx. 6 s; the generator's default follows it
    cfg = SynthConfig()
    assert 5.0 <= cfg.duration <= 7.0 and cfg.theta <= 0.2


def test_train_frame_cache_matches_direct_framing(tiny_sets, tmp_path):
    import shutil
    from evrt.framing import FrameSpec
    from tools import train
    d = tmp_path / "set"
    shutil.copytree(tiny_sets[0], d)
    spec = FrameSpec(4, (128, 128))
    direct = train.load_split(d, "train", spec)
    cached = train.load_split(d, "train", spec, cache=True)       # makes the cache
    again = train.load_split(d, "train", spec, cache=True)        # reads it
    assert len(list(d.glob(".frames_train_*.npy"))) == 1
    for got in (cached, again):
        np.testing.assert_array_equal(got[0], direct[0])
        np.testing.assert_array_equal(got[1], direct[1])
        assert list(got[2]) == list(direct[2])
        np.testing.assert_array_equal(got[3], direct[3])
