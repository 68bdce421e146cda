"""CIFAR10-DVS, N-MNIST and N-Caltech101 in their download layouts: class order, split and events as
the public loaders (spikingjelly's, run from its source) give them, and `evrt eval` / `evrt info` on
small trees, scored against an independent loop."""
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import require_torch
from evrt.cli import main
from evrt.datasets import open_dataset
from evrt.datasets.folders import front_split
from evrt.engine import Session
from evrt.errors import FormatError
from evrt.events import make_events
from evrt.toy import toy_graph
from reference_loaders import spikingjelly_defs

ROOT = Path(__file__).resolve().parent.parent
NMNIST = ROOT / "examples" / "data" / "nmnist"
SJ_CIFAR = ("CIFAR10DVS", "load_events", "load_raw_events", "parse_raw_address", "read_bits", "skip_header",
            "EVT_DVS", "y_mask", "y_shift", "x_mask", "x_shift", "polarity_mask", "polarity_shift",
            "valid_mask", "valid_shift")
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def folder_order(base, ext):
    """(path, class folder) in torchvision DatasetFolder's order, written out here: class folders sorted,
    files sorted by name."""
    out = []
    for c in sorted(d for d in os.listdir(base) if os.path.isdir(os.path.join(base, d))):
        for f in sorted(os.listdir(os.path.join(base, c))):
            if f.endswith(ext):
                out.append((os.path.join(base, c, f), c))
    return out


def sj_split(labels, ratio, k):
    """spikingjelly's own split_to_train_test_set, run on a stand-in dataset of (None, label) items."""
    torch = require_torch()
    f = spikingjelly_defs("datasets/__init__.py", "split_to_train_test_set")["split_to_train_test_set"]
    f.__globals__.update(math=math, torch=torch, tqdm=type("tq", (), {"tqdm": staticmethod(lambda x: x)}))
    train, test = f(ratio, [(None, y) for y in labels], k)
    return list(train.indices), list(test.indices)


def scores(model, samples):
    """Predicted output index of each events array, one fresh clip each."""
    sess = Session(model, "float32")
    return [sess.run_clip(ev).class_index for ev in samples]


# ------------------------------------------------------------------------------------------ N-MNIST
@pytest.fixture(scope="module")
def nmnist_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("nm") / "nmnist34.evrt"
    toy_graph(seed=5, T=4, sensor=(34, 34), channels=8, num_classes=10).save(path)  # outputs class_0..9
    return str(path)


def test_eval_nmnist_real_test_recordings_against_an_independent_loop(capsys, nmnist_model):
    load = spikingjelly_defs("datasets/__init__.py", "load_ATIS_bin")["load_ATIS_bin"]
    files = folder_order(NMNIST / "Test", ".bin")
    assert len(files) == 100
    events = []
    for path, _ in files:
        d = load(path)
        events.append(make_events(d["t"], d["x"], d["y"], d["p"]))
    truth = [int(c) for _, c in files]
    pred = scores(nmnist_model, events)
    assert len(set(pred)) >= 3  # the toy model tells samples apart, so a wrong order would show
    code, out, err = cli(capsys, "eval", "--dataset", "nmnist", "--root", NMNIST, "--model", nmnist_model, "--json")
    assert code == 0, err
    res = json.loads(out)
    confusion = np.zeros((10, 10), int)
    for t, p in zip(truth, pred):
        confusion[t, p] += 1
    assert res["confusion"] == confusion.tolist()
    assert res["correct"] == int(np.trace(confusion)) and res["n"] == 100 and res["layout"] == "original"
    assert [p["name"] for p in res["predictions"]] == [f"Test/{c}/{Path(f).stem}" for f, c in files]
    assert [p["events"] for p in res["predictions"]] == [len(e) for e in events]
    assert res["per_class"]["3"]["n"] == truth.count(3)
    assert res["fit"]["mode"] is None and err == ""  # 34x34 model: nothing to fit
    # the text report has the per-class table
    code, out, _ = cli(capsys, "eval", "--dataset", "nmnist", "--root", NMNIST, "--model", nmnist_model,
                       "--limit", "5")
    assert code == 0 and "per class:" in out and "confusion matrix" in out and "5 samples" in out


def test_nmnist_layouts_and_official_split(tmp_path):
    test_files = folder_order(NMNIST / "Test", ".bin")[:12]
    for layout, base in (("download", tmp_path / "a"), ("tonic", tmp_path / "b" / "NMNIST"),
                         ("spikingjelly", tmp_path / "c" / "extract")):
        for i, (f, c) in enumerate(test_files):
            sub = "Train" if i % 2 else "Test"
            (base / sub / c).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, base / sub / c / Path(f).name)
        root = base if layout == "download" else base.parent
        tr, te, al = (open_dataset("nmnist", root, s) for s in ("train", "test", "all"))
        assert len(tr) == 6 and len(te) == 6 and len(al) == 12
        assert tr.names == [f"Train/{c}/{Path(f).stem}" for f, c in folder_order(base / "Train", ".bin")]
        assert al.names == tr.names + te.names
        s = te[0]
        assert s.label == int(s.name.split("/")[1]) and tr.sensor_size == (34, 34)
    with pytest.raises(FormatError, match="no N-MNIST Train/ or Test/"):
        open_dataset("nmnist", tmp_path / "a" / "Test", "test")


def test_info_on_a_dataset_folder(capsys):
    code, out, err = cli(capsys, "info", NMNIST, "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["dataset"] == "nmnist" and d["sensor_size"] == [34, 34] and d["classes"] == [str(i) for i in range(10)]
    per = {c: len(os.listdir(NMNIST / "Test" / c)) if (NMNIST / "Test" / c).is_dir() else 0 for c in d["classes"]}
    assert d["splits"]["test"] == {"samples": 100, "per_class": per}
    assert "error" in d["splits"]["train"]
    code, out, err = cli(capsys, "info", ROOT / "evrt")
    assert code == 2 and "not one of the dataset layouts" in err and len(err.strip().splitlines()) == 1


# -------------------------------------------------------------------------------------- CIFAR10-DVS
def write_aedat2(path, x, y, p, t):
    """A jAER AEDAT 2.0 file with DVS128 addresses, written here (x bits 1-7, y bits 8-14, bit 0 = OFF)."""
    addr = (np.asarray(x, np.uint32) << 1) | (np.asarray(y, np.uint32) << 8) | (1 - np.asarray(p, np.uint32))
    body = np.empty(len(addr), [("a", ">u4"), ("t", ">u4")])
    body["a"], body["t"] = addr, t
    path.write_bytes(b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
                     b"# Timestamps tick is 1 us\r\n" + body.tobytes())


@pytest.fixture(scope="module")
def cifar_tree(tmp_path_factory):
    """12 recordings in each of four classes, named as the download names them (cifar10_<class>_<i>):
    a blob at a class-dependent place so the toy model's answers vary."""
    root = tmp_path_factory.mktemp("cifar") / "CIFAR10DVS"
    rng = np.random.default_rng(0)
    for k, c in enumerate(("airplane", "cat", "frog", "truck")):
        (root / c).mkdir(parents=True)
        for i in range(12):
            n = int(rng.integers(300, 900))
            cx, cy = rng.integers(20, 108, 2)
            x = np.clip(rng.normal(cx, 10, n).round(), 0, 127).astype(int)
            y = np.clip(rng.normal(cy, 10, n).round(), 0, 127).astype(int)
            t = np.sort(rng.integers(0, 1_200_000, n))
            write_aedat2(root / c / f"cifar10_{c}_{i}.aedat", x, y, rng.integers(0, 2, n), t)
    return root


@pytest.fixture(scope="module")
def cifar_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("cm") / "cifar128.evrt"
    toy_graph(seed=4, T=4, sensor=(128, 128), channels=8, num_classes=10).save(path)
    return str(path)


def test_cifar10dvs_split_order_and_events_match_spikingjelly(cifar_tree):
    sj = spikingjelly_defs("datasets/cifar10_dvs.py", *SJ_CIFAR)["CIFAR10DVS"]
    files = folder_order(cifar_tree, ".aedat")
    labels = [CIFAR_CLASSES.index(c) for _, c in files]
    train, test = sj_split(labels, 0.9, 10)
    for split, idx in (("train", train), ("test", test)):
        ds = open_dataset("cifar10dvs", cifar_tree.parent, split)
        assert ds.layout == "original" and len(ds) == len(idx)
        assert ds.names == [f"{files[i][1]}/{Path(files[i][0]).stem}" for i in idx]
        assert ds.labels == [labels[i] for i in idx]
    # ceil(0.9 * 12) = 11 train per class; the test one is the name that sorts last: _9, not _11
    assert ds.names[0] == "airplane/cifar10_airplane_9"
    for i in (0, 3):
        s = ds[i]
        d = sj.load_origin_data(str(files[test[i]][0]))
        for ours, ref in zip(("t", "x", "y", "on"), ("t", "x", "y", "p")):
            np.testing.assert_array_equal(s.events[ours], d[ref])
    assert len(open_dataset("cifar10dvs", cifar_tree, "all")) == 48


def test_eval_cifar10dvs_against_an_independent_loop(capsys, cifar_tree, cifar_model):
    sj = spikingjelly_defs("datasets/cifar10_dvs.py", *SJ_CIFAR)["CIFAR10DVS"]
    files = folder_order(cifar_tree, ".aedat")
    labels = [CIFAR_CLASSES.index(c) for _, c in files]
    _, test = sj_split(labels, 0.9, 10)
    events = []
    for i in test:
        d = sj.load_origin_data(str(files[i][0]))
        events.append(make_events(d["t"], d["x"], d["y"], d["p"]))
    pred = scores(cifar_model, events)
    code, out, err = cli(capsys, "eval", "--dataset", "cifar10dvs", "--root", cifar_tree, "--model", cifar_model,
                         "--json")
    assert code == 0, err
    res = json.loads(out)
    assert [p["output"] for p in res["predictions"]] == pred
    assert res["correct"] == sum(p == labels[i] for p, i in zip(pred, test)) and res["n"] == 4
    assert res["classes"] == list(CIFAR_CLASSES)


def test_eval_model_class_mapping_errors(capsys, cifar_tree, tmp_path):
    g = toy_graph(seed=4, T=2, sensor=(128, 128), channels=8, num_classes=7)
    g.save(tmp_path / "seven.evrt")
    code, _, err = cli(capsys, "eval", "--dataset", "cifar10dvs", "--root", cifar_tree, "--model",
                       tmp_path / "seven.evrt")
    assert code == 2 and "7 unnamed outputs, the dataset 10 classes" in err
    g = toy_graph(seed=4, T=2, sensor=(128, 128), channels=8, num_classes=10)
    g.meta["classes"] = list(reversed(CIFAR_CLASSES))  # named: mapped by name, whatever the order
    g.save(tmp_path / "named.evrt")
    code, out, err = cli(capsys, "eval", "--dataset", "cifar10dvs", "--root", cifar_tree, "--model",
                         tmp_path / "named.evrt", "--json")
    res = json.loads(out)
    assert code == 0 and all(p["pred"] == CIFAR_CLASSES[9 - p["output"]] for p in res["predictions"])
    code, _, err = cli(capsys, "eval", "--dataset", "cifar10dvs", "--root", tmp_path, "--model",
                       tmp_path / "named.evrt")
    assert code == 2 and "no CIFAR10-DVS class folders" in err


# ------------------------------------------------------------------------------------- N-Caltech101
def write_atis_bin(path, x, y, p, t):
    """40-bit N-Caltech101 records, written here: x, y, then polarity bit 23 and a 23-bit timestamp."""
    r = np.empty((len(x), 5), np.uint8)
    r[:, 0], r[:, 1] = x, y
    v = (np.asarray(p, np.uint32) << 23) | np.asarray(t, np.uint32)
    r[:, 2], r[:, 3], r[:, 4] = v >> 16, (v >> 8) & 0xFF, v & 0xFF
    path.write_bytes(r.tobytes())


def test_ncaltech101_class_order_split_and_eval_with_fit(capsys, tmp_path):
    base = tmp_path / "Caltech101"
    rng = np.random.default_rng(1)
    classes = ("accordion", "Faces_easy", "BACKGROUND_Google", "airplanes", "Motorbikes")
    raw = {}
    for c in classes:
        (base / c).mkdir(parents=True)
        for i in range(1, 12):
            n = int(rng.integers(200, 600))
            x, y = rng.integers(0, 240, n), rng.integers(0, 180, n)
            p, t = rng.integers(0, 2, n), np.sort(rng.integers(0, 300_000, n))
            write_atis_bin(base / c / f"image_{i:04d}.bin", x, y, p, t)
            raw[f"{c}/image_{i:04d}"] = (x, y, p, t)
    ds = open_dataset("ncaltech101", tmp_path, "test")
    # string order: upper case first, as DatasetFolder and tonic number them
    assert ds.classes == ("BACKGROUND_Google", "Faces_easy", "Motorbikes", "accordion", "airplanes")
    files = folder_order(base, ".bin")
    labels = [ds.classes.index(c) for _, c in files]
    train, test = sj_split(labels, 0.9, len(ds.classes))
    assert ds.names == [f"{files[i][1]}/{Path(files[i][0]).stem}" for i in test]
    assert len(open_dataset("ncaltech101", base, "train")) == len(train) == 50
    assert ds.sensor_size == (240, 180) and len(open_dataset("ncaltech101", tmp_path, "all")) == 55
    x, y, p, t = raw[ds.names[0]]
    ev = ds[0].events
    np.testing.assert_array_equal(ev["x"], x)
    np.testing.assert_array_equal(ev["t"], t)
    np.testing.assert_array_equal(ev["on"], p == 1)
    # a 128x128 model: the default fit divides by 2 (120x90) and centres it (+4, +19); nothing dropped
    g = toy_graph(seed=4, T=2, sensor=(128, 128), channels=8, num_classes=5)
    g.save(tmp_path / "m.evrt")
    mapped = [make_events(raw[n][3], raw[n][0] // 2 + 4, raw[n][1] // 2 + 19, raw[n][2]) for n in ds.names]
    pred = scores(str(tmp_path / "m.evrt"), mapped)
    code, out, err = cli(capsys, "eval", "--dataset", "ncaltech101", "--root", tmp_path, "--model",
                         tmp_path / "m.evrt", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert [q["output"] for q in res["predictions"]] == pred
    assert res["fit"]["factor"] == 2 and res["fit"]["dropped"] == 0
    assert res["fit"]["events"] == sum(len(raw[n][0]) for n in ds.names)
    assert "sensor 240x180 differs from the model's 128x128" in err and "divided by 2" in err


def test_cifar10dvs_tonic_layout_reads_aedat4_as_stored(tmp_path):
    from test_formats_misc import write_aedat4_fixture  # an AEDAT 4 writer that is not evrt's

    base = tmp_path / "CIFAR10DVS"
    rng = np.random.default_rng(3)
    written = {}
    for c in ("dog", "bird"):
        (base / c).mkdir(parents=True)
        for i in range(11):
            n = 50 + i
            ev = make_events(np.sort(rng.integers(0, 10**6, n)), rng.integers(0, 128, n),
                             rng.integers(0, 128, n), rng.integers(0, 2, n))
            write_aedat4_fixture(base / c / f"{i}.aedat4", [(0, ev)], streams=((0, "EVTS", (128, 128)),))
            written[f"{c}/{i}"] = ev
    ds = open_dataset("cifar10dvs", tmp_path, "test")
    assert ds.layout == "tonic"
    # ceil(0.9 * 11) = 10 train; the test sample is the name that sorts last ("9" after "10")
    assert ds.names == ["bird/9", "dog/9"] and ds.labels == [2, 5]
    np.testing.assert_array_equal(ds[1].events, written["dog/9"])


@pytest.mark.parametrize("seed", range(4))
def test_front_split_equals_spikingjelly(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 12))
    labels = rng.integers(0, k, int(rng.integers(0, 300))).tolist()
    for ratio in (0.9, 0.5, 0.8):
        assert front_split(labels, ratio, k) == sj_split(labels, ratio, k)
