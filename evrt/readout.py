"""Turning a readout (mean logits) into a prediction's confidence — the one softmax in evrt.
docs/SEMANTICS.md, "Readout", says what the readout is in clip and continuous mode."""
from __future__ import annotations

import numpy as np


def softmax(z) -> np.ndarray:
    """Probabilities from logits, shifted by the max so large logits cannot overflow; () for ()."""
    z = np.asarray(z, dtype=np.float64)
    if not z.size:
        return z
    e = np.exp(z - z.max())
    return e / e.sum()


def confidence(logits, k: int) -> float:
    """softmax(logits)[k]; 0.0 for an empty readout."""
    p = softmax(logits)
    return float(p[k]) if 0 <= k < p.size else 0.0
