"""Issue 14's reproductions: nothing a file, a peer or a user does stops evrt or makes it silently wrong.

Each test names the reproduction it covers; every one failed on the code before the fix (a traceback,
a hang, an unbounded allocation, a destroyed file or a confident answer from no input)."""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from evrt.cli import main
from evrt.errors import EvrtError
from evrt.events import make_events
from evrt.formats.npz import write_npz
from evrt.toy import toy_graph

ROOT = Path(__file__).resolve().parents[1]
SPIKFORMER = ROOT / "models" / "spikformer-synth-gesture" / "checkpoint.pth"


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    p = d / "toy.evrt"
    toy_graph(seed=1, T=4).save(str(p))
    return p


# ---------------------------------------------------------------------------------- silently wrong
@pytest.mark.parametrize("case", ["no_events", "out_of_sensor", "header_only_aedat"])
def test_predict_refuses_a_recording_with_no_usable_events(toy, tmp_path, capsys, case):
    if case == "no_events":
        p = tmp_path / "empty.npz"
        write_npz(p, make_events([], [], [], []))
    elif case == "out_of_sensor":   # the toy model's sensor is 32x32; main printed "2 events" and a class
        p = tmp_path / "oob.npz"   # (the file states its 32x32 sensor: nothing for --fit to map)
        write_npz(p, make_events([1, 2], [40, 50], [1, 2], [1, 0]), sensor_size=(32, 32))
    else:
        p = tmp_path / "header.aedat"
        p.write_bytes(b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n")
    code, out, err = cli(capsys, "predict", toy, p)
    one_line_error(code, err, "no events")
    assert out == ""


def test_predict_reports_the_events_it_used(toy, tmp_path, capsys):
    p = tmp_path / "mixed.npz"
    write_npz(p, make_events([1, 2, 3], [40, 5, 6], [1, 2, 3], [1, 0, 1]), sensor_size=(32, 32))
    code, out, err = cli(capsys, "predict", toy, p, "--json")
    assert code == 0 and json.loads(out)["events"] == 2 and "1/3" not in out and "warning" in err


def test_negative_npz_label_start_is_an_error_not_a_wrap(tmp_path, capsys, toy):
    p = tmp_path / "neg.npz"
    np.savez(p, t=np.arange(5), x=np.zeros(5, int), y=np.zeros(5, int), p=np.ones(5, int),
             labels=np.array([[0, -5, 3]]))
    from evrt.formats import read_recording
    with pytest.raises(EvrtError, match="start_us=-5"):
        read_recording(p)
    code, _, err = cli(capsys, "info", p)
    one_line_error(code, err, "start_us=-5")


def test_label_outside_the_recording_is_skipped_not_scored(tmp_path):
    from evrt.formats import read_recording
    p = tmp_path / "lab.npz"
    write_npz(p, make_events(np.arange(100, 200), np.zeros(100), np.zeros(100), np.ones(100)),
              labels=np.array([[0, 100, 150], [1, 150, 200], [2, 10_000, 20_000]]))
    rec = read_recording(p)
    assert rec.labels["label"].tolist() == [0, 1]   # main: 3 samples, the last one empty and scored wrong
    assert [len(ev) for _, ev in rec.samples()] == [50, 50]
    assert len(rec.notes) == 1 and "no events" in rec.notes[0]


def test_end_of_stream_after_a_reset_reports_only_the_new_stream():
    from evrt.framing import StreamFramer
    from evrt.pipeline.testing import FakeSession, synthetic_events
    from evrt.streaming import StreamClassifier
    clf = StreamClassifier(FakeSession(), StreamFramer(count=100))
    clf.push(synthetic_events(1000, seed=1))
    clf.reset()   # a new stream: the worker resets on RESET / restart
    clf.push(synthetic_events(300, seed=2))
    clf.end_of_stream()
    assert clf.events_in == 300  # main: 1300 (the abandoned stream's events kept)


# ------------------------------------------------------------------------------ convert and models
def test_convert_never_overwrites_its_input_or_an_existing_file(tmp_path, capsys):
    ck = tmp_path / "ck.pth.tar"
    shutil.copy(SPIKFORMER, ck)
    before = ck.read_bytes()
    code, _, err = cli(capsys, "convert", ck, "--arch", "spikformer", "-o", ck)
    one_line_error(code, err, "input file")
    assert ck.read_bytes() == before   # main replaced the training checkpoint with the folded model
    out = tmp_path / "m.evrt"
    out.write_bytes(b"keep me")
    code, _, err = cli(capsys, "convert", ck, "--arch", "spikformer", "-o", out)
    one_line_error(code, err, "already exists", "--force")
    assert out.read_bytes() == b"keep me"
    code, _, _ = cli(capsys, "convert", ck, "--arch", "spikformer", "-o", out, "--force")
    assert code == 0 and out.read_bytes() != b"keep me"


@pytest.mark.parametrize("case", ["missing_dir", "directory", "sensor", "classes_missing", "classes_json",
                                  "classes_count", "classes_conflict"])
def test_convert_bad_options_are_one_line_errors(tmp_path, capsys, case):
    argv = ["convert", SPIKFORMER, "--arch", "spikformer", "-o", tmp_path / "m.evrt"]
    needle = {"missing_dir": "does not exist", "directory": "is a directory", "sensor": "--sensor",
              "classes_missing": "cannot read", "classes_json": "not a valid JSON", "classes_count": "11 outputs",
              "classes_conflict": "contradicts"}[case]
    if case == "missing_dir":
        argv[-1] = tmp_path / "no" / "such" / "m.evrt"
    elif case == "directory":
        argv[-1] = tmp_path
    elif case == "sensor":
        argv += ["--sensor", "0x0"]
    elif case == "classes_missing":
        argv += ["--classes", tmp_path / "nope.txt"]
    elif case == "classes_json":
        (tmp_path / "c.json").write_text("[1, 2")
        argv += ["--classes", tmp_path / "c.json"]
    elif case == "classes_count":
        (tmp_path / "c.txt").write_text("a\nb\n")
        argv += ["--classes", tmp_path / "c.txt"]
    else:   # the right names in another order than the checkpoint's label_order='gesture'
        from evrt.datasets.dvsgesture import class_names
        (tmp_path / "c.txt").write_text("\n".join(class_names("spikingjelly")))
        argv += ["--classes", tmp_path / "c.txt"]
    code, _, err = cli(capsys, *argv)
    one_line_error(code, err, needle)
    assert not (tmp_path / "m.evrt").exists()


def _resave(tmp_path, name, mutate):
    from conftest import require_torch
    torch = require_torch()
    obj = torch.load(SPIKFORMER, weights_only=False)
    mutate(obj, torch)
    p = tmp_path / name
    torch.save(obj, p)
    return p


def test_non_integer_T_in_args_is_a_one_line_error_and_minus_T_overrides_it(tmp_path, capsys):
    def bad_T(obj, torch):
        obj["args"] = dict(vars(obj["args"]) if not isinstance(obj["args"], dict) else obj["args"], T=2.5)
    p = _resave(tmp_path, "t.pth", bad_T)
    code, _, err = cli(capsys, "convert", p, "--arch", "spikformer", "-o", tmp_path / "a.evrt")
    one_line_error(code, err, "whole number", "--timesteps")
    code, _, err = cli(capsys, "convert", p, "--arch", "spikformer", "-o", tmp_path / "b.evrt", "-T", "4")
    assert code == 0, err


def test_nan_weights_are_refused_naming_the_tensor(tmp_path, capsys):
    def nan(obj, torch):
        sd = obj["model"]
        k = next(k for k in sd if k.endswith("head.weight"))
        sd[k] = sd[k].clone()
        sd[k][0, 0] = float("nan")
    p = _resave(tmp_path, "nan.pth", nan)
    code, _, err = cli(capsys, "convert", p, "--arch", "spikformer", "-o", tmp_path / "n.evrt")
    one_line_error(code, err, "non-finite", "head")


@pytest.mark.parametrize("content", [b"", None], ids=["empty_file", "directory"])
def test_empty_or_directory_model_is_a_one_line_error(tmp_path, capsys, content):
    m = tmp_path / "m.evrt"
    if content is None:
        m.mkdir()
    else:
        m.write_bytes(content)
    ev = tmp_path / "e.npz"
    write_npz(ev, make_events([1], [1], [1], [1]))
    code, _, err = cli(capsys, "predict", m, ev)
    one_line_error(code, err, str(m))


# ------------------------------------------------------------------------------------ file readers
def test_labels_csv_value_beyond_u64_is_a_one_line_error(tmp_path):
    from evrt.errors import FormatError
    from evrt.formats.aedat31 import read_labels_csv
    p = tmp_path / "x_labels.csv"
    p.write_text(f"class,startTime_usec,endTime_usec\n1,0,{2**64}\n")
    with pytest.raises(FormatError, match="line 2"):
        read_labels_csv(p)


def _safetensors(path, header: bytes, data: bytes = b""):
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


@pytest.mark.parametrize("header", [b"[" * 200_000 + b"]" * 200_000,
                                    json.dumps({"w": {"dtype": "F32", "shape": [1] * 70,
                                                      "data_offsets": [0, 4]}}).encode()],
                         ids=["deep_json", "70_dims"])
def test_hostile_safetensors_headers_are_checkpoint_errors(tmp_path, header):
    from evrt.checkpoint import load_checkpoint
    from evrt.errors import CheckpointError
    p = _safetensors(tmp_path / "x.safetensors", header, b"\0" * 4)
    with pytest.raises(CheckpointError, match=str(p)):
        load_checkpoint(p)


def test_pth_views_share_one_storage_instead_of_copying(tmp_path):
    """2,000 tensors viewing one 1 MiB storage: main materialised 2 GiB; now they cost the storage."""
    import tracemalloc

    from evrt.checkpoint import load_checkpoint
    from test_checkpoint import _dict, _pkl, _tensor, _write_zip
    n = 1 << 18   # float32 elements = 1 MiB
    body = _dict(model=_dict(**{f"v{i}": _tensor("0", n, (n,), (1,)) for i in range(2000)}))
    p = _write_zip(tmp_path / "views.pth", _pkl(body), {"0": b"\0" * (4 * n)})
    assert p and Path(p).stat().st_size < 2 << 20
    tracemalloc.start()
    c = load_checkpoint(p)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(c.state) == 2000 and all(np.shares_memory(c.state["v0"], a) for a in c.state.values())
    assert peak < 32 << 20, f"loading took {peak / 2**20:.0f} MiB"


def test_replay_scores_only_labels_that_hold_events(toy, tmp_path, capsys):
    """main: a label outside the recording was scored as a wrong prediction on an empty sample."""
    p = tmp_path / "lab.npz"
    n = 3000
    write_npz(p, make_events(np.arange(n) * 10, np.arange(n) % 32, np.arange(n) % 32, np.arange(n) % 2),
              labels=np.array([[0, 0, 15_000], [1, 15_000, 30_000], [2, 10**9, 2 * 10**9]]))
    code, out, err = cli(capsys, "replay", p, "--model", toy, "--speed", "max", "--json")
    assert code == 0, err
    lines = [json.loads(ln) for ln in out.splitlines()]
    samples = [d for d in lines if d["type"] == "sample"]
    assert len(samples) == 2 and all(s["events"] > 0 for s in samples)
    assert lines[-1]["samples"] == 2 and "hold no events" in err


@pytest.mark.parametrize("gap", [2**62, 3 * 3600 * 10**6], ids=["2^62us", "3_hours"])
def test_replay_through_a_clock_jump_is_bounded(toy, tmp_path, capsys, gap):
    """main: a 2^62 µs gap raised ArrayMemoryError (671 TiB); a gap of hours took 216,000 steps."""
    p = tmp_path / "jump.npz"
    t = np.concatenate([np.arange(500) * 100, gap + np.arange(500) * 100]).astype(np.uint64)
    write_npz(p, make_events(t, np.arange(1000) % 32, np.arange(1000) % 32, np.arange(1000) % 2))
    code, out, err = cli(capsys, "replay", p, "--model", toy, "--speed", "max", "--window-us", "50000", "--json")
    assert code == 0, err
    summary = json.loads(out.splitlines()[-1])
    from evrt.framing import MAX_EMPTY_STEPS
    assert summary["events_streamed"] == 1000 and summary["steps"] <= MAX_EMPTY_STEPS + 10


def test_class_order_rule():
    """The checkpoint's metadata wins; a contradicting flag is an error; unknown orders fall through."""
    from types import SimpleNamespace

    from evrt.checkpoint.classes import resolve_classes
    from evrt.datasets.dvsgesture import class_names
    from evrt.errors import CheckpointError

    def ck(args=None, extra=None):
        return SimpleNamespace(args=args, extra=extra or {}, path="ck.pth")

    sj, ge = list(class_names("spikingjelly")), list(class_names("gesture"))
    assert resolve_classes(ck({"label_order": "gesture"}), 11)[0] == ge
    assert resolve_classes(ck({"label_order": "spikingjelly"}), 11)[0] == sj
    assert resolve_classes(ck({"label_order": "digit"}), 10)[0] == [str(d) for d in range(10)]
    assert resolve_classes(ck(extra={"classes": ["a", "b"]}), 2)[0] == ["a", "b"]
    assert resolve_classes(ck({"label_order": "gesture"}), 11, ge)[0] == ge      # agreeing flag: fine
    assert resolve_classes(ck({"label_order": "made-up"}), 11)[0] == sj          # not understood: default
    assert resolve_classes(ck(), 3, ["x", "y", "z"])[0] == ["x", "y", "z"]
    for bad in (lambda: resolve_classes(ck({"label_order": "gesture"}), 11, sj),
                lambda: resolve_classes(ck({"label_order": "gesture"}), 10),
                lambda: resolve_classes(ck({"classes": "abc"}), 3),
                lambda: resolve_classes(ck(), 3, ["x"])):
        with pytest.raises(CheckpointError):
            bad()
