"""Numba kernels of the runtime (channels-last; see docs/INTERNALS.md). Each has a plain-NumPy twin
in `evrt.kernels.dense`, used only by the tests."""
from contextlib import contextmanager

from . import attention, conv, linear, neurons, pool
from .attention import dssa_out, dssa_scores, sdsa_kv, ssa
from .conv import (DENSE_ABOVE, DENSE_ABOVE_1X1, DENSE_ABOVE_CONV, DENSE_ABOVE_DW, DENSE_ABOVE_GROUPED,
                   conv2d_counts, conv2d_dense, conv2d_events, conv2d_scatter, conv2d_scatter_only,
                   default_dense_above)
from .conv_general import conv2d_general, conv2d_general_events
from .counts import Counts
from .linear import DENSE_ABOVE_LINEAR, linear_counts, linear_dense, linear_scatter, linear_scatter_only
from .neurons import if_step, if_step_forced, lif_step, lif_step_forced, table_step, table_step_forced
from .pool import maxpool2d, mean_tokens
from .temporal import dif_step, dif_step_forced, maxpool_delta, tprod_av, tprod_qk
from .threads import get_threads, set_threads

__all__ = [
    "Counts",
    "DENSE_ABOVE", "DENSE_ABOVE_1X1", "DENSE_ABOVE_CONV", "DENSE_ABOVE_GROUPED", "DENSE_ABOVE_DW",
    "DENSE_ABOVE_LINEAR", "default_dense_above",
    "conv2d_scatter", "conv2d_scatter_only", "conv2d_dense", "conv2d_counts", "conv2d_events",
    "conv2d_general", "conv2d_general_events",
    "linear_scatter", "linear_scatter_only", "linear_dense", "linear_counts",
    "maxpool2d", "mean_tokens",
    "lif_step", "lif_step_forced", "if_step", "if_step_forced", "table_step", "table_step_forced",
    "ssa", "sdsa_kv", "dssa_scores", "dssa_out",
    "dif_step", "dif_step_forced", "tprod_qk", "tprod_av", "maxpool_delta",
    "set_threads", "get_threads", "every_variant",
]


@contextmanager
def every_variant():
    """Inside: every size threshold that keeps small work on the serial kernel is 0, so a tiny step runs
    (and numba compiles or loads) the parallel variants too. Warm-up only (Session.warm_up): the choice
    is made in Python per call, so without this a variant first picked mid-stream compiles there."""
    saved = [(m, k, getattr(m, k)) for m in (attention, conv, linear, neurons, pool) for k in dir(m)
             if k.startswith("PAR_MIN_")]
    for m, k, _ in saved:
        setattr(m, k, 0)
    try:
        yield
    finally:
        for m, k, v in saved:
            setattr(m, k, v)
