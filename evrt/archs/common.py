"""Shared pieces of the architecture mappers: checked state-dict access and a small graph builder."""
from __future__ import annotations

import numpy as np

from ..errors import CheckpointError
from ..fold import bn_affine, conv_runtime, fold_affine, linear_runtime
from ..graph import Graph, Op


class Weights:
    """A state dict that names missing and mis-shaped keys (with both shapes) and remembers which keys
    were used, so unused ones can be listed (spec §9.6 tolerates them)."""

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


class GraphBuilder:
    """Appends ops; parameters are kept in float64 (rounded once by the Session)."""

    def __init__(self):
        self.ops: list[Op] = []

    def add(self, name: str, type_: str, inputs: list[str], params: dict | None = None, **attrs) -> str:
        self.ops.append(Op(name, type_, list(inputs), attrs, {k: np.asarray(v, np.float64) for k, v in (params or {}).items()}))
        return name

    def conv_bn(self, name, src, w, bias, bn, *, stride=1, pad=0, groups=1, in_kind="spike", scale=1.0):
        """torch conv weight (+ optional bias) followed by BN affine (a, b) -> one conv2d op."""
        wf, bf = fold_affine(w, bias, *bn) if bn is not None else fold_affine(w, bias, np.ones(w.shape[0]), np.zeros(w.shape[0]))
        return self.add(name, "conv2d", [src], {"w": conv_runtime(wf) * scale, "b": bf},
                        stride=stride, pad=pad, groups=groups, in_kind=in_kind)

    def linear_bn(self, name, src, w, bias, bn, *, in_kind="spike"):
        wf, bf = fold_affine(w, bias, *bn) if bn is not None else fold_affine(w, bias, np.ones(w.shape[0]), np.zeros(w.shape[0]))
        return self.add(name, "linear", [src], {"w": linear_runtime(wf), "b": bf}, in_kind=in_kind)

    def lif(self, name, src, *, k=0.5, vth=1.0, ref_shape=None, ref_layout="channels_first", h_scale=1.0):
        """ref_shape/ref_layout say how the reference lays out this neuron's tensor (for goldens);
        h_scale converts this neuron's membrane to the reference's (a folded input scale)."""
        return self.add(name, "lif", [src], k=float(k), vth=float(vth), ref_shape=ref_shape,
                        ref_layout=ref_layout, h_scale=h_scale)

    def graph(self, meta: dict) -> Graph:
        g = Graph(meta, self.ops)
        g.check()
        return g


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


def pool_out(size: int, k: int = 3, s: int = 2, p: int = 1) -> int:
    return (size + 2 * p - k) // s + 1
