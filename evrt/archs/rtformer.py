"""RTFormer, evrt's reading (docs/SEMANTICS.md "Folding"; keys in tools/reference/rtformer.py) -> folded evrt graph.

The SDT gesture backbone with every BatchNorm replaced by a Temporal Sliding BN (per-step statistics
and affine, (T, C) tables) and the stem's later convs replaced by Spatial-Core units (five depthwise
branches, each with its own TSBN, summed; then a pointwise conv + TSBN). Folds, all in float64:

- TSBN directly in front of a LIF -> the neuron's per-(t, channel) tables r, c, θ, sign (docs/SEMANTICS.md "Neurons":
  the neuron tracks V' = V / a_t), so the synaptic weights before it stay untouched.
- Spatial core: Σ_b TSBN_b(dw_b(x)) = dw_{W_t}(x) + B_t with W_t = Σ_b a_b,t W_b (1x1 and identity
  branches centred in 3x3); the pointwise conv P is merged too, K_t[o,i] = P[o,i] W_t[i], so the spike
  input is scattered once through one 3x3 kernel per step (pure ACs, no real-valued intermediate).
- TSBN whose output is not a LIF input (the core before the real-valued pool, rpe, attention proj,
  MLP fc2: they feed membrane shortcuts) -> per-step weight tables a_t·W, a_t·bias + b_t.
Per-step tables are looked up by step index (row min(t, T-1): steps past T hold the last row); there
is no per-step multiply anywhere in the synaptic layers.
"""
from __future__ import annotations

import numpy as np

from ..errors import CheckpointError
from ..fold import bn_affine, conv_runtime, fold_affine, linear_runtime, merge_branches, tsbn_neuron_tables
from .common import GraphBuilder, Weights, attention_heads, chw, count_blocks

FAMILY = "rtformer"
BRANCH_KERNELS = (3, 3, 1, 1, 0)   # 0 = identity


class _Mapper:
    def __init__(self, state, T):
        self.w = Weights(state, FAMILY)
        self.g = GraphBuilder()
        self.T = T

    def tsbn(self, prefix, channels):
        parts = [self.w.get(f"{prefix}.{n}") for n in ("weight", "bias", "running_mean", "running_var")]
        for n, p in zip(("weight", "bias", "running_mean", "running_var"), parts):
            if p.shape != (self.T, channels):
                raise CheckpointError(f"{FAMILY}: {prefix}.{n} has shape {p.shape}, expected {(self.T, channels)}")
        return bn_affine(*parts)   # (T, C) each

    def table_lif(self, name, src, ab, ref_shape, k=0.5, vth=1.0):
        a, b = ab
        if np.any(a == 0):
            raise CheckpointError(f"{FAMILY}: a TSBN scale in front of {name} is exactly 0; it cannot be folded")
        r, c, theta, sign = tsbn_neuron_tables(a, b, k=k, vth=vth)
        return self.g.add(name, "table_lif", [src], {"r": r, "c": c, "theta": theta, "sign": sign},
                          k=k, vth=vth, ref_shape=ref_shape, ref_layout="channels_first")

    def per_step_conv(self, name, src, w_t, b_t, *, pad, in_kind="spike", linear=False):
        """w_t (T, O, I, kh, kw) torch layout per step, b_t (T, O)."""
        if linear:
            w = np.stack([linear_runtime(wi) for wi in w_t])
            return self.g.add(name, "linear", [src], {"w": w, "b": b_t}, in_kind=in_kind)
        w = np.stack([conv_runtime(wi) for wi in w_t])
        return self.g.add(name, "conv2d", [src], {"w": w, "b": b_t}, stride=1, pad=pad, groups=1, in_kind=in_kind)

    def affine_per_step(self, w, bias, ab):
        """a_t ∘ (W x + bias) + b_t for every step -> ((T, O, ...), (T, O))."""
        a, b = ab
        pairs = [fold_affine(w, bias, a[t], b[t]) for t in range(self.T)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def spatial_core(self, p, src, cin):
        """Returns (per-step merged kernel (T, Cout, Cin, 3, 3), bias (T, Cout), pw_bn affine, cout)."""
        kernels, scales, shifts = [], [], []
        for i, k in enumerate(BRANCH_KERNELS):
            a, b = self.tsbn(f"{p}.branches.{i}.tsbn", cin)
            kernels.append(np.ones((cin, 1, 1, 1)) if k == 0 else self.w.get(f"{p}.branches.{i}.conv.weight", (cin, 1, k, k)))
            scales.append(a)
            shifts.append(b)
        w_dw, b_dw = merge_branches(kernels, scales, shifts, size=3)          # (T, C, 1, 3, 3), (T, C)
        pw = self.w.get(f"{p}.pw_conv.weight").astype(np.float64)
        cout = pw.shape[0]
        pw2 = pw.reshape(cout, cin)
        k_t = pw2[None, :, :, None, None] * w_dw[:, None, :, 0]               # (T, Cout, Cin, 3, 3)
        bias_t = b_dw @ pw2.T                                                  # (T, Cout)
        return k_t, bias_t, self.tsbn(f"{p}.pw_bn", cout), cout


def infer_hparams(state: dict, args: dict) -> dict:
    w = Weights(state, FAMILY)
    if not w.has("patch_embed.core1.pw_conv.weight"):
        raise CheckpointError(f"{FAMILY}: no 'patch_embed.core1.pw_conv.weight' — is this an RTFormer checkpoint "
                              f"in evrt's reading (tools/reference/rtformer.py)?")
    depth = count_blocks(w, "block.{}.attn.q_conv.weight", "an RTFormer")
    embed = w.get("patch_embed.rpe_conv.weight").shape[0]
    heads = attention_heads(w, embed, args, 8)
    T_tables = w.get("patch_embed.proj_bn.weight").shape[0]
    return {"depth": depth, "embed_dims": embed, "num_heads": heads,
            "pooling_stat": str(args.get("pooling_stat") or "0111"),
            "window": int(args.get("window") or 4), "T_tables": T_tables,
            "in_channels": w.get("patch_embed.proj_conv.weight").shape[1],
            "mlp_hidden": w.get("block.0.mlp.fc1_conv.weight").shape[0] if depth else 0,
            "num_classes": w.get("head.weight").shape[0]}


def build_graph(state: dict, hp: dict, *, T: int, sensor: tuple[int, int] = (128, 128)) -> tuple:
    if T != hp["T_tables"]:
        raise CheckpointError(f"{FAMILY}: the TSBN tables hold {hp['T_tables']} steps but T={T} was asked; "
                              f"RTFormer runs at its trained T")
    m = _Mapper(state, T)
    g, w = m.g, m.w
    width, height = sensor
    D, heads, depth, pooling = hp["embed_dims"], hp["num_heads"], hp["depth"], hp["pooling_stat"]
    x = g.input(T=T, width=width, height=height, channels=hp["in_channels"])
    wt = w.get("patch_embed.proj_conv.weight")
    c = wt.shape[0]
    y = g.add("patch_embed.proj_conv", "conv2d", [x], {"w": conv_runtime(wt), "b": np.zeros(c)},
              stride=1, pad=1, groups=1, in_kind="events")
    s = m.table_lif("patch_embed.proj_lif", y, m.tsbn("patch_embed.proj_bn", c), chw(g.shape(y)))

    def pool(i, src):
        if pooling[i] != "1":
            return src
        return g.add(f"patch_embed.maxpool{'' if i == 0 else i}", "maxpool", [src], k=3, stride=2, pad=1)

    s = pool(0, s)
    for k in (1, 2):
        k_t, b_t, ab, c = m.spatial_core(f"patch_embed.core{k}", s, c)
        y = m.per_step_conv(f"patch_embed.core{k}", s, k_t, b_t, pad=1)
        s = pool(k, m.table_lif(f"patch_embed.proj_lif{k}", y, ab, chw(g.shape(y))))
    k_t, b_t, (a, b), c = m.spatial_core("patch_embed.core3", s, c)
    if c != D:
        raise CheckpointError(f"{FAMILY}: the stem ends with {c} channels, the blocks expect {D}")
    k_t = k_t * a[:, :, None, None, None]
    b_t = b_t * a + b
    u = pool(3, m.per_step_conv("patch_embed.core3", s, k_t, b_t, pad=1))
    h, wd, _ = g.shape(u)
    s = g.lif("patch_embed.proj_lif3", u, ref_shape=[D, h, wd])
    rw, rb = m.affine_per_step(w.get("patch_embed.rpe_conv.weight", (D, D, 3, 3)), None, m.tsbn("patch_embed.rpe_bn", D))
    y = m.per_step_conv("patch_embed.rpe_conv", s, rw, rb, pad=1)
    x = g.add("patch_embed.out", "add", [y, u])
    n = h * wd
    x = g.add("patch_embed.tokens", "reshape", [x], shape=[n, D])
    hidden = hp["mlp_hidden"]
    for i in range(depth):
        p = f"block.{i}"
        s = g.lif(f"{p}.attn.shortcut_lif", x, ref_shape=[D, h, wd])
        qkv = []
        for name in ("q", "k", "v"):
            y = g.add(f"{p}.attn.{name}_conv", "linear", [s],
                      {"w": linear_runtime(w.get(f"{p}.attn.{name}_conv.weight", (D, D, 1, 1))), "b": np.zeros(D)},
                      in_kind="spike")
            qkv.append(m.table_lif(f"{p}.attn.{name}_lif", y, m.tsbn(f"{p}.attn.{name}_bn", D), [D, h, wd]))
        kv = g.add(f"{p}.attn.kv", "sdsa_kv", qkv[1:])
        kv = g.lif(f"{p}.attn.talking_heads_lif", kv, vth=0.5, ref_shape=[heads, 1, D // heads], ref_layout="flat")
        y = g.add(f"{p}.attn.mask", "mask", [qkv[0], kv])
        pw, pb = m.affine_per_step(w.get(f"{p}.attn.proj_conv.weight", (D, D, 1, 1)), w.get(f"{p}.attn.proj_conv.bias", (D,)),
                                   m.tsbn(f"{p}.attn.proj_bn", D))
        y = m.per_step_conv(f"{p}.attn.proj_conv", y, pw, pb, pad=0, linear=True)
        x = g.add(f"{p}.attn.residual", "add", [y, x])
        s = g.lif(f"{p}.mlp.fc1_lif", x, ref_shape=[D, h, wd])
        # a_t (W s + bias) + b_t: the conv bias goes into the neuron table's bias with b_t
        bias = w.get(f"{p}.mlp.fc1_conv.bias", (hidden,)).astype(np.float64)
        y = g.add(f"{p}.mlp.fc1_conv", "linear", [s],
                  {"w": linear_runtime(w.get(f"{p}.mlp.fc1_conv.weight", (hidden, D, 1, 1))), "b": np.zeros(hidden)},
                  in_kind="spike")
        a1, b1 = m.tsbn(f"{p}.mlp.fc1_bn", hidden)
        s = m.table_lif(f"{p}.mlp.fc2_lif", y, (a1, a1 * bias + b1), [hidden, h, wd])
        fw, fb = m.affine_per_step(w.get(f"{p}.mlp.fc2_conv.weight", (D, hidden, 1, 1)), w.get(f"{p}.mlp.fc2_conv.bias", (D,)),
                                   m.tsbn(f"{p}.mlp.fc2_bn", D))
        y = m.per_step_conv(f"{p}.mlp.fc2_conv", s, fw, fb, pad=0, linear=True)
        x = g.add(f"{p}.mlp.residual", "add", [y, x])
    f = g.add("features", "mean", [x])
    z = g.lif("head_lif", f, ref_shape=[D])
    k = hp["num_classes"]
    g.linear_bn("head", z, w.get("head.weight", (k, D)), w.get("head.bias", (k,)), None)
    meta = {"family": FAMILY, "hparams": hp, "T": T, "output": "head",
            "state_beyond_T": "clip mode resets every T steps (default); continuous mode holds step T-1's tables",
            "folding": ["TSBN in front of a LIF -> per-(t, channel) neuron tables r, c, theta, sign (exact; docs/SEMANTICS.md, Neurons)",
                        "Spatial-Core branches + pointwise conv -> one 3x3 kernel per step (float64)",
                        "TSBN feeding a membrane shortcut -> per-step weight tables"],
            "reading": "evrt's reading of RTFormer (no public code): tools/reference/rtformer.py"}
    return g, meta, w.unused()
