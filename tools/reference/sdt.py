"""Spike-Driven Transformer v1 (BICLab/Spike-Driven-Transformer ``model/spikeformer.py``,
``module/{sps,ms_conv}.py``; docs/SEMANTICS.md "Families").

Attribute names reproduce the reference keys exactly (112 tensors for the gesture config, including
the unused ``attn.talking_heads`` conv; ``attn.attn_lif`` and ``patch_embed.rpe_lif`` exist but are
never called, as in the reference).

Forward, per timestep: MS_SPS stem (conv → BN → LIF → pool_i if ``pooling_stat[i] == '1'``; the
4th pool acts on the BN output before the LIF, −inf padding), ``x0 = BN(rpe_conv(LIF(u))) + u``;
blocks with membrane shortcuts: ``x += BN(proj(SDSA(LIF(x))))`` where SDSA = column sum over tokens
of K∘V → LIF(v_th 0.5) → mask Q; ``x += BN(fc2(LIF(BN(fc1(LIF(x))))))``; head: token mean → LIF →
Linear → mean over time. ``dvs_mode=True`` adds the CIFAR10-DVS "Erode" 3×3 max filters.

Neuron layers in execution order (golden layout, B squeezed; Hs×Ws = stem output grid):
  patch_embed.proj_lif [T, D/8, H, W] (then pool_0), proj_lif1 [T, D/4, ·, ·], proj_lif2 [T, D/2, ·, ·],
  patch_embed.proj_lif3 [T, D, Hs, Ws]
  block.i.attn.shortcut_lif, q_lif, k_lif, v_lif   [T, D, Hs, Ws]
  block.i.attn.talking_heads_lif                   [T, heads, 1, D/heads]   (the kv neuron)
  block.i.mlp.fc1_lif [T, D, Hs, Ws]               block.i.mlp.fc2_lif [T, hidden, Hs, Ws]
  head_lif [T, D]
"""
from __future__ import annotations

from torch import nn

from .neurons import lif


class Erode(nn.Module):
    """3×3 max filter over the last two axes of a 5-D tensor (kernel depth 1), −inf padding."""

    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 1, 1), padding=(0, 1, 1))

    def forward(self, x):
        return self.pool(x)


class MS_MLP_Conv(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.res = dim == hidden  # internal residual only when hidden == in (never in the DVS configs)
        self.fc1_conv = nn.Conv2d(dim, hidden, kernel_size=1, stride=1)
        self.fc1_bn = nn.BatchNorm2d(hidden)
        self.fc1_lif = lif()
        self.fc2_conv = nn.Conv2d(hidden, dim, kernel_size=1, stride=1)
        self.fc2_bn = nn.BatchNorm2d(dim)
        self.fc2_lif = lif()
        self.c_hidden = hidden

    def forward(self, x):  # x [T, B, C, H, W] real-valued
        T, B, C, H, W = x.shape
        identity = x
        y = self.fc1_bn(self.fc1_conv(self.fc1_lif(x).flatten(0, 1))).reshape(T, B, self.c_hidden, H, W)
        if self.res:
            y = identity + y
            identity = y
        y = self.fc2_bn(self.fc2_conv(self.fc2_lif(y.contiguous()).flatten(0, 1))).reshape(T, B, C, H, W)
        return y + identity


class MS_SSA_Conv(nn.Module):
    def __init__(self, dim: int, num_heads: int = 8, dvs: bool = False):
        super().__init__()
        assert dim % num_heads == 0, f"dim {dim} not divisible by num_heads {num_heads}"
        self.dim, self.num_heads, self.dvs = dim, num_heads, dvs
        if dvs:
            self.pool = Erode()
        self.scale = 0.125  # defined in the reference, not used by v1 SDSA
        for name in ("q", "k", "v"):
            setattr(self, f"{name}_conv", nn.Conv2d(dim, dim, kernel_size=1, stride=1, bias=False))
            setattr(self, f"{name}_bn", nn.BatchNorm2d(dim))
            setattr(self, f"{name}_lif", lif())
        self.attn_lif = lif(v_threshold=0.5)  # defined, never called (reference)
        self.talking_heads = nn.Conv1d(num_heads, num_heads, kernel_size=1, stride=1, bias=False)  # unused
        self.talking_heads_lif = lif(v_threshold=0.5)
        self.proj_conv = nn.Conv2d(dim, dim, kernel_size=1, stride=1)
        self.proj_bn = nn.BatchNorm2d(dim)
        self.shortcut_lif = lif()

    def _branch(self, name, s_flat, T, B, C, H, W):
        y = getattr(self, f"{name}_bn")(getattr(self, f"{name}_conv")(s_flat)).reshape(T, B, C, H, W)
        s = getattr(self, f"{name}_lif")(y.contiguous())
        if self.dvs and name != "q":
            s = self.pool(s)
        # [T,B,C,H,W] -> [T,B,heads,N,d], channel c = head·d + j, token n row-major
        return s.flatten(3).transpose(-1, -2).reshape(T, B, H * W, self.num_heads, C // self.num_heads) \
            .permute(0, 1, 3, 2, 4).contiguous()

    def forward(self, x):
        T, B, C, H, W = x.shape
        identity = x
        s = self.shortcut_lif(x).flatten(0, 1)
        q, k, v = (self._branch(n, s, T, B, C, H, W) for n in ("q", "k", "v"))
        kv = k.mul(v)
        if self.dvs:
            kv = self.pool(kv)
        kv = self.talking_heads_lif(kv.sum(dim=-2, keepdim=True))  # [T,B,heads,1,d]
        y = q.mul(kv)
        if self.dvs:
            y = self.pool(y)
        y = y.transpose(3, 4).reshape(T, B, C, H, W).contiguous()
        y = self.proj_bn(self.proj_conv(y.flatten(0, 1))).reshape(T, B, C, H, W)
        return y + identity


class MS_Block_Conv(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio, dvs=False):
        super().__init__()
        self.attn = MS_SSA_Conv(dim, num_heads=num_heads, dvs=dvs)
        self.drop_path = nn.Identity()  # never applied in the reference forward
        self.mlp = MS_MLP_Conv(dim, int(dim * mlp_ratio))

    def forward(self, x):
        return self.mlp(self.attn(x))


class MS_SPS(nn.Module):
    def __init__(self, in_channels: int = 2, embed_dims: int = 256, pooling_stat: str = "1111"):
        super().__init__()
        assert len(pooling_stat) == 4 and set(pooling_stat) <= {"0", "1"}, pooling_stat
        self.pooling_stat = pooling_stat
        chans = [in_channels, embed_dims // 8, embed_dims // 4, embed_dims // 2, embed_dims]
        for i, sfx in enumerate(("", "1", "2", "3")):
            setattr(self, f"proj_conv{sfx}", nn.Conv2d(chans[i], chans[i + 1], 3, 1, 1, bias=False))
            setattr(self, f"proj_bn{sfx}", nn.BatchNorm2d(chans[i + 1]))
            setattr(self, f"proj_lif{sfx}", lif())
            setattr(self, f"maxpool{sfx}", nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.rpe_conv = nn.Conv2d(embed_dims, embed_dims, 3, 1, 1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(embed_dims)
        self.rpe_lif = lif()  # defined, never called (reference)

    def forward(self, x):  # [T, B, C, H, W] -> real-valued [T, B, D, Hs, Ws]
        T, B = x.shape[:2]
        x = x.flatten(0, 1)
        for i, sfx in enumerate(("", "1", "2")):
            y = getattr(self, f"proj_bn{sfx}")(getattr(self, f"proj_conv{sfx}")(x))
            x = getattr(self, f"proj_lif{sfx}")(y.reshape(T, B, *y.shape[1:]).contiguous()).flatten(0, 1)
            if self.pooling_stat[i] == "1":
                x = getattr(self, f"maxpool{sfx}")(x.contiguous())
        u = self.proj_bn3(self.proj_conv3(x))
        if self.pooling_stat[3] == "1":   # pool on the real-valued BN output (−inf padding)
            u = self.maxpool3(u)
        s = self.proj_lif3(u.reshape(T, B, *u.shape[1:]).contiguous()).flatten(0, 1)
        x = self.rpe_bn(self.rpe_conv(s)) + u
        return x.reshape(T, B, *x.shape[1:]).contiguous()


class SDT(nn.Module):
    def __init__(self, num_classes: int = 11, embed_dims: int = 256, num_heads: int = 8, mlp_ratio: float = 4,
                 depths: int = 2, in_channels: int = 2, T: int = 16, pooling_stat: str = "0111",
                 dvs_mode: bool = False, TET: bool = False):
        super().__init__()
        self.T, self.TET, self.depths, self.num_classes = T, TET, depths, num_classes
        self.patch_embed = MS_SPS(in_channels, embed_dims, pooling_stat)
        self.block = nn.ModuleList([MS_Block_Conv(embed_dims, num_heads, mlp_ratio, dvs=dvs_mode)
                                    for _ in range(depths)])
        self.head_lif = lif()
        self.head = nn.Linear(embed_dims, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Conv2d):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def neuron_names(self) -> list[str]:
        names = [f"patch_embed.{n}" for n in ("proj_lif", "proj_lif1", "proj_lif2", "proj_lif3")]
        for i in range(self.depths):
            names += [f"block.{i}.attn.{n}" for n in ("shortcut_lif", "q_lif", "k_lif", "v_lif", "talking_heads_lif")]
            names += [f"block.{i}.mlp.fc1_lif", f"block.{i}.mlp.fc2_lif"]
        return names + ["head_lif"]

    def forward(self, x, steps: bool = False):
        """x [T, B, C, H, W] -> logits [B, K] (mean over time of per-step logits); steps=True also
        returns the per-step logits [T, B, K] (what TET configs output)."""
        x = self.patch_embed(x)
        for blk in self.block:
            x = blk(x)
        z = self.head_lif(x.flatten(3).mean(3))
        step_logits = self.head(z)
        logits = step_logits.mean(0)
        return (logits, step_logits) if steps else logits
