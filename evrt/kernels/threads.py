"""How many cores one stream's step may use (docs/INTERNALS.md "Threads").

`set_threads(n)` sets the process-wide count (None = every core this process may run on); `get_threads()`
reads it; the environment variable EVRT_THREADS gives the default (else every usable core; numba's
NUMBA_NUM_THREADS caps it). With n > 1 the kernels run their parallel variants: each
splits its OUTPUT elements between the threads (channel ranges, groups, rows, pixel tiles), and every
output element is accumulated by one thread in the serial kernel's order, so results, spikes and counts
are bit-identical to n = 1. BLAS (the dense paths' matmuls) gets the same count: OpenBLAS splits a matmul's
BLAS is kept at ONE thread: its spinning workers and numba's fought for the two cores (a 2-thread step
60x slower); the dense paths cut a matmul's rows between a small pool of sleeping Python threads
instead (kernels/matmul.py). numba's OpenMP workers sleep as soon as a parallel region ends
(GOMP_SPINCOUNT=0, set below unless the user set it), so a loaded machine or a BLAS call never finds
them burning a core.

numba's `workqueue` threading layer (its fallback when neither OpenMP nor TBB is available) aborts when
two Python threads enter parallel code at once; `region()` serialises the parallel steps of sessions
running in different Python threads in that case (the `omp` and `tbb` layers need no lock).
"""
from __future__ import annotations

import ctypes
import glob
import os
import threading
from contextlib import contextmanager

import numpy as np
from numba import njit

# Read once by libgomp when numba first loads its OpenMP layer: its workers sleep as soon as a parallel
# region ends instead of spinning (default ~300k spins). On the shared 2-core box, with other processes
# busy, spinning workers kept being preempted mid-spin and every fork-join then waited a scheduler slice:
# a 2-thread Spikformer clip took 3.3-3.9 s at 20k spins, 0.7-0.9 s at 2k, 0.42-0.51 s at 0, against
# 0.35-0.45 s on one thread (same minutes, load ~7). A user with a quiet machine may set it higher.
os.environ.setdefault("GOMP_SPINCOUNT", "0")

_state = {"n": None, "layer": None, "blas": None}
_lock = threading.RLock()
_here = threading.local()   # .n: a count for this Python thread only (serial_here)


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _from_env() -> int | None:
    text = os.environ.get("EVRT_THREADS", "").strip()
    if not text:
        return None
    if text.lower() in ("all", "0"):
        return usable_cores()
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"EVRT_THREADS={text!r}: expected a whole number >= 1 (or 'all')") from None
    if n < 1:
        raise ValueError(f"EVRT_THREADS={text!r}: expected a whole number >= 1 (or 'all')")
    return n


def _cap(n: int) -> int:
    import numba
    return max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))


def set_threads(n: int | None) -> int:
    """Threads for the kernels of every session in this process (None: all usable cores). Returns the
    count in effect (at most numba's NUMBA_NUM_THREADS)."""
    if n is None:
        n = usable_cores()
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"threads must be a whole number >= 1 or None (all cores), got {n!r}")
    n = _cap(n)
    _state["n"] = n
    _apply(n)
    return n


def get_threads() -> int:
    n = getattr(_here, "n", None)
    if n is not None:
        return n
    n = _state["n"]
    if n is None:
        n = set_threads(_from_env())
    return n


@contextmanager
def serial_here():
    """Inside, in the calling Python thread only, every kernel picks its serial variant and matmuls stay
    whole: the thread is one of several already sharing the cores (a pipeline stage, engine_stages.py)."""
    saved = getattr(_here, "n", None)
    _here.n = 1
    try:
        yield
    finally:
        _here.n = saved


def _apply(n: int) -> None:
    """numba's count is per Python thread: set it in the calling thread (Session.step calls this too)."""
    import numba
    # asking numba for its count starts its thread pool; at one thread nothing parallel runs, so a
    # pool not yet started is left unstarted (a process without one may fork: evrt/parallel.py)
    if n > 1 or pool_started():
        if numba.get_num_threads() != n:
            numba.set_num_threads(n)
    _blas_threads(1)             # never BLAS threads: see kernels/matmul.py


def pool_started() -> bool:
    """Whether numba's thread pool runs in this process (a fork would copy it half-alive)."""
    try:
        from numba.np.ufunc import parallel
    except ImportError:
        return True
    return bool(getattr(parallel, "_is_initialized", True))


def apply() -> int:
    """Make the calling Python thread use the current count (numba's setting is thread-local)."""
    n = get_threads()
    _apply(n)
    return n


def _layer() -> str | None:
    """numba's threading layer once a parallel kernel has run in this process, else None. Not probed by
    running one: that would load numba's typing modules and start its pool at Session creation (~0.4 s
    of a warm start), before any step needs them."""
    if _state["layer"] is None:
        from numba import threading_layer
        try:
            _state["layer"] = threading_layer()
        except ValueError:
            return None
    return _state["layer"]


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_NOLOCK = _NoLock()


def region():
    """A context around a step's parallel kernels: the process-wide lock when the threading layer is
    not safe for concurrent use (workqueue), else nothing."""
    if get_threads() == 1 or _layer() in ("omp", "tbb"):
        return _NOLOCK
    return _lock             # the workqueue layer, or not known yet (no parallel kernel has run)


# ------------------------------------------------------------------------------------------------ BLAS

def _openblas():
    """numpy's bundled OpenBLAS (set/get thread-count functions), or None (another BLAS: left alone)."""
    if _state["blas"] is not None:
        return _state["blas"] or None
    found = False
    here = os.path.dirname(np.__file__)
    for path in glob.glob(os.path.join(here, "..", "numpy.libs", "*openblas*.so*")) + \
            glob.glob(os.path.join(here, ".dylibs", "*openblas*")):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for s, g in (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
                     ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
                     ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
                     ("openblas_set_num_threads", "openblas_get_num_threads")):
            if hasattr(lib, s) and hasattr(lib, g):
                found = (getattr(lib, s), getattr(lib, g))
                found[0].argtypes = [ctypes.c_int]
                found[1].restype = ctypes.c_int
                break
        if found:
            break
    _state["blas"] = found
    return found or None


def _blas_threads(n: int) -> None:
    fns = _openblas()
    if fns and fns[1]() != n:
        fns[0](n)


def blas_threads() -> int | None:
    """OpenBLAS's current thread count (None when numpy uses another BLAS)."""
    fns = _openblas()
    return int(fns[1]()) if fns else None


# ------------------------------------------------------------------------------------- kernel pairs

def serial_and_parallel(fn):
    """(serial, parallel) numba kernels from one Python function whose outer loop is a prange over
    independent outputs: the same code, so the same arithmetic per output element. The parallel copy
    gets its own name, hence its own numba cache entry (the cache key does not tell the two apart)."""
    import types
    par = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_par", fn.__defaults__, fn.__closure__)
    par.__qualname__ = fn.__qualname__ + "_par"
    par.__doc__ = fn.__doc__
    par.__module__ = fn.__module__
    return njit(cache=True, nogil=True)(fn), njit(cache=True, nogil=True, parallel=True)(par)

