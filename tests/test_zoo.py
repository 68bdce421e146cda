"""The trained model zoo in models/: every model runs in evrt (float32, clip mode) on the shipped synthetic
test split and reproduces the accuracy and per-sample predictions its card and predictions.json record."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
DATA = ROOT / "examples" / "data" / "dvsgesture_synth"
# the synthetic-gesture models; models on other datasets have their own test modules (tests/test_zoo_nmnist.py)
CARDS = sorted(p for p in MODELS.glob("*/card.json")
               if json.loads(p.read_text()).get("dataset", "dvsgesture") == "dvsgesture")
EXPECTED = {"sdt-synth-gesture", "spikformer-synth-gesture", "rtformer-synth-gesture",
            "spikingresformer-synth-gesture", "csdformer-synth-gesture"}


@pytest.fixture(scope="module")
def test_samples():
    from evrt.datasets import DVSGesture
    ds = DVSGesture(DATA, split="test")
    return [ds[i] for i in range(len(ds))]


def test_zoo_has_every_family_and_default():
    from evrt.zoo import DEFAULT_MODEL
    names = {p.parent.name for p in CARDS}
    assert EXPECTED <= names, f"missing zoo models: {sorted(EXPECTED - names)}"
    assert DEFAULT_MODEL in names
    card = json.loads((MODELS / DEFAULT_MODEL / "card.json").read_text())
    assert card["accuracy"]["evrt"] >= 0.9


@pytest.mark.parametrize("card_path", CARDS, ids=[p.parent.name for p in CARDS])
def test_zoo_model_reproduces_card(card_path, test_samples):
    from evrt.engine import Session
    from evrt.evaluate import evaluate
    from evrt.graph import Graph

    card = json.loads(card_path.read_text())
    for key in ("name", "family", "file", "T", "params", "framing", "stream", "classes", "training",
                "accuracy", "per_sample"):
        assert key in card, key
    model = card_path.parent / card["file"]
    assert model.stat().st_size < 12e6   # RTFormer: per-step folded weights, ~10 MB
    graph = Graph.load(str(model))
    assert graph.meta["classes"] == card["classes"]
    assert graph.meta["T"] == card["T"]
    res = evaluate(Session(graph, precision="float32", mode="clip"), test_samples, progress=False)
    acc = card["accuracy"]
    assert res.n == acc["n_samples"] == len(test_samples)
    assert res.correct == acc["evrt_correct"], f"{card['name']}: {res.correct} correct, card says {acc['evrt_correct']}"
    assert acc["agreement"] >= 0.99
    recorded = json.loads((card_path.parent / "predictions.json").read_text())["predictions"]
    assert [p["name"] for p in recorded] == [p["name"] for p in res.predictions]
    assert [p["evrt"] for p in recorded] == [p["pred"] for p in res.predictions]


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
