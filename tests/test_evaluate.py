"""evrt.evaluate (accuracy, confusion matrix, name mapping) and evrt.progress, on the code-built toy model."""
import io

import numpy as np
import pytest

from evrt.counters import PJ_PER_AC, PJ_PER_MAC
from evrt.engine import Session
from evrt.errors import EvrtError
from evrt.evaluate import evaluate, map_classes
from evrt.events import make_events
from evrt.progress import Progress, track
from evrt.toy import toy_graph

K = 5


def blob_events(seed, n=1500, sensor=(32, 32), duration_us=200_000):
    """Events around a random centre, so different samples drive the toy model differently."""
    rng = np.random.default_rng(seed)
    cx, cy = rng.integers(4, sensor[0] - 4), rng.integers(4, sensor[1] - 4)
    x = np.clip(rng.normal(cx, 3, n).round(), 0, sensor[0] - 1)
    y = np.clip(rng.normal(cy, 3, n).round(), 0, sensor[1] - 1)
    return make_events(np.sort(rng.integers(0, duration_us, n)), x, y, rng.integers(0, 2, n))


@pytest.fixture(scope="module")
def session():
    return Session(toy_graph(seed=3, T=4, sensor=(32, 32), channels=8, num_classes=K), "float32")


@pytest.fixture(scope="module")
def samples(session):
    """12 samples; the even ones are labelled with the model's own prediction, the odd ones with another
    class, so the exact accuracy is known (0.5) whatever the random model predicts."""
    out = []
    for i in range(12):
        ev = blob_events(i)
        k = session.run_clip(ev).class_index
        out.append((ev, k if i % 2 == 0 else (k + 1 + i % (K - 1)) % K, f"s{i}"))
    return out


def test_accuracy_confusion_and_counts_match_an_independent_loop(session, samples):
    res = evaluate(session, samples, progress=False)
    assert res.n == len(samples) == res.confusion.sum()
    assert res.accuracy == 0.5 and res.correct == 6
    ref = np.zeros((K, K), int)
    acs = macs = 0
    for ev, label, _ in samples:
        r = session.run_clip(ev)
        ref[label, r.class_index] += 1
        acs += r.acs
        macs += r.macs
    np.testing.assert_array_equal(res.confusion, ref)
    assert res.mean_acs == pytest.approx(acs / len(samples))
    assert res.mean_macs == pytest.approx(macs / len(samples))
    assert res.mean_energy_pj == pytest.approx((acs * PJ_PER_AC + macs * PJ_PER_MAC) / len(samples))
    pc = res.per_class()
    assert sum(v["n"] for v in pc.values()) == len(samples)
    assert sum(v["correct"] for v in pc.values()) == res.correct
    assert [p["correct"] for p in res.predictions] == [i % 2 == 0 for i in range(12)]
    d = res.to_dict()
    assert d["accuracy"] == 0.5 and len(d["confusion"]) == K and len(d["predictions"]) == 12
    assert "confusion matrix" in res.to_text()


def test_output_map_scores_a_permuted_model_identically(session, samples):
    """A model whose outputs are in another order, described by its class names, scores the same once
    its outputs are mapped to the dataset's classes by name."""
    perm = np.array([3, 0, 4, 1, 2])  # new output j = old output perm[j]
    g = toy_graph(seed=3, T=4, sensor=(32, 32), channels=8, num_classes=K)
    head = g.op("head")
    head.params["w"] = head.params["w"][:, perm].copy()
    head.params["b"] = head.params["b"][perm].copy()
    g.meta["classes"] = [session.classes[i] for i in perm]
    permuted = Session(g, "float32")
    omap = map_classes(permuted.classes, session.classes)
    assert omap == perm.tolist()
    a = evaluate(session, samples, progress=False)
    b = evaluate(permuted, samples, progress=False, classes=session.classes, output_map=omap)
    np.testing.assert_array_equal(a.confusion, b.confusion)
    assert [p["pred"] for p in a.predictions] == [p["pred"] for p in b.predictions]


def test_map_classes_normalises_names_and_rejects_unknown_ones():
    assert map_classes(["Right Hand Wave", "hand-clap"], ["hand_clap", "right_hand_wave"]) == [1, 0]
    with pytest.raises(EvrtError, match="match no dataset class"):
        map_classes(["class_0", "hand_clap"], ["hand_clap", "other"])
    with pytest.raises(EvrtError, match="no class names"):
        map_classes([], ["hand_clap"])


def test_bad_label_is_an_error(session):
    with pytest.raises(EvrtError, match="outside"):
        evaluate(session, [(blob_events(0), K + 3)], progress=False, warmup=False)


def test_progress_bar_draws_only_when_enabled():
    buf = io.StringIO()  # not a TTY: silent by default
    assert list(track(range(5), stream=buf)) == list(range(5))
    assert buf.getvalue() == ""
    buf = io.StringIO()
    with Progress(4, "eval", enabled=True, stream=buf, min_interval=0) as bar:
        for _ in range(4):
            bar.update()
    text = buf.getvalue()
    assert "4/4" in text and "100%" in text and "eta" in text and text.endswith("\n")
    assert "/s" in Progress(None, enabled=False).line()
