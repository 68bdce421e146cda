"""The dense paths' matmuls on several cores without BLAS threads (docs/INTERNALS.md "Threads").

OpenBLAS's own threads spin (sched_yield) after each call while numba's OpenMP threads spin after
theirs: on two cores they took turns and a 2-thread Spikformer step became 60x slower. So BLAS stays
at one thread and a matmul's rows (or columns) are cut into bands, one per thread, each band a 1-thread BLAS call
(numpy releases the GIL for it) on a small pool of Python threads that sleep when idle.

OpenBLAS computes each output element from its row of A and column of B with the same kernel and the
same blocking of the inner dimension whatever the number of rows it is given, once the band is not
tiny (its own threads split rows and columns the same way): bands start at multiples of 64 rows (or,
for products of few rows such as token maps, 64 columns of B) and hold at least 64 of them and MNK_MIN
multiply-adds, sizes far above any small-matrix or matrix-vector shortcut. tests/test_threads.py checks the bands against one call bit for bit.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .threads import get_threads

ROWS_MIN = 64
COLS_MIN = 64
MNK_MIN = 1 << 23          # ~0.2 ms of BLAS: a band must pay for its hand-over to a pool thread
_pool: dict = {}


def _executor(workers):
    ex = _pool.get(workers)
    if ex is None:
        _pool.clear()
        ex = _pool[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="evrt-matmul")
    return ex


def row_bands(m, k, n, threads):
    """Row cuts [0, ..., m] for an (m, k) @ (k, n) product on `threads` threads (one band: no split)."""
    per = max(ROWS_MIN, -(-MNK_MIN // max(1, k * n)))
    parts = max(1, min(threads, m // per))
    if parts == 1:
        return [0, m]
    return [0] + [(m * i // parts) // ROWS_MIN * ROWS_MIN for i in range(1, parts)] + [m]


def col_bands(m, k, n, threads):
    """Column cuts [0, ..., n] (multiples of 64) for products with too few rows to split (token maps)."""
    per = max(COLS_MIN, -(-MNK_MIN // max(1, m * k)))
    parts = max(1, min(threads, n // per))
    if parts == 1:
        return [0, n]
    return [0] + [(n * i // parts) // COLS_MIN * COLS_MIN for i in range(1, parts)] + [n]


def _run(jobs):
    """Run (a, b, out) matmuls: the first on this thread, the others on the pool."""
    ex = _executor(len(jobs) - 1)
    futs = [ex.submit(np.matmul, a, b, out=o) for a, b, o in jobs[1:]]
    a, b, o = jobs[0]
    np.matmul(a, b, out=o)
    for f in futs:
        f.result()


def matmul(a, b, out, threads=None):
    """out (m, n) <- a (m, k) @ b (k, n), float arrays of one dtype; a's rows (or, for few rows, b's
    columns) split between threads. Each band's result equals the same part of one whole call, bit for bit."""
    n = get_threads() if threads is None else threads
    m, k = a.shape
    cuts = row_bands(m, k, b.shape[1], n) if n > 1 else [0, m]
    if len(cuts) > 2:
        _run([(a[c0:c1], b, out[c0:c1]) for c0, c1 in zip(cuts, cuts[1:])])
        return out
    cuts = col_bands(m, k, b.shape[1], n) if n > 1 else [0, b.shape[1]]
    if len(cuts) > 2:
        _run([(a, b[:, c0:c1], out[:, c0:c1]) for c0, c1 in zip(cuts, cuts[1:])])
        return out
    np.matmul(a, b, out=out)
    return out
