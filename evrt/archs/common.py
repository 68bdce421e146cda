"""Shared pieces of the architecture mappers: checked state-dict access and stem helpers.
`GraphBuilder` lives beside `Graph` (evrt/graph.py) and is re-exported here for the mappers."""
from __future__ import annotations

import numpy as np

from ..errors import CheckpointError
from ..fold import bn_affine
from ..graph import GraphBuilder  # noqa: F401  (re-export: the mappers' and importers' builder)


class Weights:
    """A state dict that names missing and mis-shaped keys (with both shapes) and remembers which keys
    were used, so unused ones can be listed (docs/SEMANTICS.md "Checkpoints" tolerates them)."""

    IGNORED_SUFFIXES = ("num_batches_tracked",)

    def __init__(self, state: dict, family: str):
        self.state = state
        self.family = family
        self.used: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self.state

    def get(self, key: str, shape: tuple | None = None) -> np.ndarray:
        if key not in self.state:
            near = [k for k in self.state if k.rsplit(".", 1)[0] == key.rsplit(".", 1)[0]]
            hint = f"; keys with that prefix: {near[:6]}" if near else ""
            raise CheckpointError(f"{self.family}: checkpoint lacks {key!r}{hint}")
        arr = np.asarray(self.state[key])
        if shape is not None and tuple(arr.shape) != tuple(shape):
            raise CheckpointError(f"{self.family}: {key!r} has shape {tuple(arr.shape)}, expected {tuple(shape)}")
        self.used.add(key)
        return arr

    def bn(self, prefix: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
        parts = [self.get(f"{prefix}.{n}", (channels,)) for n in ("weight", "bias", "running_mean", "running_var")]
        if f"{prefix}.num_batches_tracked" in self.state:
            self.used.add(f"{prefix}.num_batches_tracked")
        return bn_affine(*parts)

    def unused(self) -> list[str]:
        return sorted(k for k in self.state if k not in self.used and not k.endswith(self.IGNORED_SUFFIXES))


# the MS_SPS / SPS stem stages shared by Spikformer, SDT and RTFormer: (conv, BN, LIF, pool) names
STEM_STAGES = [(f"proj_conv{i}", f"proj_bn{i}", f"proj_lif{i}", f"maxpool{i}") for i in ("", "1", "2", "3")]


def count_blocks(w: Weights, key: str, hint: str) -> int:
    """How many transformer blocks: consecutive i for which key.format(i) exists (at least one)."""
    n = 0
    while w.has(key.format(n)):
        n += 1
    if n == 0:
        raise CheckpointError(f"{w.family}: no {key.format(0)!r} — is this {hint} checkpoint?")
    return n


def attention_heads(w: Weights, embed: int, args: dict, default: int) -> int:
    heads = int(args.get("num_heads") or args.get("heads") or default)
    if embed % heads:
        raise CheckpointError(f"{w.family}: embed dim {embed} is not divisible by {heads} heads (--heads)")
    return heads


def chw(shape) -> list[int]:
    """A runtime (H, W, C) shape as the reference's [C, H, W] (a neuron's ref_shape)."""
    h, w, c = shape
    return [c, h, w]
