"""Plain-NumPy twins of the int8 kernels (evrt/kernels/quant.py), used only by the tests.

Written the obvious dense way (pad, take every tap's strided window, integer tensordot), in int64, so
they share nothing with the event loops they check. Integer sums are exact, so kernel and twin must be
equal element for element.
"""
from __future__ import annotations

import numpy as np


def conv2d_int(x, q, stride, pad, dilation, groups) -> np.ndarray:
    """(Ho, Wo, Cout) int64 = Σ x * q, x (H, W, Cin) integer-valued, q (kh, kw, Cin/groups, Cout)."""
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    kh, kw, cig, cout = q.shape
    h, w, cin = x.shape
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    xp = np.zeros((h + 2 * ph, w + 2 * pw, cin), np.int64)
    xp[ph:ph + h, pw:pw + w] = np.asarray(x).astype(np.int64)
    cpg = cout // groups
    out = np.zeros((ho, wo, cout), np.int64)
    for ky in range(kh):
        for kx in range(kw):
            win = xp[ky * dh: ky * dh + sh * (ho - 1) + 1: sh, kx * dw: kx * dw + sw * (wo - 1) + 1: sw]
            for g in range(groups):
                out[:, :, g * cpg:(g + 1) * cpg] += np.tensordot(
                    win[:, :, g * cig:(g + 1) * cig], q[ky, kx, :, g * cpg:(g + 1) * cpg].astype(np.int64), axes=1)
    return out


def linear_int(x, q) -> np.ndarray:
    return np.asarray(x).astype(np.int64) @ q.astype(np.int64)


def conv2d_events_int(ys, xs, cs, q, stride, pad, dilation, shape) -> np.ndarray:
    """Each event as a one-hot count map, summed: the events kernel's result by the dense twin."""
    h, w = shape
    x = np.zeros((h, w, q.shape[2]), np.int64)
    np.add.at(x, (np.asarray(ys, np.int64), np.asarray(xs, np.int64), np.asarray(cs, np.int64)), 1)
    return conv2d_int(x, q, stride, pad, dilation, 1)


def apply_scale(acc, scale, b, dtype) -> np.ndarray:
    return (acc.astype(np.float64) * np.asarray(scale, np.float64) + np.asarray(b, np.float64)).astype(dtype)
