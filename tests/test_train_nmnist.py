"""tools/train.py's N-MNIST input: the slayerPytorch subset layout (<id>.bs2 + listing) reads the same
recordings, labels and frames as the official layout evrt.datasets.nmnist reads, and a tiny run saves a
checkpoint whose args make evrt convert a 34x34, 10-class graph framed as in training."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import require_torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "nmnist"


def subset_copy(tmp: Path, n: int, listing: str) -> list:
    """The first n shipped test recordings as a slayer-style subset: Test/<d>/000NN.bin -> 600NN.bs2."""
    from evrt.datasets.nmnist import NMNIST
    ds = NMNIST(DATA, split="test")
    rows = sorted((int(Path(name).name) + 60000, label, ROOT / "examples" / "data" / "nmnist" / (name + ".bin"))
                  for name, label in zip(ds.names, ds.labels))[:n]
    for rid, _, path in rows:
        shutil.copyfile(path, tmp / f"{rid}.bs2")
    (tmp / listing).write_text("#sample #class\n" + "".join(f"{rid}\t{y}\n" for rid, y, _ in rows[::-1]))
    return rows


def test_subset_listing_reads_the_same_recordings_as_the_official_layout(tmp_path):
    from evrt.formats.atis_bin import read_atis_bin
    from tools.train import nmnist_recordings
    rows = subset_copy(tmp_path, 6, "test100.txt")
    got = nmnist_recordings(tmp_path, "test")
    assert [n for n, _, _ in got] == [str(r) for r, _, _ in rows]          # id order, whatever the listing's
    assert [y for _, y, _ in got] == [y for _, y, _ in rows]
    for (_, _, ev), (_, _, path) in zip(got, rows):
        assert np.array_equal(ev, read_atis_bin(path).events)
    official = nmnist_recordings(DATA, "test")
    assert len(official) == 100 and {y for _, y, _ in official} == set(range(10))


def test_subset_listing_names_a_missing_recording(tmp_path):
    from tools.train import nmnist_recordings
    rows = subset_copy(tmp_path, 3, "train1K.txt")
    (tmp_path / f"{rows[1][0]}.bs2").unlink()
    with pytest.raises(SystemExit, match=f"recording {rows[1][0]} has no"):
        nmnist_recordings(tmp_path, "train")


def test_tiny_nmnist_run_saves_a_checkpoint_evrt_converts_to_34x34(tmp_path):
    require_torch()
    from evrt.archs import convert
    from evrt.checkpoint import load_checkpoint
    from evrt.framing import FrameSpec
    from tools import train
    data = tmp_path / "subset"
    data.mkdir()
    subset_copy(data, 12, "train1K.txt")
    shutil.copyfile(data / "train1K.txt", data / "test100.txt")   # a test listing for the final score
    out = tmp_path / "run"
    assert train.main(["--dataset", "nmnist", "--family", "sdt", "--root", str(data), "--out", str(out),
                       "--embed", "16", "--heads", "2", "--T", "4", "--pooling-stat", "1110", "--epochs", "1",
                       "--val-count", "4", "--batch-size", "4", "--threads", "1", "--device", "cpu"]) == 0
    import json
    log = json.loads((out / "train_log.json").read_text())
    assert log["dataset"] == "nmnist" and log["val_count"] == 4 and len(log["train_names"]) == 8
    assert not set(log["train_names"]) & set(log["val_names"])
    ck = load_checkpoint(str(out / log["checkpoint"]))
    assert ck.args["num_classes"] == 10 and ck.args["framing"]["sensor_size"] == [34, 34]
    graph = convert(ck, "sdt", classes=[str(d) for d in range(10)], sensor=(34, 34))
    spec = FrameSpec.from_dict(graph.meta["frame"])
    assert spec.to_dict() == log["framing"]
    assert graph.meta["T"] == 4 and len(graph.meta["classes"]) == 10
    # (that a trained N-MNIST checkpoint's graph matches the reference: tests/test_zoo_nmnist.py; an
    # untrained 1-epoch model's head does not fire, so its logits would compare only biases)
