"""The benchmark's analysis and rendering (tools/bench_report.py): the needed-rate solver, the by-kind
profile split, and the report rendered from a small raw-results file (no timing here)."""
import json
import math

from tools.bench_report import main as render, rate_needed, synaptic_time, time_by_group


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
    assert g == {"synaptic (conv2d)": 0.5, "synaptic (linear)": 0.25, "neurons": 0.125,
                 "attention products": 0.0625, "other (routing: add, reshape, mask, sums)": 0.03125}
    # the groups come from the ops' declared kinds: every converted-model op lands in a real group
    r = dict(profile=[("d", 1.0), ("q", 2.0), ("s", 4.0), ("m", 8.0)],
             op_types=dict(d="dif", q="tprod_qk", s="scaled_add", m="maxpool_delta"))
    assert time_by_group(r) == {"neurons": 1.0, "attention products": 2.0, "synaptic (scaled_add)": 4.0,
                                "pooling": 8.0}


def test_report_renders_from_raw_results_alone(tmp_path):
    """A one-model cut of the shipped raw results renders to Markdown + CSV without measuring anything."""
    from pathlib import Path
    raw = json.loads((Path(__file__).resolve().parents[1] / "docs" / "bench" / "results.json").read_text())
    model = "zoo:sdt-synth-gesture"
    raw["results"] = [r for r in raw["results"] if r.get("model") == model and r.get("threads") == 1]
    raw["models"] = {model: raw["models"][model]}
    raw["meta"].pop("compare", None)
    raw.pop("upstream", None)          # the upstream-code section: tests/test_bench_upstream.py
    src = tmp_path / "results.json"
    src.write_text(json.dumps(raw))
    assert render([str(src), "--out", str(tmp_path / "B.md")]) == 0
    md = (tmp_path / "B.md").read_text()
    assert model in md and "Where evrt's time goes" in md and "sdt-gesture" not in md
    rows = (tmp_path / "bench" / "timings.csv").read_text().splitlines()
    assert len(rows) == 1 + len(raw["results"]) and rows[1].startswith(model)
