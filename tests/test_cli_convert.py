"""evrt convert / inspect / predict on real checkpoints, including a run with torch unimportable."""
import argparse
import json
import pickle
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from conftest import require_torch
from parity import random_gesture_events

torch = require_torch()

from evrt.cli import main  # noqa: E402
from evrt.engine import Session  # noqa: E402
from evrt.formats.npz import write_npz  # noqa: E402
from tools.reference.checkpoints import randomize_for_firing, save_sdt_checkpoint  # noqa: E402
from tools.reference.sdt import SDT  # noqa: E402

SENSOR = (64, 64)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("convert")
    torch.manual_seed(0)
    model = SDT(num_classes=11, embed_dims=32, num_heads=2, depths=1, T=4)
    randomize_for_firing(model, seed=1)
    ckpt = d / "model_best.pth.tar"
    save_sdt_checkpoint(model, ckpt, argparse.Namespace(time_steps=4, num_heads=2, pooling_stat="0111"))
    bare = d / "bare.pth"
    torch.save({"model": model.state_dict()}, bare)
    ev = random_gesture_events(4000, 3, SENSOR)
    events = d / "sample.npz"
    write_npz(events, ev, sensor_size=SENSOR)
    return d, ckpt, bare, events, ev, model


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_convert_inspect_predict(files, capsys):
    d, ckpt, _, events, ev, _ = files
    out_model = d / "m.evrt"
    code, out, err = run_cli(capsys, "convert", ckpt, "--arch", "sdt", "-o", out_model, "--sensor", "64x64", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["T"] == 4 and summary["params"] > 0
    assert "block.0.attn.talking_heads.weight" in summary["unused_keys"]
    code, out, _ = run_cli(capsys, "inspect", out_model)
    assert code == 0 and "T=4" in out and "block.0.attn.kv" in out and "hand_clap" in out.replace(" ", "_").lower()
    code, out, _ = run_cli(capsys, "predict", out_model, events, "--json")
    res = json.loads(out)
    assert set(res) >= {"logits", "class_index", "class_name", "acs", "macs"}
    direct = Session(str(out_model), "float32").run_clip(ev)
    np.testing.assert_allclose(res["logits"], direct.logits, rtol=1e-6)
    assert res["acs"] == direct.acs > 0


def test_timesteps_required_without_saved_args(files, capsys):
    d, _, bare, _, _, _ = files
    code, _, err = run_cli(capsys, "convert", bare, "--arch", "sdt", "-o", d / "x.evrt")
    assert code == 2 and "--timesteps" in err
    code, _, err = run_cli(capsys, "convert", bare, "--arch", "sdt", "-o", d / "x.evrt", "-T", "4", "--sensor", "64x64")
    assert code == 0, err


def test_wrong_architecture_and_shape_errors_name_the_key(files, capsys, tmp_path):
    d, ckpt, _, _, _, model = files
    code, _, err = run_cli(capsys, "convert", ckpt, "--arch", "spikformer", "-o", tmp_path / "x.evrt")
    assert code == 2 and "block.0" in err
    sd = model.state_dict()
    sd["block.0.attn.q_conv.weight"] = torch.zeros(32, 16, 1, 1)
    bad = tmp_path / "bad.pth"
    torch.save({"model": sd, "args": argparse.Namespace(T=4)}, bad)
    code, _, err = run_cli(capsys, "convert", bad, "--arch", "sdt", "-o", tmp_path / "x.evrt")
    assert code == 2 and "block.0.attn.q_conv.weight" in err and "(32, 16, 1, 1)" in err and "(32, 32, 1, 1)" in err


def test_hostile_checkpoint_is_refused_and_nothing_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (__import__("os").system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps({"model": Evil()}, protocol=2))
        z.writestr("evil/version", "3\n")
    code, _, err = run_cli(capsys, "convert", path, "--arch", "sdt", "-o", tmp_path / "x.evrt")
    assert code == 2 and "system" in err
    assert not marker.exists()


def test_convert_and_predict_with_torch_unimportable(files, tmp_path):
    d, ckpt, _, events, ev, _ = files
    out_model = tmp_path / "nt.evrt"
    script = textwrap.dedent(f"""
        import sys, json
        for name in ("torch", "spikingjelly", "torchvision"):
            sys.modules[name] = None   # any import of them now raises ImportError
        from evrt.cli import main
        assert main(["convert", {str(ckpt)!r}, "--arch", "sdt", "-o", {str(out_model)!r}, "--sensor", "64x64"]) == 0
        assert main(["predict", {str(out_model)!r}, {str(events)!r}, "--json"]) == 0
        assert not any(m.split(".")[0] == "torch" and sys.modules[m] is not None for m in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    direct = Session(str(out_model), "float32").run_clip(ev)
    assert res["class_index"] == direct.class_index


def test_convert_float32_halves_the_file_and_predicts_the_same(files, capsys):
    d, ckpt, _, _, ev, _ = files
    sizes = {}
    for prec in ("float64", "float32"):
        out_model = d / f"m_{prec}.evrt"
        code, out, err = run_cli(capsys, "convert", ckpt, "--arch", "sdt", "-o", out_model, "--sensor", "64x64",
                                 "--precision", prec, "--json")
        assert code == 0, err
        summary = json.loads(out)
        assert summary["precision"] == prec and summary["bytes"] == out_model.stat().st_size
        sizes[prec] = summary["bytes"]
    assert sizes["float32"] < 0.55 * sizes["float64"]
    a = Session(str(d / "m_float64.evrt"), "float32").run_clip(ev)
    b = Session(str(d / "m_float32.evrt"), "float32").run_clip(ev)
    np.testing.assert_array_equal(a.logits, b.logits)
    assert a.acs == b.acs > 0
    # an existing float64 model rewritten to float32 is the same file the checkpoint convert wrote
    redo = d / "m_redo.evrt"
    code, out, err = run_cli(capsys, "convert", d / "m_float64.evrt", "--precision", "float32", "-o", redo, "--json")
    assert code == 0, err
    assert json.loads(out)["bytes"] == redo.stat().st_size
    c = Session(str(redo), "float32").run_clip(ev)
    np.testing.assert_array_equal(a.logits, c.logits)
    code, _, err = run_cli(capsys, "convert", d / "m_float64.evrt", "-o", d / "m_again.evrt")
    assert code == 2 and "already an evrt model" in err and err.count("\n") <= 1
