"""Max pooling (floor mode, -inf padding) and the token mean, channels-last."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .threads import get_threads, serial_and_parallel


@njit(cache=True, nogil=True)
def _max_into(acc, src):
    for j in range(acc.size):
        # fmax vectorises (a compare-and-select did not: 2.5x); like the old `if v > acc` it ignores a NaN
        acc[j] = np.fmax(acc[j], src[j])


def _maxpool2d_impl(x, k, stride, pad, out):
    """out (Ho, Wo, C) <- max over the k x k window of x (H, W, C); padded cells are -inf, so only
    in-bounds values compete (correct for real-valued BN outputs as well as spikes).
    Ho = (H + 2 pad - k) // stride + 1 (floor mode).
    Separable: per output row, the max over its k input rows runs over whole W*C rows (long vector
    loops), then each output pixel takes the max over k columns of that row. With fmax: 3x faster than
    the compare-and-store window loop (3x3/2 on 128x128x32)."""
    h, w, c = x.shape
    ho, wo, _ = out.shape
    xc = np.ascontiguousarray(x)
    rows = xc.reshape(h, w * c)
    for oy in prange(ho):                  # output rows are independent: the parallel twin splits them
        col = np.empty(w * c, x.dtype)
        cols = col.reshape(w, c)
        col[:] = -np.inf
        for ky in range(k):
            iy = oy * stride - pad + ky
            if 0 <= iy < h:
                _max_into(col, rows[iy])
        for ox in range(wo):
            orow = out[oy, ox]
            orow[:] = -np.inf
            for kx in range(k):
                ix = ox * stride - pad + kx
                if 0 <= ix < w:
                    _max_into(orow, cols[ix])


_maxpool2d, _maxpool2d_par = serial_and_parallel(_maxpool2d_impl)
PAR_MIN_ELEMENTS = 1 << 19   # smaller maps stay on one thread: a fork-join costs more than it saves


def maxpool2d(x, k, stride, pad, out):
    """See _maxpool2d_impl; the parallel twin when more than one thread is set."""
    par = get_threads() > 1 and x.size >= PAR_MIN_ELEMENTS
    (_maxpool2d_par if par else _maxpool2d)(x, k, stride, pad, out)


def mean_tokens(x, out):
    """out (C,) <- mean over every axis but the last (tokens or H x W)."""
    np.mean(x.reshape(-1, x.shape[-1]), axis=0, out=out)
    return out
