"""Clip mode cut into stages on several threads (evrt/stages.py): bit-identical to one thread on every zoo
model, the cut, the hand-over of values and spike lists, errors in a stage, and when it is (not) used."""
from __future__ import annotations

import itertools
import threading
from pathlib import Path

import numpy as np
import pytest

from evrt import stages as S
from evrt.engine import Session
from evrt.errors import GraphError
from evrt.events import make_events

from conftest import in_threads

ROOT = Path(__file__).resolve().parents[1]
ZOO = sorted(p.parent.name for p in (ROOT / "models").glob("*/model.evrt"))


def _sample(sess, seed, n=6000, outside=0):
    """Random events over the model's sensor (and `outside` events beyond it, which the input op drops)."""
    rng = np.random.default_rng(seed)
    w, h = (sess.meta.get("frame") or {}).get("sensor_size") or sess.meta.get("sensor_size") or (34, 34)
    x = rng.integers(0, w, n)
    y = rng.integers(0, h, n)
    x[:outside] = w + 3
    return make_events(np.sort(rng.integers(0, 300_000, n)), x, y, rng.integers(0, 2, n))


def _clip_record(sess, ev):
    sess.reset_counters()
    r = sess.run_clip(ev)
    rows = [(c.name, c.acs, c.macs, c.spikes, c.in_nonzero) for c in sess.report().layers]
    return r.step_logits, r.acs, r.macs, rows, sess.dropped_events


def _same(a, b):
    assert np.array_equal(a[0], b[0])
    assert a[1:] == b[1:]


# ------------------------------------------------------------------------------------------- the cut

@pytest.mark.parametrize("seed", range(20))
def test_balance_is_the_best_contiguous_cut(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 9)), int(rng.integers(1, 5))
    costs = rng.random(n).round(2).tolist()
    cuts = S.balance(costs, k)
    parts = min(k, n)
    assert cuts[0] == 0 and cuts[-1] == n and len(cuts) == parts + 1
    assert all(a < b for a, b in zip(cuts, cuts[1:]))          # no empty stage
    worst = max(sum(costs[a:b]) for a, b in zip(cuts, cuts[1:]))
    best = min(max(sum(costs[a:b]) for a, b in zip((0,) + c, c + (n,)))
               for c in itertools.combinations(range(1, n), parts - 1))
    assert worst == pytest.approx(best)


def test_plan_hands_on_what_later_stages_read():
    sess = Session(ROOT / "models" / "spikformer-synth-gesture" / "model.evrt", threads=1)
    plan = sess.plan_stages(3)
    stage_of = {i.name: s for s, ops in enumerate(plan.stages) for i in ops}
    stage_of["events"] = -1
    assert [i.name for ops in plan.stages for i in ops] == [i.name for i in sess.impls]
    for s, ops in enumerate(plan.stages[1:], 1):
        for impl in ops:
            for src in impl.op.inputs:   # every value read across a cut arrives with the step
                if stage_of[src] < s:
                    assert src in plan.sends[s - 1], (impl.name, src)
    assert all(stage_of[n] <= s for s, names in enumerate(plan.sends) for n in names)


# ------------------------------------------------------------------------------------------- results

@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_staged_bit_identical(name):
    """Logits of every step, ACs/MACs, every layer's counters and dropped events: one thread step after
    step against 2 and 3 stages (uniform cut, so spike lists cross stages) and against the measured plan."""
    path = ROOT / "models" / name / "model.evrt"
    one = Session(path, threads=1, stages=1)
    # events beyond the sensor, which the input op drops and counts (a resized clip refuses them instead)
    outside = 0 if (one.meta.get("frame") or {}).get("resize") else 5
    samples = [_sample(one, seed, outside=outside) for seed in (1, 2)]
    want = [_clip_record(one, ev) for ev in samples]
    assert want[0][4] == outside        # the drop is counted, and must match when staged
    for k in (2, 3):
        sess = Session(path, threads=1, stages=k)
        sess.plan_stages(k)
        for ev, w in zip(samples, want):
            _same(_clip_record(sess, ev), w)
    auto = Session(path, threads=2)   # stages = threads: two one-thread clips plan it, then staged
    for ev, w in zip(samples * 2, want * 2):
        _same(_clip_record(auto, ev), w)
    assert auto.stage_plan is not None and auto.stage_plan.staged_clips >= 1


def test_int8_staged_bit_identical():
    path = ROOT / "models" / "sdt-synth-gesture" / "model.evrt"
    one = Session(path, precision="int8", threads=1, stages=1)
    ev = _sample(one, 3)
    sess = Session(path, precision="int8", threads=1, stages=2)
    sess.plan_stages(2)
    _same(_clip_record(sess, ev), _clip_record(one, ev))


def test_spike_lists_across_stages_are_restored():
    sess = Session(ROOT / "models" / "sdt-synth-gesture" / "model.evrt", threads=1, stages=4)
    plan = sess.plan_stages(4)
    crossing = {i.name: i.source for i in plan.crossing_lists}
    assert crossing, "this cut should split a neuron from the conv it lists spikes for"
    ev = _sample(sess, 4)
    staged = sess.run_clip(ev)
    assert {i.name: i.source for i in plan.crossing_lists} == crossing   # links back for step mode
    sess.stages = 1
    assert np.array_equal(sess.run_clip(ev).step_logits, staged.step_logits)


# ------------------------------------------------------------------------------------------- failures

@pytest.mark.parametrize("stage", [0, 1])
def test_error_in_a_stage_is_raised_and_nothing_hangs(stage, monkeypatch):
    sess = Session(ROOT / "models" / "rtformer-synth-gesture" / "model.evrt", threads=1, stages=2)
    plan = sess.plan_stages(2)
    victim = plan.stages[stage][-1]
    run, calls = victim.run, []

    def failing(inputs, ctx):
        calls.append(ctx.t)
        if ctx.t == 3:
            raise RuntimeError("boom in " + victim.name)
        return run(inputs, ctx)

    monkeypatch.setattr(victim, "run", failing)
    ev = _sample(sess, 5)
    before = threading.active_count()
    with pytest.raises(RuntimeError, match="boom in"):
        sess.run_clip(ev)
    monkeypatch.setattr(victim, "run", run)
    good = sess.run_clip(ev)            # the session and its stage threads still work
    one = Session(ROOT / "models" / "rtformer-synth-gesture" / "model.evrt", threads=1, stages=1)
    assert np.array_equal(good.step_logits, one.run_clip(ev).step_logits)
    assert threading.active_count() <= before + 1


# ------------------------------------------------------------------------------------------- when

def test_when_clips_are_staged():
    path = ROOT / "models" / "sdt-synth-gesture" / "model.evrt"
    sess = Session(path, threads=1)
    assert sess._stage_count(16) == 1                  # one thread: one stage
    sess = Session(path, threads=1, stages=2)
    assert sess._stage_count(16) == 2 and sess._stage_count(1) == 1
    sess.trace = True
    assert sess._stage_count(16) == 1                  # traces are recorded step after step
    sess.trace = False
    sess.profile = True
    assert sess._stage_count(16) == 1
    for bad in (0, -2, 1.5, True, "2"):
        with pytest.raises(GraphError, match="stages"):
            Session(path, stages=bad)
    with pytest.raises(GraphError, match="costs"):
        Session(path, stages=2).plan_stages(2, costs=[1.0])


def test_first_two_clips_plan_then_stage():
    sess = Session(ROOT / "models" / "sdt-synth-gesture" / "model.evrt", threads=1, stages=2)
    ev = _sample(sess, 6)
    sess.run_clip(ev)
    assert sess.stage_plan is None                     # one timed clip: compiling may be in it
    sess.run_clip(ev)
    plan = sess.stage_plan
    assert plan is not None and plan.k == 2 and plan.staged_clips == 0 and len(plan.costs) == len(sess.impls)
    sess.run_clip(ev)                                  # staged, then re-cut once by the staged times
    assert plan.staged_clips == 1 and sess.stage_plan.refined
    assert S.QUEUE_STEPS >= 1


def test_sessions_staging_at_once_from_two_threads():
    """Each session has its own stage threads: two sessions in two Python threads, 3 stages each, give the
    one-thread results and finish."""
    path = ROOT / "models" / "sdt-synth-gesture" / "model.evrt"
    one = Session(path, threads=1, stages=1)
    ev = _sample(one, 7)
    want = one.run_clip(ev).step_logits

    def run(i):
        sess = Session(path, stages=3)
        sess.plan_stages(3)
        return [sess.run_clip(ev).step_logits for _ in range(3)]

    got = in_threads(run)
    assert all(np.array_equal(r, want) for res in got for r in res)
