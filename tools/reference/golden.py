"""Golden outputs from a reference model (docs/SEMANTICS.md "Parity"): logits, per-step logits, and for every neuron
layer (by module path, in execution order) its spikes and its pre-fire membrane H.

H is not exposed by spikingjelly, so each neuron module is hooked: its input sequence X and initial
membrane are captured, and H is recomputed with docs/SEMANTICS.md "Neurons" four steps in the same dtype. The recomputed
spikes are compared with the module's own output (``mismatches``; 0 expected — bit-identical).

Layout: the reference layout of the tensor the neuron sees, with B squeezed when B == 1
([T, C, H, W] for conv maps, [T, C, N] for Spikformer tokens, [T, heads, 1, d] for SDT's kv neuron,
[T, heads, L, HW] for SpikingResformer's attention neuron, [T, D] for SDT's head neuron; the model
docstrings list every layer). With B > 1 the batch axis stays: [T, B, ...].
Spikes are stored as uint8, H / X in the run dtype.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import torch

from .neurons import decay, recurrence, reset_states, threshold


def neuron_modules(model) -> list[tuple[str, torch.nn.Module]]:
    return [(n, model.get_submodule(n)) for n in model.neuron_names()]


def _as_input(frames, dtype):
    x = torch.as_tensor(np.asarray(frames)) if not torch.is_tensor(frames) else frames
    x = x.to(dtype)
    return x.unsqueeze(1) if x.dim() == 4 else x


def golden_pair(model, spec, events) -> tuple[dict, dict]:
    """The float64 and float32 goldens of one event stream framed by ``spec`` (each precision framed in
    its own dtype, as evrt's parity and fast modes are)."""
    from evrt.framing import clip_frames
    return (run_golden(model, clip_frames(events, spec), torch.float64),
            run_golden(model, clip_frames(events, spec, np.float32), torch.float32))


@torch.no_grad()
def run_golden(model, frames, dtype=torch.float64, record_inputs: bool = False, strict: bool = True) -> dict:
    """Run a copy of ``model`` (cast to ``dtype``, eval, fresh state) on frames [T,C,H,W] or [T,B,C,H,W].

    Returns {'logits' [K] (or [B,K]), 'step_logits' [T,K], 'frames', 'layers' (ordered names),
    'spikes' {name: uint8}, 'h' {name}, 'x' {name} (if record_inputs), 'layer_meta' {name: {vth, k, shape}},
    'mismatches' {name: int}, 'dtype'}."""
    m = copy.deepcopy(model).to(dtype).eval()
    reset_states(m)
    x = _as_input(frames, dtype)
    squeeze = x.shape[1] == 1
    cap: dict = {}
    handles = []
    for name, mod in neuron_modules(m):
        def pre(mod, args, name=name):
            v = mod.v
            cap.setdefault(name, {"v0": v.clone() if torch.is_tensor(v) else float(v), "x": [], "s": []})

        def post(mod, args, out, name=name):
            cap[name]["x"].append(args[0].detach().clone())
            cap[name]["s"].append(out.detach().clone())

        handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    try:
        logits, step_logits = m(x, steps=True)
    finally:
        for h in handles:
            h.remove()

    def out(t):
        t = t.squeeze(1) if squeeze else t
        return t.cpu().numpy()

    res = {"logits": out(logits.unsqueeze(0))[0] if squeeze else logits.numpy(),
           "step_logits": out(step_logits), "frames": x.squeeze(1).numpy() if squeeze else x.numpy(),
           "layers": [], "spikes": {}, "h": {}, "x": {}, "layer_meta": {}, "mismatches": {},
           "dtype": str(dtype).replace("torch.", "")}
    for name, mod in neuron_modules(m):
        if name not in cap:
            continue  # layer not reached (should not happen)
        xs, ss = torch.cat(cap[name]["x"]), torch.cat(cap[name]["s"])
        k, vth = decay(mod), threshold(mod)
        s2, h, _ = recurrence(xs, k, vth, cap[name]["v0"])
        bad = int((s2 != ss).sum())
        if strict and bad:
            raise AssertionError(f"{name}: recomputed spikes differ from the module's output at {bad} places")
        res["layers"].append(name)
        res["spikes"][name] = out(ss).astype(np.uint8)
        res["h"][name] = out(h)
        if record_inputs:
            res["x"][name] = out(xs)
        res["mismatches"][name] = bad
        res["layer_meta"][name] = {"vth": vth, "k": float(k), "shape": list(res["h"][name].shape)}
    return res


def firing_rates(golden: dict) -> dict:
    return {n: float(golden["spikes"][n].mean()) for n in golden["layers"]}


def save_golden(path, golden: dict, **meta) -> None:
    """One ``.npz``: logits, step_logits, frames, ``spikes/<layer>``, ``h/<layer>``, ``x/<layer>`` and a
    JSON ``__meta__`` (layer order, per-layer vth / k / shape, dtype, caller's extra meta)."""
    arrays = {"logits": golden["logits"], "step_logits": golden["step_logits"], "frames": golden["frames"]}
    for kind in ("spikes", "h", "x"):
        for n, a in golden.get(kind, {}).items():
            arrays[f"{kind}/{n}"] = a
    info = {"layers": golden["layers"], "layer_meta": golden["layer_meta"], "dtype": golden["dtype"], **meta}
    arrays["__meta__"] = np.array(json.dumps(info))
    np.savez_compressed(path, **arrays)


def load_golden(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        info = json.loads(str(z["__meta__"]))
        res = {"logits": z["logits"], "step_logits": z["step_logits"], "frames": z["frames"],
               "layers": info["layers"], "layer_meta": info["layer_meta"], "dtype": info["dtype"],
               "spikes": {}, "h": {}, "x": {}, "meta": info}
        for key in z.files:
            kind, _, name = key.partition("/")
            if kind in ("spikes", "h", "x") and name:
                res[kind][name] = z[key]
    return res
