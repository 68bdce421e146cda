"""SpikingResformer (docs/SEMANTICS.md "Families") -> folded evrt graph.

dvsg: PLIF neurons, 3×64×64 input (antialiased 128→64 resize, third channel = ch0 + ch1),
stages 32/96/192 with 1/3/6 heads and DSSA patch sizes 4/2/1. cifar: LIF, 64/192/384.

Folds beyond BatchNorm:
- the sum channel: conv(W, [c0, c1, c0+c1]) = conv([W0+W2, W1+W2], [c0, c1]) — one input channel fewer;
- the DSSA scales σ1 = 1/sqrt(fr_x·d), σ2 = 1/sqrt(fr_attn·L) multiply the input of a PLIF; a (P)LIF
  with hard reset to 0 is linear in (input, membrane) up to the threshold test, so σ moves into the
  threshold (vth/σ) and the attention products stay pure accumulations. The trace's membrane is scaled
  back by σ (`h_scale`) when compared with the reference.
"""
from __future__ import annotations

import numpy as np

from ..errors import CheckpointError
from .common import GraphBuilder, Weights

FAMILY = "spikingresformer"
CONFIGS = {  # stage widths, heads, DSSA patch sizes, GWFFN group size, blocks per stage
    "dvsg": {"widths": (32, 96, 192), "heads": (1, 3, 6), "patches": (4, 2, 1), "group": 32, "blocks": (1, 2, 3)},
    "cifar": {"widths": (64, 192, 384), "heads": (1, 3, 6), "patches": (4, 2, 1), "group": 64, "blocks": (1, 2, 3)},
}
BUILD_ARGS = ("input_size",)


def infer_hparams(state: dict, args: dict) -> dict:
    w = Weights(state, FAMILY)
    if not w.has("prologue.0.weight"):
        raise CheckpointError(f"{FAMILY}: no 'prologue.0.weight' — is this a SpikingResformer checkpoint?")
    c1 = w.get("prologue.0.weight").shape[0]
    stages, blocks = [], []
    s = 0
    while w.has(f"layers.{s}.0.conv.weight") or w.has(f"layers.{s}.0.W.weight"):
        i, n = 0, 0
        while any(k.startswith(f"layers.{s}.{i}.") for k in state):
            n += w.has(f"layers.{s}.{i}.W.weight")
            i += 1
        blocks.append(n)
        widths = w.get(f"layers.{s}.0.conv.weight").shape[0] if s else c1
        stages.append(widths)
        s += 1
    heads, patches = [], []
    for s_, width in enumerate(stages):
        first = 0 if s_ == 0 else 1
        heads.append(int(w.get(f"layers.{s_}.{first}.firing_rate_x").shape[2]))
        patches.append(int(w.get(f"layers.{s_}.{first}.W.weight").shape[2]))
    group = int(w.get(f"layers.0.{1}.conv.0.1.weight").shape[1])
    plif = w.has("layers.0.0.activation_in.w")
    return {"widths": stages, "heads": heads, "patches": patches, "blocks": blocks, "group": group,
            "neuron": "plif" if plif else "lif", "in_channels": int(w.get("prologue.0.weight").shape[1]),
            "num_classes": int(w.get("classifier.weight").shape[0]),
            "input_size": int(args.get("input_size") or args.get("img_size") or 64)}


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-np.float64(x))))


class _Mapper:
    def __init__(self, state, hp):
        self.w = Weights(state, FAMILY)
        self.g = GraphBuilder()
        self.hp = hp

    def neuron(self, name, src, ref_shape, *, vth=None, h_scale=None, ref_layout="channels_first"):
        k = _sigmoid(self.w.get(f"{name}.w", ())) if self.hp["neuron"] == "plif" else 0.5
        return self.g.add(name, "lif", [src], None if vth is None else {"vth": vth}, k=float(k), vth=1.0,
                          ref_shape=ref_shape, ref_layout=ref_layout, h_scale=1.0 if h_scale is None else h_scale)

    def conv_bn(self, name, src, conv_key, bn_key, channels, **kw):
        return self.g.conv_bn(name, src, self.w.get(conv_key), None, self.w.bn(bn_key, channels), **kw)

    def dssa(self, p, x, C, heads, patch, hw):
        g, w = self.g, self.w
        H, W = hw
        d = C // heads
        s = self.neuron(f"{p}.activation_in", x, [C, H, W])
        y = self.conv_bn(f"{p}.W", s, f"{p}.W.weight", f"{p}.norm.bn", 2 * C, stride=patch)
        lh, lw, _ = g.shape(y)
        L = lh * lw
        y = g.add(f"{p}.W.tokens", "reshape", [y], shape=[L, 2 * C])
        st = g.add(f"{p}.activation_in.tokens", "reshape", [s], shape=[H * W, C])
        a = g.add(f"{p}.attn", "dssa_scores", [y, st], heads=heads)
        fr_x = w.get(f"{p}.firing_rate_x").reshape(-1).astype(np.float64)
        fr_a = w.get(f"{p}.firing_rate_attn").reshape(-1).astype(np.float64)
        if np.any(fr_x <= 0) or np.any(fr_a <= 0):
            raise CheckpointError(f"{FAMILY}: {p}.firing_rate_x/attn must be > 0 (got {fr_x.tolist()}, "
                                  f"{fr_a.tolist()}); an untrained checkpoint has zeros, which makes the "
                                  f"attention scale infinite")
        s1 = 1.0 / np.sqrt(fr_x * d)
        s2 = 1.0 / np.sqrt(fr_a * L)
        vth1 = np.broadcast_to((1.0 / s1)[:, None, None], (heads, L, H * W))
        sa = self.neuron(f"{p}.activation_attn", a, [heads, L, H * W], vth=vth1, ref_layout="same",
                         h_scale=s1[:, None, None].tolist())
        o = g.add(f"{p}.attn_out", "dssa_out", [y, sa], heads=heads)
        o = g.add(f"{p}.attn_out.map", "reshape", [o], shape=[H, W, C])
        so = self.neuron(f"{p}.activation_out", o, [C, H, W], vth=np.repeat(1.0 / s2, d),
                         h_scale=np.repeat(s2, d)[:, None, None].tolist())
        y = self.conv_bn(f"{p}.Wproj", so, f"{p}.Wproj.weight", f"{p}.norm_proj.bn", C)
        return g.add(f"{p}.residual", "add", [y, x])

    def gwffn(self, p, x, C, hw):
        g = self.g
        H, W = hw
        hid = 4 * C
        s = self.neuron(f"{p}.up.0", x, [C, H, W])
        u = self.conv_bn(f"{p}.up.1", s, f"{p}.up.1.weight", f"{p}.up.2.bn", hid)
        s = self.neuron(f"{p}.conv.0.0", u, [hid, H, W])
        groups = hid // self.hp["group"]
        v = self.conv_bn(f"{p}.conv.0.1", s, f"{p}.conv.0.1.weight", f"{p}.conv.0.2.bn", hid, pad=1, groups=groups)
        v = g.add(f"{p}.conv.residual", "add", [v, u])
        s = self.neuron(f"{p}.down.0", v, [hid, H, W])
        y = self.conv_bn(f"{p}.down.1", s, f"{p}.down.1.weight", f"{p}.down.2.bn", C)
        return g.add(f"{p}.residual", "add", [y, x])


def build_graph(state: dict, hp: dict, *, T: int, sensor: tuple[int, int] = (128, 128), input_size=None) -> tuple:
    m = _Mapper(state, hp)
    g, w = m.g, m.w
    size = int(input_size or hp["input_size"])
    width, height = sensor
    wt = w.get("prologue.0.weight")
    c1 = wt.shape[0]
    if wt.shape[1] == 3:   # fold the sum channel into the two polarity channels
        wt = np.concatenate([wt[:, :1] + wt[:, 2:3], wt[:, 1:2] + wt[:, 2:3]], axis=1)
    resize = None if size == width else "antialias"
    x = g.input(T=T, width=size, height=size, sensor=(width, height), resize=resize, sum_channel=True)
    x = g.conv_bn("prologue.0", x, wt, None, w.bn("prologue.1.bn", c1), pad=1,
                  in_kind="real" if resize else "count")
    H = W = size
    C = c1
    for s, (width_s, heads, patch, nblocks) in enumerate(zip(hp["widths"], hp["heads"], hp["patches"], hp["blocks"])):
        i = 0
        if s > 0:
            p = f"layers.{s}.0"
            sp = m.neuron(f"{p}.activation", x, [C, H, W])
            x = m.conv_bn(f"{p}.conv", sp, f"{p}.conv.weight", f"{p}.norm.bn", width_s, stride=2, pad=1)
            H, W, C = g.shape(x)
            i = 1
        for _ in range(nblocks):
            x = m.dssa(f"layers.{s}.{i}", x, C, heads, patch, (H, W))
            x = m.gwffn(f"layers.{s}.{i + 1}", x, C, (H, W))
            i += 2
    f = g.add("features", "mean", [x])
    k = hp["num_classes"]
    g.linear_bn("classifier", f, w.get("classifier.weight", (k, C)), None, None, in_kind="real")
    meta = {"family": FAMILY, "hparams": hp, "T": T, "output": "classifier",
            "folding": ["BatchNorm folded into the preceding conv (float64)",
                        "sum channel folded into the prologue conv (W0+W2, W1+W2)",
                        "DSSA scales from firing_rate_* buffers folded into the PLIF thresholds"]}
    return g, meta, w.unused()
