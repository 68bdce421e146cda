"""Clip mode on several cores: the graph cut into consecutive stages, one Python thread each, the clip's
steps flowing through them (docs/INTERNALS.md "Stages").

While the second stage runs step t, the first already runs step t+1. Every op belongs to exactly one
stage and sees the clip's steps in order with its own state, as in a one-thread run; each stage runs the
serial kernels (kernels.threads.serial_here). So every output element, spike and count is computed by
the same code on the same inputs as with one thread: results are bit-identical to it
(tests/test_stages.py). The kernels release the GIL (`nogil`), so the stages' kernels overlap; only the
ops' Python glue takes turns.

What passes between stages is a copy of every value a later stage reads: an op writes each step into the
same buffer, which its stage overwrites at the next step. The queues hold at most QUEUE_STEPS steps, so
memory stays bounded whatever the clip length. A neuron that hands its spike list to a consumer in
another stage does not do so while staged (the list is rewritten at its next step); the consumer scans
the copied map instead, which gives the same result (tests/test_stages.py; the scan and the list agree
bit for bit: tests/test_spike_lists.py).

The cut balances the stages by the ops' measured times: first as two clips run on one thread, then once
more as the first staged clip ran them (an op can run slower beside another stage than alone: the two
cores share the last-level cache and the memory bus, and the ops' Python glue takes turns).
"""
from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter

import numpy as np

from .kernels.threads import serial_here

QUEUE_STEPS = 2


def balance(costs, k: int) -> list[int]:
    """Cut points [0, c1, ..., n]: `costs` (one per op, in graph order) in k contiguous non-empty parts
    whose largest sum is the smallest possible (exact dynamic programme; n is at most a few hundred)."""
    n = len(costs)
    k = max(1, min(int(k), n))
    pre = np.concatenate([[0.0], np.cumsum(np.asarray(costs, dtype=np.float64))])
    inf = float("inf")
    best = [[inf] * (n + 1) for _ in range(k + 1)]   # best[j][i]: first i ops in j parts
    cut = [[0] * (n + 1) for _ in range(k + 1)]
    best[0][0] = 0.0
    for j in range(1, k + 1):
        for i in range(j, n - (k - j) + 1):
            for c in range(j - 1, i):
                v = max(best[j - 1][c], pre[i] - pre[c])
                if v < best[j][i]:
                    best[j][i], cut[j][i] = v, c
    cuts = [n]
    for j in range(k, 0, -1):
        cuts.append(cut[j][cuts[-1]])
    return cuts[::-1]


class StagePlan:
    """Which ops each stage runs and which values it hands on."""

    def __init__(self, impls: list, output: str, cuts: list[int], costs=None, requested: int | None = None):
        self.cuts = list(cuts)
        self.requested = requested if requested is not None else len(cuts) - 1
        self.costs = costs
        self.stages = [impls[a:b] for a, b in zip(self.cuts, self.cuts[1:])]
        stage_of = {"events": -1}
        for s, ops in enumerate(self.stages):
            for impl in ops:
                stage_of[impl.name] = s
        k = len(self.stages)
        # reads[s]: values stage s takes from before it (the step's events included)
        reads = [{n for impl in ops for n in impl.op.inputs if stage_of[n] < s} for s, ops in enumerate(self.stages)]
        if stage_of[output] < k - 1:
            reads[-1].add(output)
        # sends[s]: what stage s hands to stage s+1 (everything a later stage reads from stage <= s)
        self.sends = []
        for s in range(k - 1):
            later = set().union(*reads[s + 1:])
            self.sends.append(sorted(n for n in later if stage_of[n] <= s))
        self.made_here = [{impl.name for impl in ops} for ops in self.stages]
        self.staged_costs = np.zeros(len(impls))
        self.staged_clips = 0
        self.refined = False
        # spike-list links whose neuron and consumer sit in different stages
        self.crossing_lists = [impl for ops in self.stages for impl in ops
                               if getattr(impl, "source", None) is not None
                               and stage_of[impl.source.name] != stage_of[impl.name]]

    @classmethod
    def cut(cls, session, costs, k: int, refined: bool = False) -> "StagePlan":
        """The session's ops cut into k stages balanced by `costs` (one per op)."""
        plan = cls(session.impls, session.output, balance(costs, k), costs, k)
        plan.refined = refined
        return plan

    @property
    def k(self) -> int:
        return len(self.stages)

    def describe(self) -> str:
        parts = []
        for ops, a in zip(self.stages, self.cuts):
            share = ""
            if self.costs is not None:
                share = f" ({sum(self.costs[a:a + len(ops)]) / max(sum(self.costs), 1e-12):.0%})"
            parts.append(f"{ops[0].name}..{ops[-1].name}{share}")
        return " / ".join(parts)


def op_costs(session, steps: list) -> tuple[list[float], tuple]:
    """Seconds per op over one clip run sequentially on one thread (the serial kernels the stages will
    run), and that run's result (Session._run_sequential's)."""
    saved_profile, saved = session.profile, dict(session.op_seconds)
    session.profile = True
    for name in session.op_seconds:
        session.op_seconds[name] = 0.0
    try:
        with serial_here():
            result = session._run_sequential(steps)
        return [session.op_seconds[i.name] for i in session.impls], result
    finally:
        session.profile = saved_profile
        session.op_seconds.update(saved)


def _executor(session, workers: int) -> ThreadPoolExecutor:
    """The session's own threads for stages 1..k-1. Not shared between sessions: two sessions staging
    clips at once from different threads could otherwise fill a shared pool with stages that wait for
    their next stage, which would then have no thread to run on."""
    ex = getattr(session, "_stage_threads", None)
    if ex is None or ex._max_workers != workers:
        if ex is not None:
            ex.shutdown(wait=False)
        ex = session._stage_threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="evrt-stage")
    return ex


class _Abort(Exception):
    pass


def _put(q: queue.Queue, item, abort: threading.Event) -> None:
    while True:
        if abort.is_set():
            raise _Abort
        try:
            q.put(item, timeout=0.05)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, abort: threading.Event):
    while True:
        if abort.is_set():
            raise _Abort
        try:
            return q.get(timeout=0.05)
        except queue.Empty:
            continue


def run_clip(session, steps: list, k: int, make_ctx) -> tuple[list, list, list]:
    """One clip from the session's current state on k stages: per step (logits, ACs, MACs). Until the
    session has a plan for k stages, the clip runs sequentially on one thread with its ops timed; the
    second such clip cuts the stages by the smaller of each op's two times (the first may include
    compiling). The first staged clip then times the ops beside each other and the cut is redone once
    from those times."""
    plan = session.stage_plan
    if plan is None or plan.requested != k:
        costs, result = op_costs(session, steps)
        first = session._stage_costs
        if first is None:
            session._stage_costs = costs
        else:
            session.stage_plan = StagePlan.cut(session, [min(a, b) for a, b in zip(costs, first)], k)
            session._stage_costs = None
        return result
    result = run_staged(session, plan, steps, make_ctx)
    if plan.staged_clips == 1 and not plan.refined:
        session.stage_plan = StagePlan.cut(session, plan.staged_costs, k, refined=True)
    return result


def run_staged(session, plan: StagePlan, steps: list, make_ctx) -> tuple[list, list, list]:
    """The clip's steps through the stages from the session's current state. Returns per step
    (logits float64, ACs, MACs); the session's per-layer counters are added to as in a sequential run.
    `make_ctx()` gives each stage its own per-step context (its own step index)."""
    k, T = plan.k, len(steps)
    qs = [queue.Queue(maxsize=QUEUE_STEPS) for _ in range(k - 1)]
    abort = threading.Event()
    acs = np.zeros((k, T), np.int64)
    macs = np.zeros((k, T), np.int64)
    logits: list = [None] * T
    ctxs = [make_ctx() for _ in range(k)]
    layers = session._totals.layers
    output = session.output
    spent = plan.staged_costs   # each op's time while staged (a re-plan balances these)

    def stage(s: int) -> None:
        ops, ctx, first = plan.stages[s], ctxs[s], plan.cuts[s]
        sends = plan.sends[s] if s < k - 1 else ()
        made = plan.made_here[s]
        try:
            with serial_here():
                for t in range(T):
                    values = {"events": steps[t]} if s == 0 else _get(qs[s - 1], abort)
                    ctx.t = t
                    a = m = 0
                    for j, impl in enumerate(ops, first):
                        st = impl.stats
                        st.acs = st.macs = st.spikes = st.in_nonzero = 0
                        t0 = perf_counter()
                        values[impl.name] = impl.run([values[n] for n in impl.op.inputs], ctx)
                        spent[j] += perf_counter() - t0
                        layers[impl.name].add(st)
                        a += st.acs
                        m += st.macs
                    acs[s, t], macs[s, t] = a, m
                    if s < k - 1:
                        _put(qs[s], {n: (np.array(values[n]) if n in made else values[n]) for n in sends}, abort)
                    else:
                        logits[t] = np.array(values[output], dtype=np.float64).reshape(-1)
        except _Abort:
            return
        except BaseException:
            abort.set()
            raise

    for impl in plan.crossing_lists:
        impl._staged_source, impl.source = impl.source, None
    try:
        futs = [_executor(session, k - 1).submit(stage, s) for s in range(1, k)]
        errors = []
        try:
            stage(0)
        except BaseException as e:   # KeyboardInterrupt included: stop the other stages first
            errors.append(e)
        for f in futs:
            try:
                f.result()
            except BaseException as e:
                errors.append(e)
        if errors:
            raise errors[0]
    finally:
        for impl in plan.crossing_lists:
            impl.source = impl._staged_source
    plan.staged_clips += 1
    session._totals.steps += T
    session.ctx.dropped_events += sum(c.dropped_events for c in ctxs)
    return logits, acs.sum(axis=0).tolist(), macs.sum(axis=0).tolist()
