"""Spiking neurons used by the reference models, and the exact LIF/PLIF recurrence (docs/SEMANTICS.md "Neurons").

Spikformer and SDT were written against spikingjelly 0.0.0.0.12 ``clock_driven``; SpikingResformer
against 0.0.0.0.14 ``activation_based``. The installed 0.0.0.0.14 ships both APIs, so each family
uses the one its authors used, with the ``torch`` backend (cupy does not run on CPU).
"""
from __future__ import annotations

import torch
from torch import nn
from spikingjelly.activation_based import neuron as ab_neuron
from spikingjelly.activation_based import surrogate as ab_surrogate
from spikingjelly.clock_driven import neuron as cd_neuron


def lif(v_threshold: float = 1.0) -> nn.Module:
    """Multi-step LIF as in Spikformer/SDT: tau 2, hard reset to 0, threshold test ``>=``."""
    return cd_neuron.MultiStepLIFNode(tau=2.0, v_threshold=v_threshold, detach_reset=True, backend="torch")


def ab_lif() -> nn.Module:
    """SpikingResformer's LIF (activation_based, multi-step)."""
    return ab_neuron.LIFNode(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0,
                             surrogate_function=ab_surrogate.ATan(), detach_reset=True, step_mode="m",
                             backend="torch", store_v_seq=False)


def ab_plif() -> nn.Module:
    """SpikingResformer's PLIF: one learned scalar ``w`` per layer, decay k = sigmoid(w)."""
    return ab_neuron.ParametricLIFNode(init_tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0,
                                       surrogate_function=ab_surrogate.ATan(), detach_reset=True,
                                       step_mode="m", backend="torch", store_v_seq=False)


NEURON_TYPES = (cd_neuron.MultiStepLIFNode, ab_neuron.LIFNode, ab_neuron.ParametricLIFNode)


def is_neuron(m: nn.Module) -> bool:
    return isinstance(m, NEURON_TYPES)


def decay(m: nn.Module):
    """k in ``H = V + (X - V)·k``: a python float for LIF, the module's own sigmoid(w) tensor for PLIF
    (evaluated exactly as spikingjelly does, in the parameter's dtype)."""
    if isinstance(m, ab_neuron.ParametricLIFNode):
        return m.w.detach().sigmoid()
    return 1.0 / float(m.tau)


def threshold(m: nn.Module) -> float:
    return float(m.v_threshold)


def recurrence(x_seq: torch.Tensor, k, v_th: float, v0=0.0):
    """docs/SEMANTICS.md "Neurons" four steps over axis 0. Returns (spikes, H, final V), all in x_seq's dtype.

    ``(X - V)·k`` is the same rounding as spikingjelly's ``(X - V)/tau`` for tau = 2 (k = 0.5 exactly)."""
    v = torch.zeros_like(x_seq[0]) + v0 if not torch.is_tensor(v0) else v0.clone()
    hs, ss = [], []
    for t in range(x_seq.shape[0]):
        h = v + (x_seq[t] - v) * k
        s = (h >= v_th).to(x_seq.dtype)
        v = torch.where(s.bool(), torch.zeros_like(h), h)
        hs.append(h)
        ss.append(s)
    return torch.stack(ss), torch.stack(hs), v


def reset_states(model: nn.Module) -> None:
    """Start a new sample: neuron membranes back to 0, TSBN step counters back to 0.
    (spikingjelly's reset_net does the same but warns on modules that are not MemoryModules.)"""
    for m in model.modules():
        r = getattr(m, "reset", None)
        if callable(r) and (is_neuron(m) or getattr(m, "_evrt_stateful", False)):
            r()
