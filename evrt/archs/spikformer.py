"""Spikformer, DVS configuration (docs/SEMANTICS.md, "Families") -> folded evrt graph.

Per timestep: SPS stem (4 × [conv3x3 → BN → LIF → maxpool on spikes]), relative position
(conv3x3 → BN → LIF) added to the pooled spikes, `depth` blocks of SSA + MLP with spike shortcuts,
token mean, linear head. The SSA scale 0.25 multiplies (QKᵀ)V before a LIF with threshold 0.5; LIF
dynamics are linear in (input, membrane) up to the threshold test and the reset to 0, so the scale is
folded into the threshold (0.5 / 0.25 = 2, a power of two: bit-exact) and the kernel stays integer.
"""
from __future__ import annotations

from ..errors import CheckpointError
from .common import STEM_STAGES, GraphBuilder, Weights, attention_heads, chw, count_blocks

FAMILY = "spikformer"
ATTN_SCALE = 0.25
STEM = STEM_STAGES   # every stage pools its spikes


def infer_hparams(state: dict, args: dict) -> dict:
    w = Weights(state, FAMILY)
    depth = count_blocks(w, "block.{}.attn.q_conv.weight", "a Spikformer")
    embed = w.get("patch_embed.proj_conv3.weight").shape[0]
    heads = attention_heads(w, embed, args, 16)
    return {"depth": depth, "embed_dims": embed, "num_heads": heads,
            "in_channels": w.get("patch_embed.proj_conv.weight").shape[1],
            "mlp_hidden": w.get("block.0.mlp.fc1_conv.weight").shape[0],
            "num_classes": w.get("head.weight").shape[0]}


def build_graph(state: dict, hp: dict, *, T: int, sensor: tuple[int, int] = (128, 128)) -> tuple:
    """Returns (ops builder, meta fragment, unused keys)."""
    w = Weights(state, FAMILY)
    g = GraphBuilder()
    width, height = sensor
    D, heads, depth = hp["embed_dims"], hp["num_heads"], hp["depth"]
    cin = hp["in_channels"]
    x = g.input(T=T, width=width, height=height, channels=cin)
    src, kind = x, "events"
    for conv, bn, lif, pool in STEM:
        wt = w.get(f"patch_embed.{conv}.weight")
        c = wt.shape[0]
        y = g.conv_bn(f"patch_embed.{conv}", src, wt, None, w.bn(f"patch_embed.{bn}", c), pad=1, in_kind=kind)
        s = g.lif(f"patch_embed.{lif}", y, ref_shape=chw(g.shape(y)))
        src, kind = g.add(f"patch_embed.{pool}", "maxpool", [s], k=3, stride=2, pad=1), "spike"
    if wt.shape[0] != D:
        raise CheckpointError(f"{FAMILY}: stem ends with {wt.shape[0]} channels, blocks expect {D}")
    y = g.conv_bn("patch_embed.rpe_conv", src, w.get("patch_embed.rpe_conv.weight", (D, D, 3, 3)), None,
                  w.bn("patch_embed.rpe_bn", D), pad=1)
    h, wd, _ = g.shape(y)
    r = g.lif("patch_embed.rpe_lif", y, ref_shape=[D, h, wd])
    x = g.add("patch_embed.out", "add", [src, r])
    n = h * wd
    x = g.add("patch_embed.tokens", "reshape", [x], shape=[n, D])
    hidden = hp["mlp_hidden"]
    for i in range(depth):
        p = f"block.{i}"
        qkv = []
        for name in ("q", "k", "v"):
            y = g.linear_bn(f"{p}.attn.{name}_conv", x, w.get(f"{p}.attn.{name}_conv.weight", (D, D, 1)), None,
                            w.bn(f"{p}.attn.{name}_bn", D), in_kind="count")
            qkv.append(g.lif(f"{p}.attn.{name}_lif", y, ref_shape=[D, n]))
        a = g.add(f"{p}.attn.ssa", "ssa", qkv, heads=heads)
        a = g.lif(f"{p}.attn.attn_lif", a, vth=0.5 / ATTN_SCALE, ref_shape=[D, n], h_scale=ATTN_SCALE)
        y = g.linear_bn(f"{p}.attn.proj_conv", a, w.get(f"{p}.attn.proj_conv.weight", (D, D, 1)),
                        w.get(f"{p}.attn.proj_conv.bias", (D,)), w.bn(f"{p}.attn.proj_bn", D))
        s = g.lif(f"{p}.attn.proj_lif", y, ref_shape=[D, n])
        x = g.add(f"{p}.attn.residual", "add", [x, s])
        y = g.linear_bn(f"{p}.mlp.fc1_conv", x, w.get(f"{p}.mlp.fc1_conv.weight", (hidden, D, 1)),
                        w.get(f"{p}.mlp.fc1_conv.bias", (hidden,)), w.bn(f"{p}.mlp.fc1_bn", hidden), in_kind="count")
        s = g.lif(f"{p}.mlp.fc1_lif", y, ref_shape=[hidden, n])
        y = g.linear_bn(f"{p}.mlp.fc2_conv", s, w.get(f"{p}.mlp.fc2_conv.weight", (D, hidden, 1)),
                        w.get(f"{p}.mlp.fc2_conv.bias", (D,)), w.bn(f"{p}.mlp.fc2_bn", D))
        s = g.lif(f"{p}.mlp.fc2_lif", y, ref_shape=[D, n])
        x = g.add(f"{p}.mlp.residual", "add", [x, s])
    f = g.add("features", "mean", [x])
    k = hp["num_classes"]
    g.linear_bn("head", f, w.get("head.weight", (k, D)), w.get("head.bias", (k,)), None, in_kind="real")
    meta = {"family": FAMILY, "hparams": hp, "T": T, "output": "head",
            "folding": ["BatchNorm folded into the preceding conv/linear (float64)",
                        f"SSA scale {ATTN_SCALE} folded into attn_lif's threshold (0.5 -> {0.5 / ATTN_SCALE})",
                        "head applied per step; the clip readout (mean of step logits) equals the reference's "
                        "head on the time-mean because the head is affine"]}
    return g, meta, w.unused()
