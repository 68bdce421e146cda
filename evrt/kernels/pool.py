"""Max pooling (floor mode, -inf padding) and the token mean, channels-last."""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def maxpool2d(x, k, stride, pad, out):
    """out (Ho, Wo, C) <- max over the k x k window of x (H, W, C); padded cells are -inf, so only
    in-bounds values compete (correct for real-valued BN outputs as well as spikes).
    Ho = (H + 2 pad - k) // stride + 1 (floor mode)."""
    h, w, c = x.shape
    ho, wo, _ = out.shape
    for oy in range(ho):
        for ox in range(wo):
            orow = out[oy, ox]
            orow[:] = -np.inf
            for ky in range(k):
                iy = oy * stride - pad + ky
                if iy < 0 or iy >= h:
                    continue
                for kx in range(k):
                    ix = ox * stride - pad + kx
                    if ix < 0 or ix >= w:
                        continue
                    xrow = x[iy, ix]
                    for j in range(c):
                        if xrow[j] > orow[j]:
                            orow[j] = xrow[j]


def mean_tokens(x, out):
    """out (C,) <- mean over every axis but the last (tokens or H x W)."""
    np.mean(x.reshape(-1, x.shape[-1]), axis=0, out=out)
    return out
