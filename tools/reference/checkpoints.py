"""Self-made reference checkpoints (docs/SEMANTICS.md "Parity"): randomised BN statistics so that neurons fire,
saved in each family's public training-script container format."""
from __future__ import annotations

import argparse

import torch
from torch import nn

from .neurons import is_neuron
from .rtformer import TSBN
from spikingjelly.activation_based import neuron as ab_neuron


def calibrate_on_events(model: nn.Module, spec, streams, neg_gamma_frac: float = 0.0) -> nn.Module:
    """randomize_for_firing(seed=3) with its running statistics fitted to the float32 frames of event
    `streams` (framed by `spec`, one batch entry per stream): the recipe of the parity tests, the parity
    report and the benchmarks."""
    import numpy as np
    from evrt.framing import clip_frames
    calib = torch.as_tensor(np.stack([clip_frames(e, spec, np.float32) for e in streams], axis=1))
    return randomize_for_firing(model, seed=3, calib=calib, neg_gamma_frac=neg_gamma_frac)


def _bn_like(m):
    return isinstance(m, (nn.modules.batchnorm._BatchNorm, TSBN))


@torch.no_grad()
def randomize_for_firing(model: nn.Module, seed: int = 0, neg_gamma_frac: float = 0.0,
                         firing_rate=(0.05, 0.3), plif_w=0.5, calib=None) -> nn.Module:
    """docs/SEMANTICS.md "Parity" distributions, in place: running mean ~N(0, 0.05), running var ~U(0.001, 0.05),
    γ ~U(0.5, 3) (a fraction ``neg_gamma_frac`` negated), β ~U(−0.3, 0.6). TSBN tables are drawn per
    step. SpikingResformer ``firing_rate_*`` buffers ~U(firing_rate); PLIF ``w`` ~N(0, plif_w)
    (k = sigmoid(w) ≠ 0.5, so the PLIF path is exercised). Returns the model (eval mode).

    Small test configurations (few channels, trunc-normal 0.02 weights) fire too little or too much
    with the fixed statistics; pass ``calib`` = frames [T,B,C,H,W] to fit the running statistics
    to the activations actually reaching each BN (see ``_calibrate``)."""
    g = torch.Generator().manual_seed(seed)

    def u(shape, lo, hi):
        return torch.rand(shape, generator=g, dtype=torch.float64) * (hi - lo) + lo

    for name, m in model.named_modules():
        if _bn_like(m):
            shape = m.running_mean.shape
            m.running_mean.copy_(torch.randn(shape, generator=g, dtype=torch.float64) * 0.05)
            m.running_var.copy_(u(shape, 0.001, 0.05))
            gamma = u(shape, 0.5, 3.0)
            if neg_gamma_frac > 0:
                gamma = torch.where(torch.rand(shape, generator=g, dtype=torch.float64) < neg_gamma_frac,
                                    -gamma, gamma)
            m.weight.copy_(gamma)
            m.bias.copy_(u(shape, -0.3, 0.6))
        elif isinstance(m, ab_neuron.ParametricLIFNode):
            m.w.copy_(torch.randn((), generator=g, dtype=torch.float64) * plif_w)
        for buf in ("firing_rate_x", "firing_rate_attn"):
            if hasattr(m, buf) and not is_neuron(m):
                b = getattr(m, buf)
                b.copy_(u(b.shape, *firing_rate))
    model.eval()
    if calib is not None:
        _calibrate(model, calib, g)
        _shift_shortcut_inputs(model, calib, g)
    return model


def _shortcut_pairs(model):
    """(neuron, BN whose output is added last before it) for neurons fed by SDT-style membrane
    shortcuts or by the max-pooled BN output — there the calibrated BN alone leaves the input biased
    upwards (max over 9 values, sums of several BN outputs) and the layer fires > 50 %."""
    from .rtformer import RTFormer
    from .sdt import SDT
    # the upstream SDT class (BICLab/Spike-Driven-Transformer, tools/bench_upstream.py) has the same names
    if not isinstance(model, (SDT, RTFormer)) and type(model).__name__ != "SpikeDrivenTransformer":
        return []
    stem_bn = "patch_embed.core3.pw_bn" if isinstance(model, RTFormer) else "patch_embed.proj_bn3"
    pairs = [("patch_embed.proj_lif3", stem_bn)]
    prev = "patch_embed.rpe_bn"
    for i in range(model.depths):
        pairs += [(f"block.{i}.attn.shortcut_lif", prev), (f"block.{i}.mlp.fc1_lif", f"block.{i}.attn.proj_bn")]
        prev = f"block.{i}.mlp.fc2_bn"
    return pairs + [("head_lif", prev)]


@torch.no_grad()
def _shift_shortcut_inputs(model, frames, g):
    """Shift β of the paired BN (one forward pass per pair, in order) so that a per-channel fraction
    ~U(0.1, 0.3) of the neuron's inputs reaches its threshold."""
    from .neurons import reset_states
    for neuron, bn_name in _shortcut_pairs(model):
        got = {}
        h = model.get_submodule(neuron).register_forward_pre_hook(lambda m, a: got.setdefault("x", a[0]))
        reset_states(model)
        try:
            model(frames)
        finally:
            h.remove()
        x = got["x"].transpose(0, 2).flatten(1).to(torch.float64)       # [C, rest]
        rate = torch.rand(x.shape[0], generator=g, dtype=torch.float64) * 0.2 + 0.1
        q = torch.stack([torch.quantile(x[c], 1 - float(rate[c])) for c in range(x.shape[0])])
        bn = model.get_submodule(bn_name)
        bn.bias.add_((float(model.get_submodule(neuron).v_threshold) - q).to(bn.bias))
    reset_states(model)


@torch.no_grad()
def _calibrate(model, frames, g):
    """One forward pass on ``frames`` [T,B,C,H,W]; just before each BN/TSBN runs, its running statistics
    are set from the input it actually sees (mean + 0.05·std·N(0,1), var · U(0.5, 2)), so that every
    layer is normalised whatever the weights; γ, β keep their fixed draws. SpikingResformer's
    firing_rate_x / firing_rate_attn are set to the measured per-head spike rates (what the training
    EMA would hold). Upstream layers are already calibrated when a layer is reached."""
    from .neurons import reset_states

    def set_stats(m, mean, var):
        noise = torch.randn(mean.shape, generator=g, dtype=torch.float64).to(mean)
        scale = (torch.rand(var.shape, generator=g, dtype=torch.float64) * 1.5 + 0.5).to(var)
        return mean + 0.05 * noise * var.clamp_min(1e-6).sqrt(), (var * scale).clamp_min(1e-4)

    def bn_pre(m, args):
        x = args[0]
        if isinstance(m, TSBN):
            for i in range(x.shape[0]):
                t = min(m.t + i, m.T - 1)
                dims = [0] + list(range(2, x[i].dim()))
                mu, var = set_stats(m, x[i].mean(dims), x[i].var(dims, unbiased=False))
                m.running_mean[t].copy_(mu)
                m.running_var[t].copy_(var)
        else:
            dims = [0] + list(range(2, x.dim()))
            mu, var = set_stats(m, x.mean(dims), x.var(dims, unbiased=False))
            m.running_mean.copy_(mu)
            m.running_var.copy_(var)

    def rate_hook(owner, buf):
        def hook(m, args, out):
            T, B, h = out.shape[0], out.shape[1], getattr(owner, buf).shape[2]
            rate = out.reshape(T, B, h, -1).mean((0, 1, 3)).clamp_min(1e-3)
            getattr(owner, buf).copy_(rate.reshape(1, 1, h, 1, 1))
        return hook

    handles = []
    for m in model.modules():
        if _bn_like(m):
            handles.append(m.register_forward_pre_hook(bn_pre))
        if hasattr(m, "firing_rate_x") and hasattr(m, "activation_in"):
            handles.append(m.activation_in.register_forward_hook(rate_hook(m, "firing_rate_x")))
            handles.append(m.activation_attn.register_forward_hook(rate_hook(m, "firing_rate_attn")))
    reset_states(model)
    try:
        model(frames)
    finally:
        for h in handles:
            h.remove()
        reset_states(model)


def _optimizer_state(model):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.06)
    return opt, opt.state_dict()


def _scheduler_state(opt):
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=200).state_dict()


def save_spikformer_checkpoint(model: nn.Module, path, args: argparse.Namespace, epoch: int = 0,
                               max_test_acc1: float = 0.0) -> dict:
    """ZK-Zhou/spikformer cifar10dvs/train.py container (docs/SEMANTICS.md "Checkpoints"), no ``module.`` prefix."""
    opt, opt_sd = _optimizer_state(model)
    ckpt = {"model": model.state_dict(), "optimizer": opt_sd, "lr_scheduler": _scheduler_state(opt),
            "epoch": epoch, "args": args, "max_test_acc1": max_test_acc1,
            "test_acc5_at_max_test_acc1": max_test_acc1}
    torch.save(ckpt, path)
    return ckpt


def save_sdt_checkpoint(model: nn.Module, path, args: argparse.Namespace, epoch: int = 0, metric: float = 0.0,
                        arch: str = "sdt") -> dict:
    """timm CheckpointSaver container (docs/SEMANTICS.md "Checkpoints"): ``.pth.tar`` with ``state_dict``, version 2."""
    _, opt_sd = _optimizer_state(model)
    amp = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
           "_growth_tracker": 0}  # what torch.cuda.amp.GradScaler.state_dict() holds
    ckpt = {"epoch": epoch, "arch": arch, "state_dict": model.state_dict(), "optimizer": opt_sd, "version": 2,
            "args": args, "amp_scaler": amp, "metric": metric}
    torch.save(ckpt, path)
    return ckpt


def save_rtformer_checkpoint(model: nn.Module, path, args: argparse.Namespace, epoch: int = 0,
                             metric: float = 0.0) -> dict:
    """Same container as SDT with ``arch='rtformer'`` (evrt's convention; no public RTFormer code)."""
    return save_sdt_checkpoint(model, path, args, epoch=epoch, metric=metric, arch="rtformer")


def save_spikingresformer_checkpoint(model: nn.Module, path, epoch: int = 0, max_acc1: float = 0.0) -> dict:
    """xyshi2000/SpikingResformer main.py container (docs/SEMANTICS.md "Checkpoints")."""
    opt, opt_sd = _optimizer_state(model)
    ckpt = {"model": model.state_dict(), "optimizer": opt_sd, "epoch": epoch, "max_acc1": max_acc1,
            "lr_scheduler": _scheduler_state(opt)}
    torch.save(ckpt, path)
    return ckpt


def load_state_dict(path) -> tuple[dict, dict]:
    """(state_dict, container) from any of the containers above; strips a ``module.`` prefix."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    sd = ckpt.get("state_dict") or ckpt.get("model") or ckpt
    sd = {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}
    return sd, ckpt
