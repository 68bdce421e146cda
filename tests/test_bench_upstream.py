"""tools/bench.py --upstream without the upstream checkouts: the interleaved schedule, the statistics,
the target verdicts and the rendered tables (from a made-up results file; nothing is timed here), and
the one-line errors for a wrong --upstream folder. The measurement itself needs the checkouts, which
are not shipped: it is a tool run (docs/BENCHMARKS.md, Method), not a test."""
import json
from pathlib import Path

import pytest

from tools import bench
from tools.bench_report import main as render, paired_ratios, upstream_verdicts
from tools.bench_upstream import UpstreamError, locate, rep_order, spread, summarize, within_spread


def test_rep_order_alternates_which_side_goes_first():
    assert rep_order(3) == [(0, "evrt"), (0, "torch"), (1, "torch"), (1, "evrt"), (2, "evrt"), (2, "torch")]
    order = rep_order(6)
    assert sum(1 for i in range(0, 12, 2) if order[i][1] == "evrt") == 3    # each side first half the time


def test_spread_and_within_spread():
    s = spread([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s["median"], s["min"], s["max"], s["q1"], s["q3"], s["n"]) == (3.0, 1.0, 5.0, 2.0, 4.0, 5)
    assert spread([1.0, 2.0])["median"] == 1.5
    assert within_spread(spread([2.9, 3.1, 3.0]), spread([2.0, 3.05, 4.0]))
    assert within_spread(spread([2.0, 3.05, 4.0]), spread([2.9, 3.1, 3.0]))      # symmetric
    assert not within_spread(spread([5.0, 5.2, 5.1]), spread([2.0, 3.0, 4.0]))


def _reps(framing, compute, steps):
    return [dict(framing_s=[f, f], compute_s=[c, c], step_s=list(st)) for f, c, st in zip(framing, compute, steps)]


def test_summarize_per_rep_means_and_pooled_percentiles():
    reps = _reps([0.01, 0.02, 0.03], [0.1, 0.3, 0.2], [range(1, 101)] * 3)
    s = summarize(reps)
    assert s["framing_s"]["median"] == pytest.approx(0.02)
    assert s["compute_s"]["median"] == pytest.approx(0.2) and s["compute_s"]["max"] == pytest.approx(0.3)
    assert s["total_s"]["median"] == pytest.approx(0.23)    # per-rep totals 0.11, 0.32, 0.23
    assert s["steps"] == 300 and s["step_p50_s"] == pytest.approx(50.5) and s["step_p99_s"] == pytest.approx(99.01)


def _side(framing, compute, steps, threads, **extra):
    reps = _reps(framing, compute, steps)
    return dict(summarize(reps), raw=reps, threads=threads, peak_rss_mb=300.0, **extra)


def fake_upstream(speedups, p99_ratio):
    """Two models; PyTorch `speedups[setting]` times slower than evrt in every rep."""
    settings = {}
    for st, k in speedups.items():
        settings[st] = {}
        for name in ("a-model", "b-model"):
            e = _side([0.002] * 3, [0.1, 0.12, 0.11], [[0.01] * 50] * 3, 1, threads_api=False, probe_s={"1": 0.1},
                      counts=dict(acs=2.2e9, macs=0.0, dense_macs=1e10, firing_rate=0.1))
            t = _side([0.002 * k] * 3, [c * k for c in (0.1, 0.12, 0.11)], [[0.01 / p99_ratio] * 50] * 3,
                      2 if st == "whole" else 1, shims=[])
            settings[st][name] = dict(evrt=e, torch=t)
    check = {"float64": dict(max_abs_diff=0.0), "float32": dict(max_abs_diff=1e-7), "same": True}
    models = {n: dict(title=n, repo="someone/" + n, commit=None, shims=["timm (x)"], check=check)
              for n in ("a-model", "b-model")}
    return dict(params=dict(sample_events=340_000, sample_s=6.0, stream_rate=56_000, window_us=50_000, n_samples=2,
                            stream_s=2.0, reps=3), models=models, settings=settings, order="A B, B A",
                add_peak_acc_per_s=22e9)


def test_paired_ratios_and_verdicts():
    up = fake_upstream({"whole": 2.0, "one": 4.0}, p99_ratio=0.25)
    r = up["settings"]["one"]["a-model"]
    assert paired_ratios(r) == pytest.approx([4.0, 4.0, 4.0])
    v = {text.split(":")[0]: ok for text, ok, _ in upstream_verdicts(up)}
    assert v == {"the whole machine": False, "one thread each": True,
                 "streaming p99 step latency, the whole machine": True,
                 "streaming p99 step latency, one thread each": True}


def _results_file(tmp_path, up, compare=None):
    raw = json.loads((Path(__file__).resolve().parents[1] / "docs" / "bench" / "results.json").read_text())
    raw.update(results=[], models={}, upstream=up)
    raw["meta"].pop("compare", None)
    if compare:
        raw["meta"]["compare"] = compare
    src = tmp_path / "results.json"
    src.write_text(json.dumps(raw))
    return src


def test_report_renders_the_upstream_tables_and_the_rerun_check(tmp_path):
    before = fake_upstream({"whole": 2.0, "one": 4.0}, p99_ratio=0.5)
    old = _results_file(tmp_path, before)
    compare = bench.previous_timings(old)
    now = fake_upstream({"whole": 2.0, "one": 4.0}, p99_ratio=0.5)
    now["settings"]["one"]["b-model"]["torch"] = _side([0.1] * 3, [5.0] * 3, [[1.0] * 50] * 3, 1, shims=[])
    src = _results_file(tmp_path, now, compare)
    assert render([str(src), "--out", str(tmp_path / "B.md")]) == 0
    md = (tmp_path / "B.md").read_text()
    assert "### Per sample, the whole machine" in md and "### Per sample, one thread each" in md
    assert "- **not met** — the whole machine: evrt ≥ 3× faster" in md and "a-model 2.00× (reps 2.00–2.00)" in md
    assert "a loaded machine" not in md.split("### Targets")[1].split("###")[0]
    assert "- **not met** — streaming p99 step latency, the whole machine" in md
    assert "Stand-ins for imports" in md and "timm" in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| one | b-model | torch |")]
    assert len(rows) == 1 and rows[0].endswith("| **no** |")
    assert "7 of 8 within spread." in md
    assert "| a-model | 2.20 G | 1 | 20.00 | 91 % |" in md     # 2.2 G ACs / 0.11 s against 22 G adds/s
    assert "## Method: running the upstream comparison" in md


def test_upstream_folder_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(UpstreamError) as e:
        locate(tmp_path / "nowhere")
    assert "not a directory" in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "spikformer" / "cifar10dvs").mkdir(parents=True)
    (tmp_path / "spikformer" / "cifar10dvs" / "model.py").write_text("# stand-in\n")
    with pytest.raises(SystemExit) as e:
        bench.main(["--upstream", str(tmp_path), "--upstream-only"])
    msg = str(e.value)
    assert "\n" not in msg and "Spike-Driven-Transformer" in msg and "SpikingResformer" in msg
    assert "github.com/BICLab/Spike-Driven-Transformer" in msg and "spikformer/cifar10dvs" not in msg
    with pytest.raises(SystemExit) as e:
        bench.main(["--upstream-only"])
    assert "needs --upstream" in str(e.value)
    with pytest.raises(SystemExit) as e:
        bench.previous_timings(tmp_path / "spikformer" / "cifar10dvs" / "model.py")
    assert "not a tools/bench.py results.json" in str(e.value) and "\n" not in str(e.value)
