"""The dense paths' matmuls on several cores without BLAS threads (docs/INTERNALS.md "Threads").

OpenBLAS's own threads spin (sched_yield) after each call while numba's OpenMP threads spin after
theirs: on two cores they took turns and a 2-thread Spikformer step became 60x slower. So BLAS stays
at one thread and a matmul's rows are cut into bands, one per thread, each band a 1-thread BLAS call
(numpy releases the GIL for it) on a small pool of Python threads that sleep when idle.

OpenBLAS computes each output element from its row of A and column of B with the same kernel and the
same blocking of the inner dimension whatever the number of rows it is given, once the band is not
tiny (its own threads split rows and columns the same way): bands start at multiples of 64 rows and
hold at least ROWS_MIN rows and MNK_MIN multiply-adds, sizes far above any small-matrix or
matrix-vector shortcut. tests/test_threads.py checks the bands against one call bit for bit.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .threads import get_threads

ROWS_MIN = 64
MNK_MIN = 1 << 22          # ~0.1 ms of BLAS: a band must pay for its hand-over to a pool thread
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
    cuts = [0] + [(m * i // parts) // ROWS_MIN * ROWS_MIN for i in range(1, parts)] + [m]
    return cuts


def matmul(a, b, out, threads=None):
    """out (m, n) <- a (m, k) @ b (k, n), C-contiguous float arrays of one dtype; rows split between
    threads. Each band's result equals the same rows of one whole call, bit for bit."""
    n = get_threads() if threads is None else threads
    m = a.shape[0]
    cuts = row_bands(m, a.shape[1], b.shape[1], n)
    if len(cuts) == 2:
        np.matmul(a, b, out=out)
        return out
    ex = _executor(n - 1)
    futs = [ex.submit(np.matmul, a[cuts[i]:cuts[i + 1]], b, out=out[cuts[i]:cuts[i + 1]])
            for i in range(1, len(cuts) - 1)]
    np.matmul(a[:cuts[1]], b, out=out[:cuts[1]])
    for f in futs:
        f.result()
    return out
