"""Clip-mode evaluation spread over worker processes (`evrt eval --workers N`).

Each worker loads the model once — a mapped float32 file shares its pages between the workers — opens
the dataset itself and runs with one numba thread, so N workers use N cores without oversubscribing.
Workers are forked from the parent after its warm-up, so they start with numba and the compiled kernels
already in memory (milliseconds, where a fresh interpreter spends about a second importing and loading
the kernel cache) — unless a numba thread pool is already running in the parent (a parallel kernel has
run), which a fork cannot safely copy: then they are spawned as fresh interpreters. The
parent sends sample indices, one per task, and gets back per sample exactly what the serial loop
computes: the clip's logits, ACs/MACs and the per-layer counters. It scores them in index order, so
predictions, the confusion matrix and the counters' report are identical to `--workers 1`.

A sample whose reading or run fails raises its error in the parent, named by index; a worker that dies
(killed, out of memory) ends the evaluation with one line; Ctrl-C stops the workers.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

from .errors import EvrtError

# libraries that would each start a thread per core in every worker
THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cores() -> int:
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:   # not Linux
        return max(os.cpu_count() or 1, 1)


@dataclass(frozen=True)
class EvalJob:
    """What a worker needs to produce sample i on its own: the model and the dataset, as paths."""
    model: str
    precision: str
    dataset: str
    root: str
    split: str
    order: str
    fit: str


def open_job(job: EvalJob, sess):
    """The dataset and the sensor-fit plan (None when the recording's sensor is the model's)."""
    from .datasets import open_dataset
    from .geometry import model_sensor, plan_fit

    ds = open_dataset(job.dataset, job.root, job.split, order=job.order)
    target = model_sensor(sess.meta)
    plan = plan_fit(ds.sensor_size, target, job.fit) if target else None
    return ds, (None if plan is not None and plan.identity else plan)


def read_sample(ds, plan, i):
    """Sample i as (events for the model, label, name, events before the fit, events dropped)."""
    s = ds[i]
    ev, dropped = s.events, 0
    n = len(ev)
    if plan is not None:
        ev, dropped = plan.apply(ev)
    return ev, s.label, s.name, n, dropped


# --------------------------------------------------------------------------------------- the worker
_state: dict = {}


def _init(job: EvalJob) -> None:
    for var in THREAD_VARS:   # read when numba/numpy are imported: a spawned worker has not yet
        os.environ[var] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent handles Ctrl-C and stops us
    from . import kernels
    threads = getattr(kernels, "threads", None)
    if threads is not None and hasattr(threads, "set_threads"):
        threads.set_threads(1)
    from .engine import Session
    from .evaluate import warm_up

    sess = Session(job.model, precision=job.precision, mode="clip")
    warm_up(sess)
    _state.update(sess=sess, data=open_job(job, sess))


def _run(i: int) -> dict:
    sess = _state["sess"]
    ev, label, name, n_events, dropped = read_sample(*_state["data"], i)
    sess.reset_counters()
    t0 = time.perf_counter()
    res = sess.run_clip(ev)
    dt = time.perf_counter() - t0
    return {"index": i, "label": label, "name": name, "events": int(len(ev)), "read_events": n_events,
            "dropped": dropped, "logits": res.logits, "step_logits": res.step_logits, "acs": res.acs,
            "macs": res.macs, "counts": sess.counts(), "compute_s": dt}


# --------------------------------------------------------------------------------------- the parent
def evaluate_workers(session, job, n: int, workers: int, progress: bool = True, *, classes=None,
                     output_map=None, on_sample=None) -> EvalResult:
    """`evaluate` of samples 0..n-1 of ``job`` (an evrt.parallel.EvalJob) on ``workers`` processes, with
    results identical to the serial loop: the same per-sample logits, scored in index order, and every
    worker's counters added to ``session``'s (so ``session.report()`` covers all samples).
    on_sample(result dict) sees each worker result in order (e.g. to sum fit statistics)."""
    from .engine import ClipResult
    from .evaluate import _Scores, warm_up
    from .progress import Progress

    classes = list(classes if classes is not None else session.classes)
    scores = _Scores(classes, output_map)
    warmup_s = warm_up(session)    # fills the numba cache once, so the workers load instead of compile
    compute = [0.0]
    t0 = time.perf_counter()
    with Progress(n, "eval", enabled=None if progress else False) as bar:
        def take(r):
            scores.check_label(r["index"], r["label"], r["name"])
            res = ClipResult(r["logits"], r["step_logits"], r["acs"], r["macs"])
            scores.add(r["index"], r["label"], r["name"], r["events"], res)
            session.add_counts(r["counts"])
            compute[0] += r["compute_s"]
            if on_sample is not None:
                on_sample(r)
            bar.update()
        run_parallel(job, n, workers, take)
    res = scores.result(time.perf_counter() - t0, compute[0], warmup_s)
    res.extra["workers"] = workers
    return res


def run_parallel(job: EvalJob, n: int, workers: int, on_result) -> None:
    """Run samples 0..n-1 on `workers` processes; call on_result(result) in index order."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context(start_method())
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init, initargs=(job,))
    try:
        futures = [pool.submit(_run, i) for i in range(n)]
        for i, fut in enumerate(futures):   # in index order; later samples run meanwhile
            try:
                res = fut.result()
            except BrokenProcessPool:
                raise EvrtError(f"a worker process died while evaluating sample {i} (killed or out of "
                                f"memory?); rerun with --workers 1 to see the sample's own error") from None
            except EvrtError as exc:
                raise EvrtError(f"sample {i}: {exc}") from None
            except (MemoryError, ValueError, OSError, IndexError, KeyError) as exc:
                raise EvrtError(f"sample {i}: {type(exc).__name__}: {exc}") from None
            on_result(res)
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown(wait=True)


def start_method() -> str:
    """fork when it is available and safe (no numba thread pool started in this process), else spawn."""
    import multiprocessing as mp
    if "fork" not in mp.get_all_start_methods():
        return "spawn"
    try:
        from numba.np.ufunc import parallel
    except ImportError:
        return "spawn"
    return "spawn" if getattr(parallel, "_is_initialized", True) else "fork"


def _stop(pool) -> None:
    """Cancel what is queued and end the workers now (an interrupted or failed evaluation)."""
    procs = list(getattr(pool, "_processes", {}).values())   # the executor has no public kill
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=5)
