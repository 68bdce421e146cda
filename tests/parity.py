"""The parity checks every family is held to (the harness itself is tools/parity.py). Each family test
module defines a `case` fixture (name, graph, [(events, golden64, golden32)]) and imports these."""

from evrt.engine import Session
from tools.parity import (compare_float64, end_to_end_float32, independent_acs,  # noqa: F401
                          make_graph, random_gesture_events, teacher_forced_float32)

def test_float64_parity_spikes_and_logits(case):
    name, graph, goldens = case
    for ev, g64, _ in goldens:
        rates = [float(g64["spikes"][n].mean()) for n in g64["layers"]]
        assert max(rates) > 0.01, f"{name}: the reference barely fires ({rates}); the test would be vacuous"
        mism, rel, step_rel, _ = compare_float64(graph, g64, ev)
        assert all(v == 0 for v in mism.values()), f"{name}: spike mismatches {mism}"
        assert rel < 1e-9 and step_rel < 1e-9, f"{name}: logits relative error {rel}, per step {step_rel}"

def test_float32_teacher_forced_agreement(case):
    name, graph, goldens = case
    for ev, _, g32 in goldens:
        res = teacher_forced_float32(graph, g32, ev)
        for layer, (agree, far_mism) in res.items():
            assert agree >= 0.999, f"{name}/{layer}: float32 agreement {agree:.5f}"
            assert far_mism == 0, f"{name}/{layer}: {far_mism} flips where |H - vth| > 1e-4"

def test_float32_end_to_end(case):
    name, graph, goldens = case
    for ev, g64, g32 in goldens:
        err, ref_err, bound, argmax_ok = end_to_end_float32(graph, g64, g32, ev)
        assert argmax_ok, f"{name}: float32 prediction differs from the float64 reference"
        assert err <= bound, f"{name}: float32 logits off by {err:.2e} (PyTorch float32: {ref_err:.2e})"

def test_ac_counters_equal_count_from_reference_spike_maps(case):
    name, graph, goldens = case
    ev, g64, _ = goldens[0]
    sess = Session(graph, "float64")
    sess.run_clip(ev)
    measured = {r["name"]: r["acs"] for r in sess.report().rows()}
    expected = independent_acs(graph, g64, ev, sess)
    assert expected, "no synaptic op was counted"
    for op, n in expected.items():
        assert measured[op] == n, f"{name}/{op}: evrt counted {measured[op]} ACs, reference spike maps give {n}"
