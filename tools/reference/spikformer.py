"""Spikformer, DVS configuration (ZK-Zhou/spikformer ``cifar10dvs/model.py``; docs/SEMANTICS.md "Families").

Module attribute names reproduce the reference state_dict keys exactly (121 tensors for the default
config, including the unused ``pos_embed``, ``block.*.norm1/norm2`` and ``norm``; ``attn.res_lif`` and
``attn.attn_drop`` exist but are never called, as in the reference).

Forward, per timestep: SPS stem (4 × conv3x3 → BN → LIF → maxpool on spikes) and relative position
(conv3x3 → BN → LIF) added to the pooled spikes; blocks ``x += SSA(x); x += MLP(x)`` with spike
shortcuts; SSA scale 0.25 after ``(QKᵀ)V``, attention LIF threshold 0.5; head on the token mean,
then mean over time (``forward(steps=True)`` also returns the head applied per step).

Neuron layers in execution order (golden layout, B squeezed):
  patch_embed.proj_lif  [T, D/8, H, W]        patch_embed.proj_lif1 [T, D/4, H/2, W/2]
  patch_embed.proj_lif2 [T, D/2, H/4, W/4]    patch_embed.proj_lif3 [T, D, H/8, W/8]
  patch_embed.rpe_lif   [T, D, H/16, W/16]
  block.i.attn.{q_lif,k_lif,v_lif,attn_lif,proj_lif} [T, D, N]   (N = H/16·W/16, row-major;
      attn_lif channel c = head·(D/heads) + j)
  block.i.mlp.fc1_lif [T, hidden, N]          block.i.mlp.fc2_lif [T, D, N]
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from .neurons import lif


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1_conv = nn.Conv1d(dim, hidden, kernel_size=1, stride=1)
        self.fc1_bn = nn.BatchNorm1d(hidden)
        self.fc1_lif = lif()
        self.fc2_conv = nn.Conv1d(hidden, dim, kernel_size=1, stride=1)
        self.fc2_bn = nn.BatchNorm1d(dim)
        self.fc2_lif = lif()

    def forward(self, x):  # x [T, B, C, N]
        T, B, C, N = x.shape
        y = self.fc1_bn(self.fc1_conv(x.flatten(0, 1)))
        y = self.fc1_lif(y.reshape(T, B, -1, N).contiguous())
        y = self.fc2_bn(self.fc2_conv(y.flatten(0, 1)))
        return self.fc2_lif(y.reshape(T, B, C, N).contiguous())


class SSA(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        assert dim % num_heads == 0, f"dim {dim} not divisible by num_heads {num_heads}"
        self.dim, self.num_heads = dim, num_heads
        self.scale = 0.25  # DVS version: applied to (QKᵀ)V, not to QKᵀ
        for name in ("q", "k", "v"):
            setattr(self, f"{name}_conv", nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False))
            setattr(self, f"{name}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{name}_lif", lif())
        self.attn_drop = nn.Dropout(0.2)   # defined, never called (reference)
        self.res_lif = lif()               # defined, never called (reference)
        self.attn_lif = lif(v_threshold=0.5)
        self.proj_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = lif()

    def _spikes(self, name, x_flat, T, B, C, N):
        y = getattr(self, f"{name}_bn")(getattr(self, f"{name}_conv")(x_flat))
        return getattr(self, f"{name}_lif")(y.reshape(T, B, C, N).contiguous())

    def _heads(self, s, T, B, C, N):  # [T,B,C,N] -> [T,B,heads,N,d]
        return s.transpose(-1, -2).reshape(T, B, N, self.num_heads, C // self.num_heads).permute(0, 1, 3, 2, 4)

    def forward(self, x):  # x [T, B, C, N]
        T, B, C, N = x.shape
        xf = x.flatten(0, 1)
        q, k, v = (self._heads(self._spikes(n, xf, T, B, C, N), T, B, C, N) for n in ("q", "k", "v"))
        o = ((q @ k.transpose(-2, -1)) @ v) * self.scale
        o = self.attn_lif(o.transpose(3, 4).reshape(T, B, C, N).contiguous())
        y = self.proj_bn(self.proj_conv(o.flatten(0, 1)))
        return self.proj_lif(y.reshape(T, B, C, N))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio, norm_layer):
        super().__init__()
        self.norm1 = norm_layer(dim)       # unused in forward (reference)
        self.attn = SSA(dim, num_heads)
        self.drop_path = nn.Identity()     # reference never applies drop_path
        self.norm2 = norm_layer(dim)       # unused in forward (reference)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class SPS(nn.Module):
    def __init__(self, in_channels: int, embed_dims: int):
        super().__init__()
        chans = [in_channels, embed_dims // 8, embed_dims // 4, embed_dims // 2, embed_dims]
        for i, sfx in enumerate(("", "1", "2", "3")):
            setattr(self, f"proj_conv{sfx}", nn.Conv2d(chans[i], chans[i + 1], 3, 1, 1, bias=False))
            setattr(self, f"proj_bn{sfx}", nn.BatchNorm2d(chans[i + 1]))
            setattr(self, f"proj_lif{sfx}", lif())
            setattr(self, f"maxpool{sfx}", nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.rpe_conv = nn.Conv2d(embed_dims, embed_dims, 3, 1, 1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(embed_dims)
        self.rpe_lif = lif()

    def forward(self, x):  # [T, B, C, H, W] -> tokens [T, B, D, N]
        T, B = x.shape[:2]
        x = x.flatten(0, 1)
        for sfx in ("", "1", "2", "3"):   # pooling acts on spikes, after each LIF
            y = getattr(self, f"proj_bn{sfx}")(getattr(self, f"proj_conv{sfx}")(x))
            s = getattr(self, f"proj_lif{sfx}")(y.reshape(T, B, *y.shape[1:]).contiguous())
            x = getattr(self, f"maxpool{sfx}")(s.flatten(0, 1).contiguous())
        r = self.rpe_bn(self.rpe_conv(x))
        r = self.rpe_lif(r.reshape(T, B, *r.shape[1:]).contiguous()).flatten(0, 1)
        x = x + r
        return x.reshape(T, B, x.shape[1], -1).contiguous()


class Spikformer(nn.Module):
    def __init__(self, num_classes: int = 11, embed_dims: int = 256, num_heads: int = 16, mlp_ratios: float = 4,
                 depths: int = 2, in_channels: int = 2, T: int = 16, img_size_h: int = 128,
                 img_size_w: int = 128, patch_size: int = 16):
        super().__init__()
        self.T = T
        self.num_classes = num_classes
        self.depths = depths
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        # pos_embed is sized by patch_size in the reference and never used
        self.pos_embed = nn.Parameter(torch.zeros(1, (img_size_h // patch_size) * (img_size_w // patch_size),
                                                  embed_dims))
        self.patch_embed = SPS(in_channels, embed_dims)
        self.block = nn.ModuleList([Block(embed_dims, num_heads, mlp_ratios, norm_layer) for _ in range(depths)])
        self.norm = norm_layer(embed_dims)  # unused in forward (reference)
        self.head = nn.Linear(embed_dims, num_classes) if num_classes > 0 else nn.Identity()
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def neuron_names(self) -> list[str]:
        names = [f"patch_embed.{n}" for n in ("proj_lif", "proj_lif1", "proj_lif2", "proj_lif3", "rpe_lif")]
        for i in range(self.depths):
            names += [f"block.{i}.attn.{n}" for n in ("q_lif", "k_lif", "v_lif", "attn_lif", "proj_lif")]
            names += [f"block.{i}.mlp.fc1_lif", f"block.{i}.mlp.fc2_lif"]
        return names

    def forward_features(self, x):  # [T, B, C, H, W] -> [T, B, D]
        x = self.patch_embed(x)
        for blk in self.block:
            x = blk(x)
        return x.mean(3)

    def forward(self, x, steps: bool = False):
        """x [T, B, C, H, W] -> logits [B, K] = head(mean_t features); steps=True also returns
        the head applied to each step's features, [T, B, K] (same mean because the head is affine)."""
        f = self.forward_features(x)
        logits = self.head(f.mean(0))
        return (logits, self.head(f)) if steps else logits
