"""Event-driven token-wise linear map: x (N, Cin), w (Cin, Cout), b (Cout,), out (N, Cout).

A 1x1 conv on an (H, W, C) map is this kernel on its (H*W, C) view. Each non-zero x[n, ci] adds the
contiguous weight row w[ci] into out[n]; above a density threshold one BLAS matmul is faster.
"""
from __future__ import annotations

import numpy as np
from numba import njit

# Measured break-even density of the event path against one BLAS matmul (tools/bench_kernels.py):
# 20-25 % for 256 -> 1024 on 64-256 tokens.
DENSE_ABOVE_LINEAR = 0.2


@njit(cache=True)
def linear_counts(x, cout):
    """(nnz, pairs, weighted): each non-zero input reaches all Cout outputs of its token."""
    n, cin = x.shape
    nnz = 0
    weighted = 0.0
    for i in range(n):
        xrow = x[i]
        for c in range(cin):            # branch-free so it vectorises: zeros add nothing to the sum
            nnz += xrow[c] != 0
            weighted += np.float64(xrow[c])
    return nnz, nnz * cout, weighted * cout


@njit(cache=True)
def linear_scatter_only(x, w, b, out):
    """The event path alone: out = b + x @ w touching only non-zero inputs. No counts."""
    n, cin = x.shape
    cout = w.shape[1]
    for i in range(n):
        orow = out[i]
        orow[:] = b
        xrow = x[i]
        for c in range(cin):
            v = xrow[c]
            if v == 0:
                continue
            wrow = w[c]
            if v == 1:          # a spike: plain adds
                for j in range(cout):
                    orow[j] += wrow[j]
            else:
                for j in range(cout):
                    orow[j] += v * wrow[j]


def linear_dense(x, w, b, out):
    """The dense path alone: one BLAS matmul."""
    if out.flags.c_contiguous and x.dtype == w.dtype == out.dtype:
        np.matmul(x, w, out=out)
    else:
        out[...] = x @ w
    out += b


def linear_scatter(x, w, b, out, dense_above=DENSE_ABOVE_LINEAR):
    """out (N, Cout) <- b + x @ w; returns (pairs, weighted) as conv2d_scatter (pairs = nnz(x) * Cout).
    Event path unless more than `dense_above` of x is non-zero; the counts do not depend on the path."""
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"linear_scatter: x has {x.shape[1]} channels, w is {w.shape}")
    nnz, pairs, weighted = linear_counts(x, w.shape[1])
    if nnz > dense_above * x.size:
        linear_dense(x, w, b, out)
    else:
        linear_scatter_only(x, w, b, out)
    return pairs, weighted
