"""DVS128 Gesture layouts: the shipped synthetic set (original layout) and a tonic-layout folder."""
from pathlib import Path

import numpy as np
import pytest

from evrt.datasets import CLASS_NAMES, SPIKINGJELLY_ORDER, DVSGesture, class_names
from evrt.errors import FormatError
from evrt.formats.aedat31 import EVENT_DTYPE, read_aedat31, read_labels_csv

SHIPPED = Path(__file__).resolve().parents[1] / "examples" / "data" / "dvsgesture_synth"


def test_class_orders():
    assert len(CLASS_NAMES) == 11
    assert SPIKINGJELLY_ORDER == (0, 1, 10, 2, 3, 4, 5, 6, 7, 8, 9)
    sj = class_names("spikingjelly")
    assert sj[2] == "other" and sj[3] == "left_hand_wave" and sj[10] == "air_guitar"
    assert class_names("gesture") == CLASS_NAMES
    with pytest.raises(ValueError):
        class_names("torchvision")


def test_shipped_set_iterates_in_both_orders():
    train = DVSGesture(SHIPPED, "train")
    test = DVSGesture(SHIPPED, "test")
    assert train.layout == "original" and len(train) > 0 and len(test) > 0
    users = lambda ds: {n.split("_")[0] for n in ds.names}
    assert not users(train) & users(test)                     # test subjects unseen in training
    samples = list(test)
    assert {s.gesture_id for s in samples} == set(range(11))
    for s in samples:
        assert s.events.dtype == EVENT_DTYPE and len(s.events) > 0
        assert s.label == s.gesture_id
        assert np.all(np.diff(s.events["t"].astype(np.int64)) >= 0)
    # samples are exactly the label cut of the recording
    rec = SHIPPED / test.names[0].rsplit("_", 1)[0]
    ev = read_aedat31(rec.with_suffix(".aedat"))
    lab = read_labels_csv(rec.with_name(rec.name + "_labels.csv"))
    a, b = lab[0]["start"], lab[0]["end"]
    np.testing.assert_array_equal(samples[0].events, ev[(ev["t"] >= a) & (ev["t"] < b)])

    sj = DVSGesture(SHIPPED, "test", order="spikingjelly", label_order="spikingjelly")
    assert sorted(sj.names) == sorted(test.names)
    gs = [s.gesture_id for s in sj]
    assert gs == sorted(gs, key=str)                            # folders 0, 1, 10, 2, ..., 9
    for s in sj:
        assert SPIKINGJELLY_ORDER[s.label] == s.gesture_id
        assert sj.classes[s.label] == CLASS_NAMES[s.gesture_id]


def _tonic_tree(root: Path, rng):
    """ibmGestureTrain/userNN_light/<g>.npy with float (N, 4) x, y, p, t[ms] arrays, like tonic."""
    made = {}
    for split, users in (("ibmGestureTrain", ["user01_led", "user02_lab"]), ("ibmGestureTest", ["user24_led"])):
        for u in users:
            d = root / "DVSGesture" / split / u
            d.mkdir(parents=True)
            for g in (10, 0, 2):  # 10 before 2 on purpose: the order must not come from the file system
                n = int(rng.integers(5, 40))
                t_ms = np.sort(rng.uniform(0, 6000, n)).round(3)
                arr = np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n),
                                t_ms], 1).astype(np.float64)
                arr[[0, 1]] = arr[[1, 0]]  # one out-of-order pair: the reader sorts by t
                np.save(d / f"{g}.npy", arr)
                made[(split, u, g)] = arr
    return made


def test_tonic_layout(tmp_path):
    made = _tonic_tree(tmp_path, np.random.default_rng(3))
    ds = DVSGesture(tmp_path, "train")
    assert ds.layout == "tonic" and len(ds) == 6
    assert ds.names == ["user01_led/0", "user01_led/2", "user01_led/10",
                        "user02_lab/0", "user02_lab/2", "user02_lab/10"]
    for s in ds:
        u, g = s.name.split("/")
        arr = made[("ibmGestureTrain", u, int(g))]
        arr = arr[np.argsort(arr[:, 3], kind="stable")]
        assert s.gesture_id == int(g) and s.label == int(g)
        np.testing.assert_array_equal(s.events["t"], np.rint(arr[:, 3] * 1000).astype(np.uint64))
        np.testing.assert_array_equal(s.events["x"], arr[:, 0])
        np.testing.assert_array_equal(s.events["on"], arr[:, 2] > 0)
    sj = DVSGesture(tmp_path / "DVSGesture", "train", order="spikingjelly", label_order="spikingjelly")
    assert [n.split("/")[1] for n in sj.names] == ["0", "0", "10", "10", "2", "2"]
    assert [s.label for s in sj] == [0, 0, 2, 2, 3, 3]
    assert len(DVSGesture(tmp_path, "test")) == 3


def test_bad_roots(tmp_path):
    with pytest.raises(FormatError):
        DVSGesture(tmp_path, "train")
    d = tmp_path / "DvsGesture"
    d.mkdir()
    (d / "trials_to_train.txt").write_text("user01_led.aedat\n")
    with pytest.raises(FormatError, match="line 1"):
        DVSGesture(tmp_path, "train")
    with pytest.raises(ValueError):
        DVSGesture(tmp_path, "val")
