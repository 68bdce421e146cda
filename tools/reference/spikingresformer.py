"""SpikingResformer (xyshi2000/SpikingResformer ``models/spikingresformer.py``; docs/SEMANTICS.md "Families").

``SpikingResformer(config='dvsg')`` = ``spikingresformer_dvsg`` (PLIF, 32/96/192, group 32, 11 classes);
``config='cifar'`` = ``spikingresformer_cifar`` (LIF, 64/192/384, group 64, 10 classes). Both use the
conv3x3 + BN prologue (no neuron, no pool), input 3×64×64 (third channel = ch0 + ch1, made by the
caller), T 16. Every hyper-parameter can be overridden for small test configurations.

Forward (membrane shortcuts, per timestep): prologue → stages; stage s>0 starts with
``Downsample = BN(conv3x3_s2(N(x)))``; then [DSSA, GWFFN] × blocks[s]. Head: spatial mean →
classifier (no bias) → mean over time.

Neuron layers in execution order (golden layout, B squeezed); per stage s with width C, grid H×W,
heads h, L = (H/p)·(W/p):
  layers.s.0.activation            [T, C_{s-1}, 2H, 2W]   (s > 0, the Downsample neuron)
  DSSA  layers.s.i.activation_in   [T, C, H, W]
        layers.s.i.activation_attn [T, h, L, H·W]          (stateful attention-map neuron)
        layers.s.i.activation_out  [T, C, H, W]
  GWFFN layers.s.j.up.0 [T, C, H, W]; layers.s.j.conv.0.0 [T, 4C, H, W]; layers.s.j.down.0 [T, 4C, H, W]
"""
from __future__ import annotations

import torch
from torch import nn
from spikingjelly.activation_based import layer

from .neurons import ab_lif, ab_plif

CONFIGS = {
    "dvsg": dict(planes=(32, 96, 192), num_heads=(1, 3, 6), patch_sizes=(4, 2, 1), blocks=(1, 2, 3),
                 group_size=32, neuron="plif", num_classes=11),
    "cifar": dict(planes=(64, 192, 384), num_heads=(1, 3, 6), patch_sizes=(4, 2, 1), blocks=(1, 2, 3),
                  group_size=64, neuron="lif", num_classes=10),
}


class BN(nn.Module):
    """BatchNorm2d applied to [T, B, C, H, W] with T·B merged (key prefix ``.bn``)."""

    def __init__(self, c):
        super().__init__()
        self.bn = nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)

    def forward(self, x):
        y = self.bn(x.flatten(0, 1))
        return y.reshape(x.shape[0], x.shape[1], *y.shape[1:])


def conv(cin, cout, k, stride=1, padding=0, groups=1):
    return layer.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=False, step_mode="m")


class GWFFN(nn.Module):
    def __init__(self, c, group_size, act, ratio=4):
        super().__init__()
        inner = c * ratio
        self.up = nn.Sequential(act(), conv(c, inner, 1), BN(inner))
        self.conv = nn.ModuleList([nn.Sequential(act(), conv(inner, inner, 3, 1, 1, groups=inner // group_size),
                                                 BN(inner))])
        self.down = nn.Sequential(act(), conv(inner, c, 1), BN(c))

    def forward(self, x):
        u = self.up(x)
        v = u
        for m in self.conv:
            v = m(v)
        return self.down(v + u) + x


class DSSA(nn.Module):
    def __init__(self, dim, num_heads, length, patch_size, act):
        super().__init__()
        assert dim % num_heads == 0
        self.dim, self.num_heads, self.lenth = dim, num_heads, length
        # EMA firing rates used as attention scales; frozen at inference, must be > 0
        self.register_buffer("firing_rate_x", torch.zeros(1, 1, num_heads, 1, 1))
        self.register_buffer("firing_rate_attn", torch.zeros(1, 1, num_heads, 1, 1))
        self.momentum = 0.999
        self.activation_in = act()
        self.W = conv(dim, 2 * dim, patch_size, patch_size)
        self.norm = BN(2 * dim)
        self.activation_attn = act()
        self.activation_out = act()
        self.Wproj = conv(dim, dim, 1)
        self.norm_proj = BN(dim)

    def _ema(self, name, value):
        buf = getattr(self, name)
        if torch.all(buf == 0):
            buf.copy_(value)
        buf.mul_(self.momentum).add_(value * (1 - self.momentum))

    def forward(self, x):
        T, B, C, H, W = x.shape
        h, d = self.num_heads, C // self.num_heads
        s = self.activation_in(x)
        y = self.norm(self.W(s)).reshape(T, B, h, 2 * d, -1)
        y1, y2 = y[:, :, :, :d, :], y[:, :, :, d:, :]
        s = s.reshape(T, B, h, d, -1)
        if self.training:
            self._ema("firing_rate_x", s.detach().mean((0, 1, 3, 4), keepdim=True))
        a = (y1.transpose(-1, -2) @ s) * (1.0 / torch.sqrt(self.firing_rate_x * d))
        a = self.activation_attn(a)                           # [T, B, h, L, HW]
        if self.training:
            self._ema("firing_rate_attn", a.detach().mean((0, 1, 3, 4), keepdim=True))
        o = (y2 @ a) * (1.0 / torch.sqrt(self.firing_rate_attn * self.lenth))
        o = self.activation_out(o.reshape(T, B, C, H, W))
        return self.norm_proj(self.Wproj(o)) + x


class DownsampleLayer(nn.Module):
    def __init__(self, cin, cout, act, stride=2):
        super().__init__()
        self.conv = conv(cin, cout, 3, stride, 1)
        self.norm = BN(cout)
        self.activation = act()

    def forward(self, x):
        return self.norm(self.conv(self.activation(x)))


class SpikingResformer(nn.Module):
    def __init__(self, config: str = "dvsg", *, num_classes: int | None = None, T: int = 16, img_size: int = 64,
                 in_channels: int = 3, planes=None, num_heads=None, patch_sizes=None, blocks=None,
                 group_size: int | None = None, neuron: str | None = None):
        super().__init__()
        cfg = dict(CONFIGS[config])
        for key, val in dict(planes=planes, num_heads=num_heads, patch_sizes=patch_sizes, blocks=blocks,
                             group_size=group_size, neuron=neuron, num_classes=num_classes).items():
            if val is not None:
                cfg[key] = val
        self.cfg, self.T, self.config = cfg, T, config
        act = {"plif": ab_plif, "lif": ab_lif}[cfg["neuron"]]
        planes = cfg["planes"]
        self.prologue = nn.Sequential(conv(in_channels, planes[0], 3, 1, 1), BN(planes[0]))
        self.layers = nn.Sequential()
        size = img_size
        for s, c in enumerate(planes):
            stage = nn.Sequential()
            if s:
                stage.append(DownsampleLayer(planes[s - 1], c, act))
                size //= 2
            for _ in range(cfg["blocks"][s]):
                p = cfg["patch_sizes"][s]
                stage.append(DSSA(c, cfg["num_heads"][s], (size // p) ** 2, p, act))
                stage.append(GWFFN(c, cfg["group_size"], act))
            self.layers.append(stage)
        self.avgpool = layer.AdaptiveAvgPool2d((1, 1), step_mode="m")
        self.classifier = layer.Linear(planes[-1], cfg["num_classes"], bias=False, step_mode="m")
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(m.weight, std=0.02)

    def neuron_names(self) -> list[str]:
        names = []
        for s, stage in enumerate(self.layers):
            for i, m in enumerate(stage):
                p = f"layers.{s}.{i}"
                if isinstance(m, DownsampleLayer):
                    names.append(f"{p}.activation")
                elif isinstance(m, DSSA):
                    names += [f"{p}.activation_in", f"{p}.activation_attn", f"{p}.activation_out"]
                else:
                    names += [f"{p}.up.0", f"{p}.conv.0.0", f"{p}.down.0"]
        return names

    def forward(self, x, steps: bool = False):
        """x [T, B, 3, H, W] -> logits [B, K] = mean over time of classifier(spatial mean)."""
        x = self.layers(self.prologue(x))
        step_logits = self.classifier(torch.flatten(self.avgpool(x), 2))
        logits = step_logits.mean(0)
        return (logits, step_logits) if steps else logits
