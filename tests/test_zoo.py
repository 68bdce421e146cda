"""The trained model zoo in models/: every claim a card makes about accuracy is recomputed here from the
shipped files alone — evrt's predictions (float32, clip mode) from model.evrt, the PyTorch reference's
(float32, eval) from the shipped training checkpoint and training log, both on the shipped synthetic
test split — and compared with the card, predictions.json and the README. Nothing is taken from what
the zoo builder stored."""
from __future__ import annotations

import json
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from conftest import require_torch

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
DATA = ROOT / "examples" / "data" / "dvsgesture_synth"
# the synthetic-gesture models; models on other datasets have their own test modules (tests/test_zoo_nmnist.py)
CARDS = sorted(p for p in MODELS.glob("*/card.json")
               if json.loads(p.read_text()).get("dataset", "dvsgesture") == "dvsgesture")
IDS = [p.parent.name for p in CARDS]
EXPECTED = {"sdt-synth-gesture", "spikformer-synth-gesture", "rtformer-synth-gesture",
            "spikingresformer-synth-gesture", "csdformer-synth-gesture"}


@lru_cache(maxsize=None)
def samples():
    from evrt.datasets import DVSGesture
    ds = DVSGesture(DATA, split="test")
    return tuple(ds[i] for i in range(len(ds)))


def card_of(name: str) -> dict:
    return json.loads((MODELS / name / "card.json").read_text())


def stored(name: str) -> list[dict]:
    path = MODELS / name / "predictions.json"
    assert path.is_file(), f"{name}: {path.name} is missing"
    return json.loads(path.read_text())["predictions"]


def claimed(card: dict, key: str):
    assert key in card["accuracy"], f"{card['name']}: the card states no accuracy[{key!r}]"
    return card["accuracy"][key]


@lru_cache(maxsize=None)
def evrt_predictions(name: str) -> tuple[int, ...]:
    """Class indices evrt predicts for each test sample, straight from Session.run_clip."""
    from evrt.engine import Session
    sess = Session(str(MODELS / name / card_of(name)["file"]), precision="float32", mode="clip")
    return tuple(sess.run_clip(s.events).class_index for s in samples())


@lru_cache(maxsize=None)
def reference_predictions(name: str) -> tuple[int, ...]:
    """Class indices the PyTorch reference predicts: the model rebuilt from the training log's
    hyper-parameters, the shipped checkpoint's weights, the clip framed by the training log's rule,
    float32, evaluated as a batch."""
    torch = require_torch()
    from evrt.framing import FrameSpec, clip_frames
    from tools import train
    from tools.reference.neurons import reset_states
    d = MODELS / name
    card = card_of(name)
    log = json.loads((d / "train_log.json").read_text())
    assert card.get("checkpoint"), f"{name}: the card names no shipped checkpoint"
    ck = torch.load(d / card["checkpoint"], map_location="cpu", weights_only=False)
    model = train.build(card["family"], log["hparams"])
    model.load_state_dict(ck.get("state_dict") or ck.get("model"))
    model = model.float().eval()
    spec = FrameSpec.from_dict(log["framing"])
    x = torch.from_numpy(np.stack([clip_frames(s.events, spec, dtype=np.float32) for s in samples()]))
    torch.set_num_threads(1)
    with torch.no_grad():
        reset_states(model)
        logits = train.forward(card["family"], model, x)
    return tuple(int(i) for i in logits.argmax(1))


def truth() -> list[int]:
    return [s.gesture_id for s in samples()]


def test_zoo_has_every_family_and_default():
    from evrt.zoo import DEFAULT_MODEL
    names = {p.parent.name for p in CARDS}
    assert EXPECTED <= names, f"missing zoo models: {sorted(EXPECTED - names)}"
    assert DEFAULT_MODEL in names
    # the default model is the one the README demo uses: it must actually classify the test split (the
    # issue's target is 90 %; with the realistic 6 s recordings it scores 80-90 % here, see its card)
    pred, y = evrt_predictions(DEFAULT_MODEL), truth()
    assert np.mean(np.array(pred) == y) >= 0.8


@pytest.mark.parametrize("name", IDS)
def test_zoo_evrt_accuracy_and_predictions_recomputed(name):
    card = card_of(name)
    for key in ("name", "family", "file", "T", "params", "framing", "stream", "classes", "training",
                "accuracy", "per_sample"):
        assert key in card, key
    model = MODELS / name / card["file"]
    assert model.stat().st_size < 12e6   # RTFormer: per-step folded weights, ~10 MB
    from evrt.graph import Graph
    graph = Graph.load(str(model))
    assert graph.meta["classes"] == card["classes"] and graph.meta["T"] == card["T"]
    pred, y, classes = evrt_predictions(name), truth(), card["classes"]
    n, correct = len(y), int(np.sum(np.array(pred) == y))
    assert n > 0 and claimed(card, "n_samples") == n
    assert claimed(card, "evrt_correct") == correct, f"{name}: evrt gets {correct}/{n} right"
    assert claimed(card, "evrt") == pytest.approx(correct / n)
    rows = stored(name)
    assert [r["true"] for r in rows] == [classes[i] for i in y]
    assert [r["evrt"] for r in rows] == [classes[i] for i in pred]
    assert [r["correct"] for r in rows] == [p == t for p, t in zip(pred, y)]
    readme = (MODELS / name / "README.md").read_text()
    assert f"({correct}/{n})" in readme, f"{name}: README does not state evrt's {correct}/{n}"


@pytest.mark.torch
@pytest.mark.slow   # ~45 s of CPU for the five reference models
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # spikingjelly's torch.jit.script
@pytest.mark.parametrize("name", IDS)
def test_zoo_reference_accuracy_and_agreement_recomputed(name):
    card = card_of(name)
    ref, ev, y, classes = reference_predictions(name), evrt_predictions(name), truth(), card["classes"]
    n, correct = len(y), int(np.sum(np.array(ref) == y))
    assert claimed(card, "reference_correct") == correct, f"{name}: the reference gets {correct}/{n} right"
    assert claimed(card, "reference") == pytest.approx(correct / n)
    assert [r["reference"] for r in stored(name)] == [classes[i] for i in ref]
    agree = float(np.mean(np.array(ref) == ev))
    assert claimed(card, "agreement") == pytest.approx(agree)
    disagree = [(s.name, classes[a], classes[b]) for s, a, b in zip(samples(), ev, ref) if a != b]
    assert agree >= 0.99, f"{name}: evrt and the PyTorch reference disagree on {disagree}"
    readme = (MODELS / name / "README.md").read_text()
    assert f"{100 * agree:.1f} %" in readme


def test_evrt_models_lists_zoo():
    out = subprocess.run([sys.executable, "-m", "evrt", "models", "--json"], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    listed = {c["name"]: c for c in json.loads(out.stdout)}
    assert EXPECTED <= set(listed)
    for name in EXPECTED:
        assert Path(listed[name]["path"]).exists()
    text = subprocess.run([sys.executable, "-m", "evrt", "models"], capture_output=True, text=True, check=True,
                          cwd=ROOT).stdout
    assert "sdt-synth-gesture" in text


def test_zoo_names_resolve_wherever_a_model_is_taken():
    from evrt.errors import EvrtError
    from evrt.streaming import StreamClassifier
    from evrt.zoo import DEFAULT_MODEL, resolve_model
    clf = StreamClassifier.from_model(DEFAULT_MODEL)
    assert clf.session.meta["family"] == "sdt"
    with pytest.raises(EvrtError, match="no model file or zoo model"):
        resolve_model("no-such-model")


@pytest.mark.parametrize("card_path", CARDS, ids=[p.parent.name for p in CARDS])
def test_reconverting_the_shipped_checkpoint_reproduces_the_model(card_path, tmp_path):
    """Issue 14: `evrt convert` of a zoo checkpoint gave the wrong class names (18 % instead of 95 %);
    the checkpoint's own label order must win, with no --classes flag."""
    from evrt.cli import main
    from evrt.engine import Session
    from evrt.graph import Graph

    card = json.loads(card_path.read_text())
    out = tmp_path / "re.evrt"
    assert main(["convert", str(card_path.parent / card["checkpoint"]), "--arch", card["family"],
                 "-o", str(out)]) == 0
    new, shipped = Graph.load(str(out)), Graph.load(str(card_path.parent / card["file"]))
    assert new.meta["classes"] == shipped.meta["classes"] == card["classes"]
    a, b = Session(new, precision="float32", mode="clip"), Session(shipped, precision="float32", mode="clip")
    for s in samples()[:3]:
        ra, rb = a.run_clip(s.events), b.run_clip(s.events)
        assert a.class_name(ra.class_index) == b.class_name(rb.class_index)
        np.testing.assert_allclose(ra.logits, rb.logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", IDS)
def test_fresh_user_accuracy_on_the_card_is_the_training_logs(name):
    """Each card's fresh-user block (users never seen in training, scored by tools/train_zoo.sh) is what the
    shipped training log's per-sample predictions give; evrt's subset agrees with the reference there."""
    card = card_of(name)
    fr = card.get("fresh_users")
    assert fr, f"{name}: the card states no fresh-user accuracy"
    log = json.loads((MODELS / name / "train_log.json").read_text())["fresh"]
    pred, true = np.array(log["pred"]), np.array(log["true"])
    assert len(pred) == len(true) == fr["n_samples"] >= 220
    assert int((pred == true).sum()) == fr["reference_correct"]
    assert fr["reference"] == pytest.approx(fr["reference_correct"] / fr["n_samples"])
    assert not {n.split("_")[0] for n in log["names"]} & {n.split("_")[0] for n in samples_names()}
    sub = fr.get("evrt_subset")
    if sub:
        assert sub["agreement_evrt_reference_cpu"] >= 0.95, f"{name}: evrt vs reference on fresh users"
    readme = (MODELS / name / "README.md").read_text()
    assert f"({fr['reference_correct']}/{fr['n_samples']})" in readme


def samples_names():
    from evrt.datasets import DVSGesture
    return DVSGesture(DATA, split="test").names
