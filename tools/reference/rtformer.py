"""RTFormer-DVS — evrt's reading of arXiv 2406.14180 (no public code; docs/SEMANTICS.md "Neurons"). Provisional.

RTFormer = the SDT gesture backbone (``sdt.py``, docs/SEMANTICS.md "Families") with
  (a) every BatchNorm replaced by a **TSBN** (temporal-sliding BN): per-timestep affine γ_t, β_t and
      per-timestep running statistics μ_t, σ²_t, all of shape (T, C). Training normalises step t with the
      batch statistics of the causal window of steps [t−w+1, t] (w = ``window``, default 4); eval uses
      (μ_t, σ²_t). Steps past the trained T reuse step T−1's tables (evrt's "continuous" mode);
  (b) the stem convolutions after the first (proj_conv1..3) replaced by **Spatial-Core** units: five
      depthwise branches on the input (3×3, 3×3, 1×1, 1×1, identity), each followed by its own TSBN,
      summed; then a pointwise 1×1 conv + TSBN that changes the channel count;
  (c) SDSA attention, membrane shortcuts and the LIF head exactly as in SDT. SDT's dead modules
      (``talking_heads`` conv, ``attn_lif``, ``rpe_lif``) are dropped.

State-dict keys (evrt's reading; T = trained steps, C = channels at that point, D = embed_dims):
  patch_embed.proj_conv.weight                         (D/8, Cin, 3, 3)
  patch_embed.proj_bn.{weight,bias,running_mean,running_var}            (T, D/8)   TSBN
  patch_embed.core{k}.branches.{0,1}.conv.weight       (C, 1, 3, 3)   k = 1, 2, 3; depthwise, pad 1
  patch_embed.core{k}.branches.{2,3}.conv.weight       (C, 1, 1, 1)   depthwise
  patch_embed.core{k}.branches.{0..4}.tsbn.{weight,bias,running_mean,running_var}   (T, C)
                                                       (branch 4 = identity: it has no conv key)
  patch_embed.core{k}.pw_conv.weight                   (C_out, C, 1, 1)
  patch_embed.core{k}.pw_bn.{…}                        (T, C_out)        C: D/8→D/4→D/2→D
  patch_embed.rpe_conv.weight (D, D, 3, 3);  patch_embed.rpe_bn.{…} (T, D)
  block.i.attn.{q,k,v}_conv.weight (D, D, 1, 1);  block.i.attn.{q,k,v}_bn.{…} (T, D)
  block.i.attn.proj_conv.{weight (D, D, 1, 1), bias (D)};  block.i.attn.proj_bn.{…} (T, D)
  block.i.mlp.fc1_conv.{weight (Hd, D, 1, 1), bias};  fc1_bn.{…} (T, Hd)
  block.i.mlp.fc2_conv.{weight (D, Hd, 1, 1), bias};  fc2_bn.{…} (T, D)
  head.{weight (K, D), bias (K)}
TSBN has no ``num_batches_tracked``. All float32.

Per timestep (s = spikes, every TSBN uses step t's tables):
  s0 = LIF(TSBN(conv3x3(X_t)))                  → pool_0   ("patch_embed.proj_lif")
  s1 = LIF(Core1(s0))                           → pool_1   ("proj_lif1")
  s2 = LIF(Core2(s1))                           → pool_2   ("proj_lif2")
  u  = Core3(s2)                                → pool_3 on the real value (−inf pad); x0 = TSBN(rpe(LIF(u))) + u
  blocks / head as SDT.   Core(x) = TSBN_pw(pw( Σ_b TSBN_b(dw_b(x)) )).
Neuron layers: identical names and golden shapes to ``sdt.SDT``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .neurons import lif


class TSBN(nn.Module):
    """Temporal-sliding BatchNorm over a [T', B, C, ...] sequence; stateful step counter in eval."""
    _evrt_stateful = True  # reset_states() rewinds the step counter

    def __init__(self, num_features: int, T: int, window: int = 4, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.T, self.window, self.eps, self.momentum = T, window, eps, momentum
        self.weight = nn.Parameter(torch.ones(T, num_features))
        self.bias = nn.Parameter(torch.zeros(T, num_features))
        self.register_buffer("running_mean", torch.zeros(T, num_features))
        self.register_buffer("running_var", torch.ones(T, num_features))
        self.t = 0

    def reset(self):
        self.t = 0

    def extra_repr(self):
        return f"{self.weight.shape[1]}, T={self.T}, window={self.window}, eps={self.eps}"

    def forward(self, x):
        out = []
        for i in range(x.shape[0]):
            t = min(self.t + i, self.T - 1)
            if self.training:
                out.append(self._train_step(x, i, t))
            else:  # torch's own BN kernel, so the rounding is that of an ordinary eval BN (docs/SEMANTICS.md "Folding")
                out.append(F.batch_norm(x[i], self.running_mean[t], self.running_var[t], self.weight[t],
                                        self.bias[t], False, 0.0, self.eps))
        self.t += x.shape[0]
        return torch.stack(out)

    def _train_step(self, x, i, t):
        win = x[max(0, i - self.window + 1): i + 1].transpose(0, 1).flatten(0, 1)  # causal window
        dims = [0] + list(range(2, win.dim()))
        mean = win.mean(dims)
        var = win.var(dims, unbiased=False)
        n = win.numel() // win.shape[1]
        with torch.no_grad():
            self.running_mean[t].mul_(1 - self.momentum).add_(self.momentum * mean)
            self.running_var[t].mul_(1 - self.momentum).add_(self.momentum * var * n / max(n - 1, 1))
        shape = (1, -1) + (1,) * (x.dim() - 3)
        y = (x[i] - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + self.eps)
        return y * self.weight[t].reshape(shape) + self.bias[t].reshape(shape)


def _per_step(conv, x):
    """Apply a 2-D layer to [T', B, C, H, W] with T'·B merged."""
    y = conv(x.flatten(0, 1))
    return y.reshape(x.shape[0], x.shape[1], *y.shape[1:])


class Branch(nn.Module):
    def __init__(self, c, k, T, window):
        super().__init__()
        if k:
            self.conv = nn.Conv2d(c, c, k, 1, k // 2, groups=c, bias=False)
        else:
            self.conv = None  # identity branch
        self.tsbn = TSBN(c, T, window)

    def forward(self, x):
        return self.tsbn(x if self.conv is None else _per_step(self.conv, x))


class SpatialCore(nn.Module):
    KERNELS = (3, 3, 1, 1, 0)  # 0 = identity

    def __init__(self, cin, cout, T, window):
        super().__init__()
        self.branches = nn.ModuleList([Branch(cin, k, T, window) for k in self.KERNELS])
        self.pw_conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.pw_bn = TSBN(cout, T, window)

    def forward(self, x):
        y = self.branches[0](x)
        for b in self.branches[1:]:
            y = y + b(x)
        return self.pw_bn(_per_step(self.pw_conv, y))


class RTSPS(nn.Module):
    def __init__(self, in_channels, embed_dims, pooling_stat, T, window):
        super().__init__()
        self.pooling_stat = pooling_stat
        c = [in_channels, embed_dims // 8, embed_dims // 4, embed_dims // 2, embed_dims]
        self.proj_conv = nn.Conv2d(c[0], c[1], 3, 1, 1, bias=False)
        self.proj_bn = TSBN(c[1], T, window)
        self.proj_lif = lif()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for k in (1, 2, 3):
            setattr(self, f"core{k}", SpatialCore(c[k], c[k + 1], T, window))
            setattr(self, f"proj_lif{k}", lif())
            setattr(self, f"maxpool{k}", nn.MaxPool2d(3, 2, 1))
        self.rpe_conv = nn.Conv2d(embed_dims, embed_dims, 3, 1, 1, bias=False)
        self.rpe_bn = TSBN(embed_dims, T, window)

    def _pool(self, i, x):
        return _per_step(getattr(self, "maxpool" + ("", "1", "2", "3")[i]), x) if self.pooling_stat[i] == "1" else x

    def forward(self, x):
        s = self._pool(0, self.proj_lif(self.proj_bn(_per_step(self.proj_conv, x))))
        s = self._pool(1, self.proj_lif1(self.core1(s)))
        s = self._pool(2, self.proj_lif2(self.core2(s)))
        u = self._pool(3, self.core3(s))
        return self.rpe_bn(_per_step(self.rpe_conv, self.proj_lif3(u.contiguous()))) + u


class RTAttention(nn.Module):
    def __init__(self, dim, num_heads, T, window):
        super().__init__()
        self.num_heads = num_heads
        for n in ("q", "k", "v"):
            setattr(self, f"{n}_conv", nn.Conv2d(dim, dim, 1, bias=False))
            setattr(self, f"{n}_bn", TSBN(dim, T, window))
            setattr(self, f"{n}_lif", lif())
        self.talking_heads_lif = lif(v_threshold=0.5)
        self.proj_conv = nn.Conv2d(dim, dim, 1)
        self.proj_bn = TSBN(dim, T, window)
        self.shortcut_lif = lif()

    def forward(self, x):
        T, B, C, H, W = x.shape
        s = self.shortcut_lif(x)
        heads = []
        for n in ("q", "k", "v"):
            z = getattr(self, f"{n}_lif")(getattr(self, f"{n}_bn")(_per_step(getattr(self, f"{n}_conv"), s)))
            heads.append(z.flatten(3).transpose(-1, -2).reshape(T, B, H * W, self.num_heads, C // self.num_heads)
                         .permute(0, 1, 3, 2, 4))
        q, k, v = heads
        kv = self.talking_heads_lif(k.mul(v).sum(dim=-2, keepdim=True).contiguous())
        y = q.mul(kv).transpose(3, 4).reshape(T, B, C, H, W).contiguous()
        return self.proj_bn(_per_step(self.proj_conv, y)) + x


class RTMLP(nn.Module):
    def __init__(self, dim, hidden, T, window):
        super().__init__()
        self.fc1_conv = nn.Conv2d(dim, hidden, 1)
        self.fc1_bn = TSBN(hidden, T, window)
        self.fc1_lif = lif()
        self.fc2_conv = nn.Conv2d(hidden, dim, 1)
        self.fc2_bn = TSBN(dim, T, window)
        self.fc2_lif = lif()

    def forward(self, x):
        y = self.fc1_bn(_per_step(self.fc1_conv, self.fc1_lif(x)))
        return self.fc2_bn(_per_step(self.fc2_conv, self.fc2_lif(y))) + x


class RTBlock(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio, T, window):
        super().__init__()
        self.attn = RTAttention(dim, num_heads, T, window)
        self.mlp = RTMLP(dim, int(dim * mlp_ratio), T, window)

    def forward(self, x):
        return self.mlp(self.attn(x))


class RTFormer(nn.Module):
    def __init__(self, num_classes: int = 11, embed_dims: int = 256, num_heads: int = 8, mlp_ratio: float = 4,
                 depths: int = 2, in_channels: int = 2, T: int = 16, pooling_stat: str = "0111", window: int = 4):
        super().__init__()
        self.T, self.depths, self.window = T, depths, window
        self.patch_embed = RTSPS(in_channels, embed_dims, pooling_stat, T, window)
        self.block = nn.ModuleList([RTBlock(embed_dims, num_heads, mlp_ratio, T, window) for _ in range(depths)])
        self.head_lif = lif()
        self.head = nn.Linear(embed_dims, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m.groups == 1:
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)

    def neuron_names(self) -> list[str]:
        names = [f"patch_embed.{n}" for n in ("proj_lif", "proj_lif1", "proj_lif2", "proj_lif3")]
        for i in range(self.depths):
            names += [f"block.{i}.attn.{n}" for n in ("shortcut_lif", "q_lif", "k_lif", "v_lif", "talking_heads_lif")]
            names += [f"block.{i}.mlp.fc1_lif", f"block.{i}.mlp.fc2_lif"]
        return names + ["head_lif"]

    def forward(self, x, steps: bool = False):
        x = self.patch_embed(x)
        for blk in self.block:
            x = blk(x)
        step_logits = self.head(self.head_lif(x.flatten(3).mean(3)))
        logits = step_logits.mean(0)
        return (logits, step_logits) if steps else logits
