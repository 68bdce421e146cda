"""Event-driven token-wise linear map: x (N, Cin), w (Cin, Cout), b (Cout,), out (N, Cout).

A 1x1 conv on an (H, W, C) map is this kernel on its (H*W, C) view. Each non-zero x[n, ci] adds the
contiguous weight row w[ci] into out[n]; above a density threshold one BLAS matmul is faster.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .conv import PAR_MIN_PAIRS, conv2d_scatter_only, row_counts
from .counts import Counts
from .matmul import matmul

# Break-even density of the event path against one BLAS matmul, measured as for the convs' thresholds
# (evrt/kernels/conv.py): ~0.3 for 256 -> 256 on 64 tokens, 0.22-0.26 for 1024 -> 256, ~0.4 for 256 -> 1024.
DENSE_ABOVE_LINEAR = 0.3


@njit(cache=True, nogil=True)
def linear_counts(x, cout):
    """(nnz, pairs, weighted): each non-zero input reaches all Cout outputs of its token."""
    n, cin = x.shape
    nnz = 0
    weighted = 0.0
    for i in range(n):
        xrow = x[i]
        n_row, other = row_counts(xrow)
        nnz += n_row
        if other == 0 and weighted == np.floor(weighted) and abs(weighted) < 2.0 ** 52:
            weighted += n_row           # adding the row's ones one by one gives exactly this
        else:
            for c in range(cin):
                weighted += np.float64(xrow[c])
    return nnz, nnz * cout, weighted * cout


def linear_scatter_only(x, w, b, out, threads=None, spikes=None):
    """The event path alone: out = b + x @ w touching only non-zero inputs. No counts.
    It is the event conv kernel on the (N, 1, Cin) view (a 1x1 conv): same adds, same order.
    spikes: x's spike list (li, n), as conv2d_scatter_only takes it."""
    n, cin = x.shape
    conv2d_scatter_only(x.reshape(n, 1, cin), w.reshape(1, 1, cin, w.shape[1]), b, 1, 0, 1, out[:, None, :],
                        threads=threads, spikes=spikes)


def linear_dense(x, w, b, out):
    """The dense path alone: one BLAS matmul."""
    if out.flags.c_contiguous and x.flags.c_contiguous and x.dtype == w.dtype == out.dtype:
        matmul(x, w, out)
    else:
        out[...] = x @ w
    out += b


def linear_scatter(x, w, b, out, dense_above=DENSE_ABOVE_LINEAR, spikes=None):
    """out (N, Cout) <- b + x @ w; returns Counts as conv2d_scatter (pairs = nnz(x) * Cout).
    Event path unless more than `dense_above` of x is non-zero; the counts do not depend on the path.
    spikes: x's spike list (li, n) (x a 0/1 map): counts and event lists come from it, not from scans."""
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"linear_scatter: x has {x.shape[1]} channels, w is {w.shape}")
    if spikes is not None:
        nnz = int(spikes[1])
        pairs = nnz * w.shape[1]
        weighted = float(nnz) * w.shape[1]     # linear_counts' float sum of ones, times Cout
    else:
        nnz, pairs, weighted = linear_counts(x, w.shape[1])
    if nnz > dense_above * x.size:
        linear_dense(x, w, b, out)
    else:
        linear_scatter_only(x, w, b, out, threads=None if pairs >= PAR_MIN_PAIRS else 1, spikes=spikes)
    return Counts(int(nnz), int(pairs), float(weighted))
