"""CSDformer-style conversion-oriented transformer (evrt's reading; SEMANTICS.md) — the quantised ANN that
`evrt/archs/csdformer.py` converts into an IF/DIF spiking network.

Input. The ANN sees ONE count frame per sample: every event of the clip, binned to the model grid
(`model_input`). Why not one ANN pass per frame: a converted SNN needs ~L steps per quantised layer to
express an activation as a spike count, so it cannot follow the input frame by frame anyway; and the
sum over frames is independent of how the clip is cut, so the same checkpoint serves any framing.
The SNN receives the same events as spikes into the first convolution (a conv of counts is the sum of
the convs of its events), then runs until the last layer has emitted its counts.

Every activation that the SNN carries as spikes is a quantised ReLU with L levels and a learned step:
q(x) = θ/L · clip(floor(x·L/θ + ½), 0, L) (QAT, straight-through estimator, LSQ-style gradient for θ).
  tokenizer:  conv3x3 → BN → q → maxpool3/2 → conv3x3 → BN → q → maxpool3/2 → tokens (N, D)
  attention:  Q, K, V = q(BN(Linear(x)));  A = q(ReLU(Q Kᵀ)/N) (NReLU; Q, K ≥ 0 so the ReLU is a no-op);
              O = q(A V);  x ← q(x + BN(Linear(O)))
  MLP:        x ← q(x + BN(Linear(q(BN(Linear(x))))))
  head:       Linear(mean over tokens of x)
Residuals: every residual sum is re-quantised by its own q. The residual stream is therefore always a
quantised (non-negative) map — in the SNN a spike train — and the neuron at the add integrates the skip
spikes (each worth the skip's step) plus the branch current; nothing real-valued crosses a block.
No biases in front of BN (BN's shift plays that role); in the SNN the folded shift is charged once into
the neuron's initial membrane, not every step.

State dict: `<quantiser>.theta` (1,) learned θ, `<quantiser>.L` () int64 level count; the usual conv /
linear / BN keys. `save_checkpoint` writes {'model': state_dict, 'args': Namespace}.

API for tools/train.py: build_model(**cfg), model_input(frames, img_size), calibrate(model, x),
train_quick(model, x, y, ...), evaluate(model, x, y), save_checkpoint(model, path, args).
"""
from __future__ import annotations

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULTS = dict(img_size=32, in_channels=2, embed_dim=32, num_heads=2, depth=1, mlp_ratio=2, L=4,
                num_classes=11, in_scale=1.0)


class QuantReLU(nn.Module):
    """q(x) = s·clip(floor(x/s + ½), 0, L), s = θ/L. The forward value is exactly that (no STE residue
    in the value); gradients: straight-through inside [0, L], LSQ-style for θ."""

    def __init__(self, L: int, theta: float = 1.0):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([float(theta)]))
        self.register_buffer("L", torch.tensor(int(L), dtype=torch.int64))
        self.record = False
        self.last_counts = None   # integer levels of the last forward (when record is on)

    def forward(self, x):
        L = self.L.to(x.dtype)
        s = self.theta.to(x.dtype) / L
        z = x / s
        n = torch.clamp(torch.floor(z + 0.5), 0, L)
        if self.record:
            self.last_counts = n.detach().clone()
        if not torch.is_grad_enabled():
            return n * s
        # value: n·s exactly (z − z.detach() is exactly 0); gradient: dz inside the range, 0 outside
        inside = ((z > -0.5) & (z < L + 0.5)).to(x.dtype)
        zq = n.detach() + (z - z.detach()) * inside
        return zq * s


def _bn_tokens(bn: nn.BatchNorm1d, x):
    return bn(x.transpose(1, 2)).transpose(1, 2)


class Tokenizer(nn.Module):
    def __init__(self, in_channels, embed_dim, L):
        super().__init__()
        c1 = max(embed_dim // 2, 4)
        self.conv1 = nn.Conv2d(in_channels, c1, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.act1 = QuantReLU(L)
        self.conv2 = nn.Conv2d(c1, embed_dim, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(embed_dim)
        self.act2 = QuantReLU(L)
        self.pool = nn.MaxPool2d(3, 2, 1)

    def forward(self, x):
        x = self.pool(self.act1(self.bn1(self.conv1(x))))
        x = self.pool(self.act2(self.bn2(self.conv2(x))))
        return x.flatten(2).transpose(1, 2)      # (B, N, D), N row-major over (H, W)


class Attention(nn.Module):
    def __init__(self, dim, heads, L):
        super().__init__()
        self.heads = heads
        for n in ("q", "k", "v"):
            setattr(self, f"{n}_linear", nn.Linear(dim, dim, bias=False))
            setattr(self, f"{n}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{n}_act", QuantReLU(L))
        self.attn_act = QuantReLU(L)
        self.out_act = QuantReLU(L)
        self.proj_linear = nn.Linear(dim, dim, bias=False)
        self.proj_bn = nn.BatchNorm1d(dim)

    def _branch(self, n, x):
        return getattr(self, f"{n}_act")(_bn_tokens(getattr(self, f"{n}_bn"), getattr(self, f"{n}_linear")(x)))

    def forward(self, x):
        b, n, d = x.shape
        split = lambda t: t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)   # noqa: E731
        q, k, v = (split(self._branch(name, x)) for name in ("q", "k", "v"))
        a = self.attn_act(F.relu(q @ k.transpose(-2, -1)) / n)          # NReLU, quantised
        o = self.out_act((a @ v).transpose(1, 2).reshape(b, n, d))
        return _bn_tokens(self.proj_bn, self.proj_linear(o))


class MLP(nn.Module):
    def __init__(self, dim, hidden, L):
        super().__init__()
        self.fc1_linear = nn.Linear(dim, hidden, bias=False)
        self.fc1_bn = nn.BatchNorm1d(hidden)
        self.fc1_act = QuantReLU(L)
        self.fc2_linear = nn.Linear(hidden, dim, bias=False)
        self.fc2_bn = nn.BatchNorm1d(dim)

    def forward(self, x):
        h = self.fc1_act(_bn_tokens(self.fc1_bn, self.fc1_linear(x)))
        return _bn_tokens(self.fc2_bn, self.fc2_linear(h))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, L):
        super().__init__()
        self.attn = Attention(dim, heads, L)
        self.act1 = QuantReLU(L)
        self.mlp = MLP(dim, int(dim * mlp_ratio), L)
        self.act2 = QuantReLU(L)

    def forward(self, x):
        x = self.act1(x + self.attn(x))
        return self.act2(x + self.mlp(x))


class CSDformer(nn.Module):
    def __init__(self, img_size=32, in_channels=2, embed_dim=32, num_heads=2, depth=1, mlp_ratio=2, L=4,
                 num_classes=11, in_scale=1.0):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by {num_heads} heads")
        self.cfg = dict(img_size=img_size, in_channels=in_channels, embed_dim=embed_dim, num_heads=num_heads,
                        depth=depth, mlp_ratio=mlp_ratio, L=L, num_classes=num_classes, in_scale=in_scale)
        self.in_scale = float(in_scale)
        self.patch_embed = Tokenizer(in_channels, embed_dim, L)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, L) for _ in range(depth))
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x):
        """x: count frame (B, C, img, img) (see model_input)."""
        x = self.patch_embed(x * self.in_scale if self.in_scale != 1.0 else x)
        for blk in self.blocks:
            x = blk(x)
        return self.head(x.mean(dim=1))

    def quantisers(self) -> dict[str, QuantReLU]:
        return {name: m for name, m in self.named_modules() if isinstance(m, QuantReLU)}

    @torch.no_grad()
    def forward_counts(self, x):
        """Logits and the integer level of every quantiser (name -> tensor, the ANN's layout)."""
        qs = self.quantisers()
        for m in qs.values():
            m.record = True
        try:
            logits = self(x)
        finally:
            for m in qs.values():
                m.record = False
        return logits, {name: m.last_counts for name, m in qs.items()}


def build_model(**cfg) -> CSDformer:
    return CSDformer(**{**DEFAULTS, **{k: v for k, v in cfg.items() if k in DEFAULTS}})


def model_input(frames: torch.Tensor, img_size: int) -> torch.Tensor:
    """(B, T, C, H, W) frames or (B, C, H, W) counts -> the clip's count frame on the model grid
    (B, C, img, img), binned by summing k×k blocks (exact on counts, matches the runtime's `bin`)."""
    x = frames.sum(dim=1) if frames.dim() == 5 else frames
    b, c, h, w = x.shape
    if h % img_size or w % img_size or h // img_size != w // img_size:
        raise ValueError(f"frames {h}x{w} cannot be binned to {img_size}x{img_size}")
    k = h // img_size
    if k > 1:
        x = x.reshape(b, c, img_size, k, img_size, k).sum(dim=(3, 5))
    return x


@torch.no_grad()
def calibrate(model: CSDformer, x: torch.Tensor, quantile: float = 0.99) -> None:
    """Set each θ to a quantile of its (positive) input on a batch, layer by layer in forward order, so
    that an untrained or fresh model uses its levels. BN running stats are left alone."""
    was = model.training
    model.eval()
    for m in model.quantisers().values():
        captured = {}

        def hook(mod, inp, out, captured=captured):
            captured["x"] = inp[0].detach()

        hd = m.register_forward_hook(hook)
        model(x)
        hd.remove()
        pos = captured["x"][captured["x"] > 0]
        m.theta.fill_(float(torch.quantile(pos.float()[:100_000], quantile)) if pos.numel() else 1.0)
    model.train(was)


@torch.no_grad()
def randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Random BN running statistics/affine (for random test checkpoints)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) * 0.5 + 0.5)
            m.weight.copy_(torch.rand(c, generator=g) * 1.0 + 0.5)
            m.bias.copy_(torch.randn(c, generator=g) * 0.3 + 0.2)


def train_quick(model: CSDformer, x: torch.Tensor, y: torch.Tensor, *, steps: int = 100, batch_size: int = 16,
                lr: float = 2e-3, weight_decay: float = 1e-4, seed: int = 0, calibrate_first: bool = True,
                augment=None, log=None) -> list[float]:
    """QAT with AdamW + cosine decay on in-memory data. x: frames (B, T, C, H, W) or count frames at
    any multiple of the model grid; y: class indices; augment: optional batch -> batch on count frames.
    θ is kept positive. Returns the loss per step."""
    torch.manual_seed(seed)
    dev = next(model.parameters()).device
    x = model_input(x, model.cfg["img_size"]).float()
    y = y.to(dev)
    if calibrate_first:
        calibrate(model, x[: min(len(x), 64)].to(dev))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    model.train()
    losses = []
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        idx = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=g)
        xb = x[idx].to(dev)
        xb = augment(xb) if augment else xb
        loss = F.cross_entropy(model(xb), y[idx.to(dev)])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for m in model.quantisers().values():
                m.theta.clamp_(min=1e-3)
        losses.append(loss.item())
        if log and (step % 20 == 0 or step == steps - 1):
            log(f"step {step} loss {losses[-1]:.4f}")
    model.eval()
    return losses


@torch.no_grad()
def evaluate(model: CSDformer, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64) -> float:
    model.eval()
    dev = next(model.parameters()).device
    x = model_input(x, model.cfg["img_size"]).float()
    correct = 0
    for i in range(0, len(x), batch_size):
        pred = model(x[i:i + batch_size].to(dev)).argmax(1).cpu()
        correct += int((pred == y[i:i + batch_size].cpu()).sum())
    return correct / max(len(x), 1)


def random_shift(x: torch.Tensor, max_px: int = 2) -> torch.Tensor:
    """Augmentation for count frames: one random translation per batch (zero fill)."""
    dy, dx = (int(v) for v in torch.randint(-max_px, max_px + 1, (2,)))
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def save_checkpoint(model: CSDformer, path, args=None) -> None:
    """{'model': state_dict, 'args': Namespace}; args gets the model config (and T=1: the clip is fed
    as one input step unless a framing says otherwise)."""
    ns = argparse.Namespace(**{**vars(args or argparse.Namespace())})
    for k, v in model.cfg.items():
        setattr(ns, k, v)
    if not hasattr(ns, "T"):
        ns.T = 1
    ns.arch = "csdformer"
    torch.save({"model": model.state_dict(), "args": ns}, path)


def num_quantised_layers(depth: int) -> int:
    """Quantisers on the longest path: 2 in the tokenizer, 6 per block (QKV, A, O, add, fc1, add)."""
    return 2 + 6 * depth


def snn_steps(depth: int, L: int, input_steps: int = 1) -> int:
    """Steps the DIF conversion needs for exact counts (see evrt/archs/csdformer.py)."""
    return input_steps + num_quantised_layers(depth) * (L - 1)


__all__ = ["DEFAULTS", "QuantReLU", "CSDformer", "build_model", "model_input", "calibrate", "randomize_bn",
           "train_quick", "random_shift", "evaluate", "save_checkpoint", "snn_steps"]
