"""tools/bench.py's analysis: the needed-rate solver and the by-kind profile split (no timing here)."""
import math

from tools.bench import rate_needed, synaptic_time, time_by_group


def fake_result():
    # two synaptic layers: one cheap as events (1 G ACs vs 10 G dense), one cheap dense (8 G ACs vs 9 G)
    return dict(rates=dict(gemm_mac_per_s=30e9),
                layers=[dict(acs=1e9, macs=0, dense=10e9), dict(acs=8e9, macs=0, dense=9e9),
                        dict(acs=0, macs=0, dense=0)])


def test_synaptic_time_takes_the_faster_path_per_layer():
    r = fake_result()
    # at 10 G acc/s: layer 1 events 0.1 s (< 0.333 dense); layer 2 dense 0.3 s (< 0.8 events)
    assert math.isclose(synaptic_time(r, 10e9), 0.1 + 0.3)


def test_rate_needed_solves_the_budget():
    r = fake_result()
    rate = rate_needed(r, 0.35)
    assert math.isclose(synaptic_time(r, rate), 0.35, rel_tol=1e-6)
    assert synaptic_time(r, rate * 0.99) > 0.35
    assert rate_needed(r, 0.0) == math.inf and rate_needed(r, -1.0) == math.inf
    assert rate_needed(r, 10.0) == 1e8                   # any rate will do: the solver's floor


def test_time_by_group():
    r = dict(profile=[("c", 0.5), ("l", 0.25), ("n", 0.125), ("a", 0.0625), ("x", 0.03125)],
             op_types=dict(c="conv2d", l="linear", n="lif", a="ssa", x="add"))
    g = time_by_group(r)
    assert g == {"synaptic (conv)": 0.5, "synaptic (linear)": 0.25, "neurons": 0.125,
                 "attention products": 0.0625, "other (add, reshape, mean, mask)": 0.03125}
