"""Spike-Driven Transformer v1, gesture configuration (docs/SEMANTICS.md, "Families") -> folded evrt graph.

MS_SPS stem (pools chosen by `pooling_stat`; the 4th pool acts on the BN output, before the LIF, with
-inf padding), real-valued membrane shortcuts, SDSA in the released code's form (column sum over
tokens of K∘V -> LIF(0.5) -> mask Q), MLP, head = token mean -> LIF -> linear.
"""
from __future__ import annotations

from ..errors import CheckpointError
from .common import STEM_STAGES, GraphBuilder, Weights, attention_heads, chw, count_blocks

FAMILY = "sdt"
STEM = STEM_STAGES[:3]   # the 4th conv's BN output is pooled before its LIF


def infer_hparams(state: dict, args: dict) -> dict:
    w = Weights(state, FAMILY)
    depth = count_blocks(w, "block.{}.attn.q_conv.weight", "an SDT")
    embed = w.get("patch_embed.proj_conv3.weight").shape[0]
    if w.has("block.0.attn.talking_heads.weight"):   # (heads, heads, 1): unused, but it names the head count
        args = {**args, "num_heads": w.get("block.0.attn.talking_heads.weight").shape[0]}
    heads = attention_heads(w, embed, args, 8)
    pooling = str(args.get("pooling_stat") or "0111")
    if len(pooling) != 4 or set(pooling) - {"0", "1"}:
        raise CheckpointError(f"{FAMILY}: pooling_stat must be 4 characters of 0/1, got {pooling!r}")
    return {"depth": depth, "embed_dims": embed, "num_heads": heads, "pooling_stat": pooling,
            "in_channels": w.get("patch_embed.proj_conv.weight").shape[1],
            "mlp_hidden": w.get("block.0.mlp.fc1_conv.weight").shape[0],
            "num_classes": w.get("head.weight").shape[0]}


def build_graph(state: dict, hp: dict, *, T: int, sensor: tuple[int, int] = (128, 128)) -> tuple:
    w = Weights(state, FAMILY)
    g = GraphBuilder()
    width, height = sensor
    D, heads, depth, pooling = hp["embed_dims"], hp["num_heads"], hp["depth"], hp["pooling_stat"]
    src = g.input(T=T, width=width, height=height, channels=hp["in_channels"])
    kind = "events"
    for i, (conv, bn, lif, pool) in enumerate(STEM):
        wt = w.get(f"patch_embed.{conv}.weight")
        c = wt.shape[0]
        y = g.conv_bn(f"patch_embed.{conv}", src, wt, None, w.bn(f"patch_embed.{bn}", c), pad=1, in_kind=kind)
        src, kind = g.lif(f"patch_embed.{lif}", y, ref_shape=chw(g.shape(y))), "spike"
        if pooling[i] == "1":
            src = g.add(f"patch_embed.{pool}", "maxpool", [src], k=3, stride=2, pad=1)
    u = g.conv_bn("patch_embed.proj_conv3", src, w.get("patch_embed.proj_conv3.weight"), None,
                  w.bn("patch_embed.proj_bn3", D), pad=1)
    if pooling[3] == "1":   # max-pool of real-valued BN output: -inf padding
        u = g.add("patch_embed.maxpool3", "maxpool", [u], k=3, stride=2, pad=1)
    h, wd, _ = g.shape(u)
    s = g.lif("patch_embed.proj_lif3", u, ref_shape=[D, h, wd])
    y = g.conv_bn("patch_embed.rpe_conv", s, w.get("patch_embed.rpe_conv.weight", (D, D, 3, 3)), None,
                  w.bn("patch_embed.rpe_bn", D), pad=1)
    x = g.add("patch_embed.out", "add", [y, u])
    n = h * wd
    x = g.add("patch_embed.tokens", "reshape", [x], shape=[n, D])
    hidden = hp["mlp_hidden"]
    for i in range(depth):
        p = f"block.{i}"
        s = g.lif(f"{p}.attn.shortcut_lif", x, ref_shape=[D, h, wd])
        qkv = []
        for name in ("q", "k", "v"):
            y = g.linear_bn(f"{p}.attn.{name}_conv", s, w.get(f"{p}.attn.{name}_conv.weight", (D, D, 1, 1)), None,
                            w.bn(f"{p}.attn.{name}_bn", D))
            qkv.append(g.lif(f"{p}.attn.{name}_lif", y, ref_shape=[D, h, wd]))
        kv = g.add(f"{p}.attn.kv", "sdsa_kv", qkv[1:])
        kv = g.lif(f"{p}.attn.talking_heads_lif", kv, vth=0.5, ref_shape=[heads, 1, D // heads], ref_layout="flat")
        y = g.add(f"{p}.attn.mask", "mask", [qkv[0], kv])
        y = g.linear_bn(f"{p}.attn.proj_conv", y, w.get(f"{p}.attn.proj_conv.weight", (D, D, 1, 1)),
                        w.get(f"{p}.attn.proj_conv.bias", (D,)), w.bn(f"{p}.attn.proj_bn", D))
        x = g.add(f"{p}.attn.residual", "add", [y, x])
        s = g.lif(f"{p}.mlp.fc1_lif", x, ref_shape=[D, h, wd])
        y = g.linear_bn(f"{p}.mlp.fc1_conv", s, w.get(f"{p}.mlp.fc1_conv.weight", (hidden, D, 1, 1)),
                        w.get(f"{p}.mlp.fc1_conv.bias", (hidden,)), w.bn(f"{p}.mlp.fc1_bn", hidden))
        s = g.lif(f"{p}.mlp.fc2_lif", y, ref_shape=[hidden, h, wd])
        y = g.linear_bn(f"{p}.mlp.fc2_conv", s, w.get(f"{p}.mlp.fc2_conv.weight", (D, hidden, 1, 1)),
                        w.get(f"{p}.mlp.fc2_conv.bias", (D,)), w.bn(f"{p}.mlp.fc2_bn", D))
        x = g.add(f"{p}.mlp.residual", "add", [y, x])
    f = g.add("features", "mean", [x])
    z = g.lif("head_lif", f, ref_shape=[D])
    k = hp["num_classes"]
    g.linear_bn("head", z, w.get("head.weight", (k, D)), w.get("head.bias", (k,)), None)
    meta = {"family": FAMILY, "hparams": hp, "T": T, "output": "head",
            "folding": ["BatchNorm folded into the preceding conv/linear (float64)",
                        "talking_heads.weight is defined but unused by the reference forward pass"]}
    return g, meta, w.unused()
