"""Folding, done in float64 and rounded once (when a Session casts to its precision).

- BatchNorm (running statistics) into the preceding conv/linear weights and bias.
- RTFormer's re-parameterised depthwise branches into one kernel per timestep.
- Temporal Sliding BN in front of a LIF into per-(t, channel) neuron tables (docs/SEMANTICS.md "Folding").
"""
from __future__ import annotations

import numpy as np

BN_EPS = 1e-5


def bn_affine(weight, bias, mean, var, eps: float = BN_EPS) -> tuple[np.ndarray, np.ndarray]:
    """BN at inference as x -> a*x + b per channel (float64). Works on (C,) or (T, C) statistics."""
    w, bb, m, v = (np.asarray(t, np.float64) for t in (weight, bias, mean, var))
    a = w / np.sqrt(v + eps)
    return a, bb - m * a


def fold_affine(w: np.ndarray, bias, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a ∘ (W x + bias) + b): scale output channel o of a torch-layout weight (O, ...) by a[o]."""
    w = np.asarray(w, np.float64)
    bias = np.zeros(w.shape[0]) if bias is None else np.asarray(bias, np.float64)
    return w * a.reshape((-1,) + (1,) * (w.ndim - 1)), a * bias + b


def conv_runtime(w: np.ndarray) -> np.ndarray:
    """torch conv weight (O, I/g, kh, kw) -> runtime (kh, kw, I/g, O)."""
    w = np.asarray(w)
    if w.ndim == 3:   # Conv1d with kernel 1 (Spikformer): (O, I, 1)
        w = w[..., None]
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def linear_runtime(w: np.ndarray) -> np.ndarray:
    """torch linear / 1x1 conv weight (O, I[, 1, 1]) -> runtime (I, O)."""
    w = np.asarray(w)
    return np.ascontiguousarray(w.reshape(w.shape[0], w.shape[1]).T)


def merge_branches(kernels: list[np.ndarray], scales: list[np.ndarray], shifts: list[np.ndarray],
                   size: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Σ_i (a_i (x * W_i) + b_i) for depthwise kernels W_i (C, 1, k, k), k <= size, centred; a_i, b_i of
    shape (T, C) -> one depthwise kernel per step (T, C, 1, size, size) and bias (T, C). An identity
    branch is a 1x1 kernel of ones. Exact for 'same' padding (pad = k // 2 for every branch)."""
    t, c = np.asarray(scales[0]).shape
    w_out = np.zeros((t, c, 1, size, size))
    b_out = np.zeros((t, c))
    for w, a, b in zip(kernels, scales, shifts):
        w = np.asarray(w, np.float64)
        k = w.shape[-1]
        o = (size - k) // 2
        padded = np.zeros((c, 1, size, size))
        padded[:, :, o:o + k, o:o + k] = w
        w_out += np.asarray(a, np.float64)[:, :, None, None, None] * padded[None]
        b_out += np.asarray(b, np.float64)
    return w_out, b_out


def tsbn_neuron_tables(a: np.ndarray, b: np.ndarray, k: float = 0.5, vth: float = 1.0):
    """TSBN (x -> a_t x + b_t, a/b of shape (T, C)) in front of a LIF, folded into the neuron
    (docs/SEMANTICS.md "Neurons", table LIF).

    The folded neuron tracks V'_t = V_t / a_t:  H'_t = r_t V'_{t-1} + c_t + k I_t, with
    r_t = (1-k) a_{t-1}/a_t, c_t = k b_t / a_t, θ_t = vth / a_t, fire when H' >= θ (a_t > 0) or
    H' <= θ (a_t < 0); reset to 0. Returns r, c, theta, sign (each (T, C), float64)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if np.any(a == 0):
        t, ch = np.argwhere(a == 0)[0]
        raise ValueError(f"TSBN scale is exactly 0 at step {t}, channel {ch}: the neuron cannot be folded")
    prev = np.vstack([a[:1], a[:-1]])   # r_0 is irrelevant (V'_{-1} = 0)
    r = (1.0 - k) * prev / a
    c = k * b / a
    theta = vth / a
    sign = np.sign(a)
    return r, c, theta, sign
