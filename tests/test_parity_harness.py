"""The parity harness's independent AC count covers every op kind that counts ACs, including the
converted-model ops (temporally decomposed products, scaled skips): on the zoo's CSDformer-style model,
counted from the spike maps alone, it equals what the kernels counted."""
from pathlib import Path

import numpy as np
import pytest

from evrt.engine import Session
from evrt.graph import Graph
from evrt.ops import OP_TYPES
from tests.parity import random_gesture_events
from tools.parity import COUNTS, independent_acs

MODEL = Path(__file__).resolve().parents[1] / "models" / "csdformer-synth-gesture" / "model.evrt"


def test_every_counting_op_type_has_an_independent_count():
    counting = {name for name, cls in OP_TYPES.items() if cls.kind.counts_acs}
    assert counting == set(COUNTS)


def test_converted_model_counts_match_the_harness():
    graph = Graph.load(MODEL)
    ev = random_gesture_events(3000, seed=4, sensor=tuple(graph.meta["frame"]["sensor_size"]))
    sess = Session(graph, "float64")
    sess.trace = True
    sess.run_clip(ev)
    golden = {"spikes": {name: spikes for name, (spikes, _) in sess.reference_traces().items()}}
    measured = {r["name"]: r["acs"] for r in sess.report().rows()}
    expected = independent_acs(graph, golden, ev, sess)
    types = {op.name: op.type for op in graph.ops}
    assert {"tprod_qk", "tprod_av", "scaled_add", "conv2d", "linear"} <= {types[n] for n in expected}
    assert sum(expected.values()) > 0
    for name, n in expected.items():
        assert measured[name] == n, f"{name} ({types[name]}): kernels {measured[name]}, harness {n}"


def test_harness_refuses_an_op_kind_it_cannot_count(monkeypatch):
    graph = Graph.load(MODEL)
    sess = Session(graph, "float64")
    monkeypatch.delitem(COUNTS, "tprod_qk")
    with pytest.raises(KeyError, match="tprod_qk"):
        independent_acs(graph, {"spikes": {}}, np.zeros(0, dtype=[("t", "<u8"), ("x", "<u2"), ("y", "<u2"),
                                                                    ("on", "?")]), sess)
