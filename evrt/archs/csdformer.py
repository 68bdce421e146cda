"""CSDformer-style converted transformer (evrt's reading, docs/SEMANTICS.md "Converted models";
reference: tools/reference/csdformer.py)
-> a fully spike-driven IF/DIF graph.

Conversion, per quantised ReLU q (step s = θ/L, L levels):
- BN is folded into the preceding conv/linear (float64); the input step of the layer (s of the quantiser
  that feeds it) is folded into the weights, so every spike adds one weight row (ACs only).
- q becomes a `dif` neuron: threshold s, soft reset, at most L spikes per sample, initial membrane
  s/2 + folded bias — the bias is charged once per sample, not every step, so the membrane after all
  input equals the ANN pre-activation + s/2 and the count is floor(x/s + ½) clipped to [0, L].
- DIF: a neuron may fire only once every input it depends on is complete ("delay"): it integrates until
  the last step at which its inputs can still spike, then emits its count on consecutive steps. With
  input_steps = T_in steps of events and K quantisers on the longest path, the last layer is complete
  after T_in + K·(L−1) steps (K = 2 + 6·depth); that is the model's T, and the counts are then exactly
  the quantised ANN's (up to float64 rounding at exact ties). Plain IF (`neuron="if"`): same graph, no
  delay — the classic conversion whose counts depend on spike timing.
- Q·Kᵀ and A·V: `tprod_qk` / `tprod_av` emit the integer increment of the product of the cumulative
  counts; the NReLU 1/N and the steps of Q, K (A, V) are folded into the next neuron's threshold
  (τ = s_A·N/(s_Q·s_K), τ = s_O/(s_A·s_V)) — exact, since that neuron's input is just their product.
- max-pool: `maxpool_delta` (increase of the window maximum of the cumulative counts).
- residual: `scaled_add` adds the skip spikes (each worth the skip's step) to the branch current in
  front of the re-quantising neuron.
- head: spikes summed over tokens per step (`token_sum`) feed the head as counts; its weights carry
  s/N·T so that the clip readout (mean over the T steps) equals the ANN's logits.
"""
from __future__ import annotations

import numpy as np

from ..errors import CheckpointError
from ..fold import conv_runtime, fold_affine, linear_runtime
from .common import GraphBuilder, Weights

FAMILY = "csdformer"
BUILD_ARGS = ("neuron",)
QUANT_PER_BLOCK = 6     # q/k/v, A, O, residual 1, fc1, residual 2 (on the longest path)


def infer_hparams(state: dict, args: dict) -> dict:
    w = Weights(state, FAMILY)
    depth = 0
    while w.has(f"blocks.{depth}.attn.q_linear.weight"):
        depth += 1
    if not w.has("patch_embed.conv1.weight"):
        raise CheckpointError(f"{FAMILY}: no 'patch_embed.conv1.weight' — is this a CSDformer checkpoint?")
    embed = w.get("patch_embed.conv2.weight").shape[0]
    heads = args.get("num_heads")
    if heads in (None, ""):
        raise CheckpointError(f"{FAMILY}: the checkpoint's args lack num_heads (not recoverable from weights)")
    heads = int(heads)
    if embed % heads:
        raise CheckpointError(f"{FAMILY}: embed dim {embed} is not divisible by {heads} heads")
    if args.get("img_size") in (None, ""):
        raise CheckpointError(f"{FAMILY}: the checkpoint's args lack img_size (the model's input grid)")
    return {"depth": depth, "embed_dims": int(embed), "num_heads": heads, "img_size": int(args["img_size"]),
            "in_channels": int(w.get("patch_embed.conv1.weight").shape[1]),
            "stem_channels": int(w.get("patch_embed.conv1.weight").shape[0]),
            "mlp_hidden": int(w.get("blocks.0.mlp.fc1_linear.weight").shape[0]) if depth else 0,
            "num_classes": int(w.get("head.weight").shape[0]),
            "in_scale": float(args.get("in_scale") or 1.0),
            "L": int(np.asarray(w.get("patch_embed.act1.L"))), }


def _quant(w: Weights, name: str) -> tuple[float, int]:
    theta = float(np.asarray(w.get(f"{name}.theta", (1,)), np.float64)[0])
    levels = int(np.asarray(w.get(f"{name}.L", ())))
    if not theta > 0 or levels < 1:
        raise CheckpointError(f"{FAMILY}: {name} has θ={theta}, L={levels}; need θ > 0 and L >= 1")
    return theta / levels, levels


class _Builder:
    """Tracks, per op, the last step at which its output can be non-zero (the DIF delays)."""

    def __init__(self, w: Weights, neuron: str):
        self.g = GraphBuilder()
        self.w = w
        self.neuron = neuron
        self.last: dict[str, int] = {}

    def add(self, name, type_, inputs, params=None, **attrs):
        self.g.add(name, type_, inputs, params, **attrs)
        self.last[name] = max(self.last[i] for i in inputs)
        return name

    def dif(self, name, src, vth, v_init, levels, ref_shape, ref_layout):
        delay = max(self.last[src], 0)
        self.g.add(name, "dif", [src], {"vth": np.atleast_1d(vth), "v_init": np.atleast_1d(v_init)},
                   delay=delay if self.neuron == "dif" else 0, cap=int(levels), ref_shape=ref_shape,
                   ref_layout=ref_layout)
        self.last[name] = delay + levels - 1
        return name

    def bn(self, prefix, c):
        return self.w.bn(prefix, c)

    def synapse(self, name, kind, src, weight, bn, s_in, in_kind="spike", **attrs):
        """conv/linear with BN folded and the input step folded in; the shift is returned, not added."""
        wf, bf = fold_affine(weight, None, *bn)
        wf = wf * s_in
        params = {"w": conv_runtime(wf) if kind == "conv2d" else linear_runtime(wf)}
        self.add(name, kind, [src], params, in_kind=in_kind, **attrs)
        return name, bf


def build_graph(state: dict, hp: dict, *, T: int, sensor: tuple[int, int] = (128, 128),
                neuron: str = "dif") -> tuple:
    """T = input steps: the clip's events arrive over the first T steps (the ANN sees their sum)."""
    if neuron not in ("dif", "if"):
        raise CheckpointError(f"{FAMILY}: neuron must be 'dif' or 'if', got {neuron!r}")
    w = Weights(state, FAMILY)
    b = _Builder(w, neuron)
    g = b.g
    width, height = sensor
    grid, D, heads = hp["img_size"], hp["embed_dims"], hp["num_heads"]
    if width != height or width % grid:
        raise CheckpointError(f"{FAMILY}: sensor {width}x{height} cannot be binned to the {grid}x{grid} model grid")
    g.input(T=T, width=grid, height=grid, sensor=(width, height), bin=width // grid, channels=hp["in_channels"])
    b.last["events"] = b.last["input"] = T - 1

    # tokenizer
    c1, cin = hp["stem_channels"], hp["in_channels"]
    s_in, kind, h, src = hp["in_scale"], "events", grid, "input"
    for i, c in ((1, c1), (2, D)):
        p = "patch_embed"
        conv, shift = b.synapse(f"{p}.conv{i}", "conv2d", src,
                                w.get(f"{p}.conv{i}.weight", (c, cin if i == 1 else c1, 3, 3)),
                                b.bn(f"{p}.bn{i}", c), s_in, in_kind=kind, stride=1, pad=1, groups=1)
        s, levels = _quant(w, f"{p}.act{i}")
        act = b.dif(f"{p}.act{i}", conv, s, s / 2 + shift, levels, [c, h, h], "channels_first")
        src = b.add(f"{p}.pool{i}", "maxpool_delta", [act], k=3, stride=2, pad=1)
        h = g.shape(src)[0]
        s_in, kind = s, "spike"
    n = h * h
    x = b.add("patch_embed.tokens", "reshape", [src], shape=[n, D])
    s_x = s_in
    tok = [n, D]

    for i in range(hp["depth"]):
        p = f"blocks.{i}"
        steps = {}
        qkv = []
        for name in ("q", "k", "v"):
            lin, shift = b.synapse(f"{p}.attn.{name}_linear", "linear", x,
                                   w.get(f"{p}.attn.{name}_linear.weight", (D, D)), b.bn(f"{p}.attn.{name}_bn", D), s_x)
            s, levels = _quant(w, f"{p}.attn.{name}_act")
            steps[name] = s
            qkv.append(b.dif(f"{p}.attn.{name}_act", lin, s, s / 2 + shift, levels, tok, "flat"))
        prod = b.add(f"{p}.attn.scores", "tprod_qk", qkv[:2], heads=heads)
        s_a, levels = _quant(w, f"{p}.attn.attn_act")
        tau = s_a * n / (steps["q"] * steps["k"])          # NReLU 1/N and the Q, K steps, in count units
        a = b.dif(f"{p}.attn.attn_act", prod, tau, tau / 2, levels, [heads, n, n], "flat")
        prod = b.add(f"{p}.attn.av", "tprod_av", [a, qkv[2]])
        s_o, levels = _quant(w, f"{p}.attn.out_act")
        tau = s_o / (s_a * steps["v"])
        o = b.dif(f"{p}.attn.out_act", prod, tau, tau / 2, levels, tok, "flat")
        lin, shift = b.synapse(f"{p}.attn.proj_linear", "linear", o,
                               w.get(f"{p}.attn.proj_linear.weight", (D, D)), b.bn(f"{p}.attn.proj_bn", D), s_o)
        cur = b.add(f"{p}.skip1", "scaled_add", [lin, x], scale=float(s_x))
        s, levels = _quant(w, f"{p}.act1")
        x, s_x = b.dif(f"{p}.act1", cur, s, s / 2 + shift, levels, tok, "flat"), s
        hid = hp["mlp_hidden"]
        lin, shift = b.synapse(f"{p}.mlp.fc1_linear", "linear", x,
                               w.get(f"{p}.mlp.fc1_linear.weight", (hid, D)), b.bn(f"{p}.mlp.fc1_bn", hid), s_x)
        s, levels = _quant(w, f"{p}.mlp.fc1_act")
        hdn = b.dif(f"{p}.mlp.fc1_act", lin, s, s / 2 + shift, levels, [n, hid], "flat")
        lin, shift = b.synapse(f"{p}.mlp.fc2_linear", "linear", hdn,
                               w.get(f"{p}.mlp.fc2_linear.weight", (D, hid)), b.bn(f"{p}.mlp.fc2_bn", D), s)
        cur = b.add(f"{p}.skip2", "scaled_add", [lin, x], scale=float(s_x))
        s, levels = _quant(w, f"{p}.act2")
        x, s_x = b.dif(f"{p}.act2", cur, s, s / 2 + shift, levels, tok, "flat"), s

    steps_total = b.last[x] + 1
    f = b.add("features", "token_sum", [x])
    k = hp["num_classes"]
    wh = np.asarray(w.get("head.weight", (k, D)), np.float64) * (s_x * steps_total / n)
    g.add("head", "linear", [f], {"w": linear_runtime(wh), "b": np.asarray(w.get("head.bias", (k,)), np.float64)},
          in_kind="count")
    meta = {"family": FAMILY, "hparams": hp, "T": steps_total, "input_steps": int(T), "output": "head",
            "neuron": neuron,
            "folding": [
                "BatchNorm folded into the preceding conv/linear (float64); input steps folded into weights",
                "quantised ReLU -> IF neuron: threshold θ/L, soft reset, <= L spikes, membrane starts at "
                "half a step + the folded BN shift (charged once per sample)",
                f"{'DIF: each neuron fires only after its inputs are complete' if neuron == 'dif' else 'plain IF: no delay (counts depend on spike timing)'}",
                f"the clip's events arrive in the first {int(T)} step(s); steps {int(T)}..{steps_total - 1} "
                "carry no input (the network drains)",
                "Q·Kᵀ, A·V and max-pooling by temporal decomposition; 1/N and quantiser steps folded into thresholds",
                "head weights carry s/N·T: the clip readout (mean over T steps) equals the ANN logits"]}
    return g, meta, w.unused()
