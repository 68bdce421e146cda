"""Clip-mode evaluation spread over worker processes (`evrt eval --workers N`).

Each worker loads the model once — a mapped float32 file shares its pages between the workers — opens
the dataset itself and runs with one numba thread, so N workers use N cores without oversubscribing.
Workers are spawned (fresh interpreters), not forked: on the machine this was measured on, a process
that has forked runs numba kernels up to 40x slower from then on (a LIF step: 0.18 ms before the fork,
6.6-11.5 ms after it, in the parent and in every later child), while spawning leaves both sides at full
speed (docs/INTERNALS.md "Worker processes"; tools/bench_fork.py). With `--workers N` given, the workers are started before
the parent's warm-up: their interpreter start, the model and its kernels (an empty clip; from numba's
cache when it is warm, else compiled side by side with the parent) overlap it, and they take samples
once it is done. Workers take contiguous blocks of sample indices from a queue (a recording that holds many
samples is then decoded by one or two workers, not all) and send back, per sample, exactly what the
serial loop computes: the clip's logits, ACs/MACs and the per-layer counters. It scores them in index
order, so predictions, the confusion matrix and the counters' report are identical to `--workers 1`.

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


def _light_warm_up(sess) -> None:
    """Load the model's one-thread kernels for sparse input (compiling any the cache lacks) with one empty
    clip, then a fresh state and counters. The dense paths' kernels load at the first sample that takes
    them (milliseconds from the cache the parent filled): an every-pixel clip here would keep the worker
    busy past the parent's warm-up."""
    from .evaluate import run_tiny
    run_tiny(sess)
    sess.reset()
    sess.reset_counters()


def _init(job: EvalJob, warm: bool = True) -> None:
    for var in THREAD_VARS:   # read when numba/numpy are imported: a spawned worker has not yet
        os.environ[var] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent handles Ctrl-C and stops us
    one_blas_thread()                              # a forked worker has the parent's BLAS already
    try:                                           # the kernels' thread control, where this evrt has it
        from .kernels import threads
    except ImportError:
        threads = None
    if threads is not None and hasattr(threads, "set_threads"):
        threads.set_threads(1)
    from .engine import Session

    sess = Session(job.model, precision=job.precision, mode="clip")
    if warm:   # a spawned worker loads its kernels here; a forked one has the parent's, compiled and loaded
        _light_warm_up(sess)
    _state.update(sess=sess, data=open_job(job, sess))


def run_sample(sess, data, i: int) -> dict:
    """Sample i through ``sess`` (clip mode): everything the parent scores, and the counters it added."""
    ev, label, name, n_events, dropped = read_sample(*data, i)
    before = sess.counts()
    t0 = time.perf_counter()
    res = sess.run_clip(ev)
    dt = time.perf_counter() - t0
    steps, layers = sess.counts()
    counts = (steps - before[0], [tuple(a - b for a, b in zip(x, y)) for x, y in zip(layers, before[1])])
    return {"index": i, "label": label, "name": name, "events": int(len(ev)), "read_events": n_events,
            "dropped": dropped, "logits": res.logits, "step_logits": res.step_logits, "acs": res.acs,
            "macs": res.macs, "counts": counts, "compute_s": dt}


def _run(i: int) -> dict:
    return run_sample(_state["sess"], _state["data"], i)


def _describe(exc: BaseException) -> str:
    from .errors import EvrtError
    return str(exc) if isinstance(exc, EvrtError) else f"{type(exc).__name__}: {exc}"


def _worker(job: EvalJob, tasks, results, warm: bool = True, go=None) -> None:
    """Load the model (and, with warm, its kernels: a forked worker has the parent's), wait for `go` (the
    parent's warm-up is done), then take blocks (start, stop) of sample indices until None; put ("ok", i,
    result) per sample, or ("error", i, message) and stop (i = -1: the worker could not start)."""
    try:
        _init(job, warm)
        if go is not None:
            while not go.wait(0.5):
                if os.getppid() == 1:   # the parent is gone
                    return
    except BaseException as exc:  # noqa: BLE001  (reported to the parent, which decides)
        results.put(("error", -1, _describe(exc)))
        return
    while (block := tasks.get()) is not None:
        for i in range(*block):
            try:
                r = _run(i)
            except BaseException as exc:  # noqa: BLE001
                results.put(("error", i, _describe(exc)))
                return
            results.put(("ok", i, r))


def one_blas_thread() -> None:
    """Limit an already loaded OpenBLAS (numpy's) to one thread, best effort: the environment variables
    only act before numpy is imported, and a forked worker inherits the parent's numpy. Looks for the
    library among this process's mappings and calls its set_num_threads (numpy's wheels prefix and
    suffix the symbol: scipy_openblas_set_num_threads64_)."""
    import ctypes
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("openblas_set_num_threads", "scipy_openblas_set_num_threads64_",
                     "openblas_set_num_threads64_", "scipy_openblas_set_num_threads"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn(1)
                break


# --------------------------------------------------------------------------------------- the parent
# an evaluation whose samples would take less than this in one process is not worth starting workers
SERIAL_BELOW_S = 3.0


def evaluate_workers(session, job, n: int, workers: int, progress: bool = True, *, classes=None,
                     output_map=None, on_sample=None, data=None, adaptive: bool = False,
                     serial_threads: int | None = None) -> EvalResult:
    """`evaluate` of samples 0..n-1 of ``job`` (an evrt.parallel.EvalJob) on ``workers`` processes, with
    results identical to the serial loop: the same per-sample logits, scored in index order, and every
    worker's counters added to ``session``'s (so ``session.report()`` covers all samples).
    on_sample(result dict) sees each result in order (e.g. to sum fit statistics). data: the parent's
    (dataset, fit plan) when it has them open. adaptive: run sample 0 here first and keep going here when
    all n samples at its pace would take under SERIAL_BELOW_S (workers cost about a second to start), at
    `serial_threads` threads (a caller that held this process at the workers' one thread for the
    warm-up gives back the user's count here); ``extra["workers"]`` says how many ran. Without
    adaptive, the workers start before the warm-up."""
    from .engine import ClipResult
    from .evaluate import _Scores, warm_up
    from .progress import Progress

    classes = list(classes if classes is not None else session.classes)
    scores = _Scores(classes, output_map)
    pool = None if adaptive else Workers(job, workers)   # they start while this process warms up
    try:
        warmup_s = warm_up(session)    # fills the numba cache once, so the workers load instead of compile
    except BaseException:
        if pool is not None:
            pool.close()
        raise
    compute = [0.0]
    t0 = time.perf_counter()
    with Progress(n, "eval", enabled=None if progress else False) as bar:
        def take(r, local=False):
            scores.check_label(r["index"], r["label"], r["name"])
            res = ClipResult(r["logits"], r["step_logits"], r["acs"], r["macs"])
            scores.add(r["index"], r["label"], r["name"], r["events"], res)
            if not local:               # a sample run here is in session's counters already
                session.add_counts(r["counts"])
            compute[0] += r["compute_s"]
            if on_sample is not None:
                on_sample(r)
            bar.update()
        first = 0
        if adaptive:
            data = data if data is not None else open_job(job, session)
            s0 = time.perf_counter()
            take(run_sample(session, data, 0), local=True)
            first = 1
            if n * (time.perf_counter() - s0) < SERIAL_BELOW_S:
                workers = 1
                if serial_threads is not None:
                    from .kernels.threads import set_threads
                    set_threads(serial_threads)
                for i in range(1, n):
                    take(run_sample(session, data, i), local=True)
                first = n
        if first < n:
            with pool or Workers(job, workers) as running:
                running.run(n, take, first=first)
    res = scores.result(time.perf_counter() - t0, compute[0], warmup_s)
    res.extra["workers"] = workers
    return res


class Workers:
    """The worker processes of one evaluation. Started at construction (they import evrt and numba and
    then wait); `run` lets them go, hands out contiguous blocks of samples and calls on_result in index
    order; leaving the `with` block (or `close`) ends them."""

    def __init__(self, job: EvalJob, workers: int):
        import multiprocessing as mp
        method = start_method()
        ctx = mp.get_context(method)
        self.tasks, self.results, self.go = ctx.Queue(), ctx.Queue(), ctx.Event()
        self.workers = workers
        self.procs = [ctx.Process(target=_worker, args=(job, self.tasks, self.results, method != "fork", self.go),
                                  daemon=True) for _ in range(workers)]
        try:
            for p in self.procs:   # before the first put: that starts the queue's feeder thread, and a
                p.start()          # fork should copy a process without threads
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def run(self, n: int, on_result, block: int | None = None, first: int = 0) -> None:
        """Samples first..n-1, in the blocks that `blocks` cuts."""
        import queue
        self.go.set()
        for start, stop in blocks(first, n, self.workers, block):
            self.tasks.put((start, stop))
        for _ in self.procs:
            self.tasks.put(None)
        waiting, nxt = {}, first
        while nxt < n:
            try:
                kind, i, payload = self.results.get(timeout=0.25)
            except queue.Empty:
                _check_alive(self.procs, nxt)
                continue
            if kind == "error":
                raise EvrtError(f"a worker could not start: {payload}" if i < 0 else f"sample {i}: {payload}")
            waiting[i] = payload
            while nxt in waiting:
                on_result(waiting.pop(nxt))
                nxt += 1

    def close(self) -> None:
        _stop(self.procs)
        self.tasks.close()
        self.results.close()


def blocks(first: int, n: int, workers: int, block: int | None = None) -> list[tuple[int, int]]:
    """Contiguous (start, stop) blocks of first..n-1: `block` samples each, or by default each block a
    quarter of what every worker would have left (at least one sample), so early blocks are long (a
    recording holding many samples is decoded by few workers) and the last ones short (no worker is
    left with a long block while the others are done)."""
    out, start = [], first
    while start < n:
        size = block or max(1, -(-(n - start) // (4 * workers)))
        out.append((start, min(start + size, n)))
        start = out[-1][1]
    return out


def run_parallel(job: EvalJob, n: int, workers: int, on_result, block: int | None = None, first: int = 0) -> None:
    """Run samples first..n-1 on `workers` processes; call on_result(result) in index order as results
    arrive (Workers.run)."""
    with Workers(job, workers) as pool:
        pool.run(n, on_result, block, first)


def _check_alive(procs, nxt: int) -> None:
    """A worker that ended without reporting (killed, out of memory, a crash in native code) would leave
    its samples unanswered: end the evaluation with one line instead of waiting."""
    for p in procs:
        if p.exitcode is not None and p.exitcode != 0:
            how = f"signal {-p.exitcode}" if p.exitcode < 0 else f"exit code {p.exitcode}"
            raise EvrtError(f"a worker process died ({how}) with sample {nxt} or a later one unanswered "
                            f"(killed or out of memory?); rerun with --workers 1 to see the sample's own error")
    if all(p.exitcode == 0 for p in procs):
        raise EvrtError(f"the workers ended with sample {nxt} unanswered")


def start_method() -> str:
    """spawn: see the module's docstring (a forking process and its later children run numba kernels
    far slower here; fork is also unsafe once numba's thread pool runs). Tests patch this to "fork"."""
    return "spawn"


def _stop(procs) -> None:
    """End the workers: a finished worker has exited already; after an error or Ctrl-C the rest are
    terminated (they ignore SIGINT) and reaped."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        if p.pid is not None:
            p.join(timeout=5)
