"""Discretisation profiles: how a NIR neuron's continuous-time parameters become one evrt step.

NIR states ODEs and leaves the time step, the reset, the spike count per step and any membrane floor
to the backend; each exporting tool meant its own choice. A profile turns a node's parameters into
the per-element coefficients of `evrt.kernels.nir.nir_neuron_step` (see that docstring for the step,
docs/NIR.md for the table):

- `euler` (evrt's default): forward Euler with time step dt (`--dt`, default 1 ms), NIR's own rules:
  one spike per step when v > v_threshold, reset to v_reset, no floor. IF and I integrate dt·R·I.
- `sinabs`: what `sinabs.nir.from_nir` builds. One step = one time unit (exp(-1/tau) decay, input
  added as is), several spikes per step (trunc(v / v_th) when v > 0), reset by subtracting one
  threshold per spike; IF gets the membrane floor -v_threshold.
- `snntorch`: what snnTorch's `export_to_nir` wrote (dt = 1e-4 s, tau = dt/(1-beta), R = tau/dt):
  beta·v + I, spike when v > v_th, reset by subtraction one step late (snnTorch's default
  reset_delay); CubaLIF updates the current first.
- `norse`: what Norse's `to_nir` wrote (dt = 1 ms): its exporter stores tau = dt / tau_inv, so one
  step decays by dt·tau_inv = dt²/tau; spike when v > v_th, reset to v_reset; CubaLIF adds the
  input to the current (weight w_in, not dt-scaled), drives the membrane with it, then decays it.
"""
from __future__ import annotations

import numpy as np

from ..errors import GraphError

PROFILES = ("euler", "sinabs", "snntorch", "norse")
DEFAULT_DT = {"euler": 1e-3, "sinabs": 1.0, "snntorch": 1e-4, "norse": 1e-3}
NEURON_KINDS = ("I", "LI", "IF", "LIF", "CubaLI", "CubaLIF", "Threshold")

# kernel flags
CUBA_NONE, CUBA_FIRST = 0, 1
FIRE_NONE, FIRE_GT, FIRE_GE, FIRE_MULTI = 0, 1, 2, 3
RESET_NONE, RESET_TO, RESET_SUB, RESET_SUB_LATE = 0, 1, 2, 3


def _get(node, name, shape, default=None):
    val = getattr(node, name, None)
    if val is None:
        if default is None:
            raise GraphError(f"NIR node lacks parameter {name!r}")
        val = default
    arr = np.asarray(val, np.float64)
    try:
        return np.broadcast_to(arr.reshape(arr.shape if arr.size > 1 else ()), shape).astype(np.float64)
    except ValueError:
        raise GraphError(f"parameter {name!r} of shape {arr.shape} does not fit neurons of shape {shape}") from None


def discretise(kind: str, node, shape: tuple, profile: str, dt: float) -> tuple[dict, dict]:
    """-> (params in NIR layout: a_m b_m c_m a_s b_s vth vreset vmin, attrs: cuba fire reset floor)."""
    if profile not in PROFILES:
        raise GraphError(f"unknown NIR profile {profile!r}; known: {', '.join(PROFILES)}")
    ones, zeros = np.ones(shape), np.zeros(shape)
    p = {"a_m": ones.copy(), "b_m": ones.copy(), "c_m": zeros.copy(), "a_s": zeros.copy(), "b_s": zeros.copy(),
         "vth": ones.copy(), "vreset": zeros.copy(), "vmin": zeros.copy()}
    a = {"cuba": CUBA_NONE, "fire": FIRE_GT, "reset": RESET_TO, "floor": False}

    if kind == "Threshold":
        p["vth"] = _get(node, "threshold", shape)
        p["a_m"] = zeros.copy()
        a["reset"] = RESET_NONE
        return p, a

    r = _get(node, "r", shape, 1.0)
    spiking = kind in ("IF", "LIF", "CubaLIF")
    if spiking:
        p["vth"] = _get(node, "v_threshold", shape)
        p["vreset"] = _get(node, "v_reset", shape, 0.0)
    else:
        a["fire"], a["reset"] = FIRE_NONE, RESET_NONE
    leaky = kind in ("LI", "LIF", "CubaLI", "CubaLIF")
    cuba = kind.startswith("Cuba")
    tau = _get(node, "tau_mem" if cuba else "tau", shape) if leaky else None
    v_leak = _get(node, "v_leak", shape, 0.0) if leaky else zeros
    if cuba:
        tau_syn = _get(node, "tau_syn", shape)
        w_in = _get(node, "w_in", shape, 1.0)
    if leaky and np.any(tau <= 0):
        raise GraphError("time constant tau must be > 0")

    if profile == "euler":
        if leaky:
            p["a_m"], p["b_m"], p["c_m"] = 1 - dt / tau, dt * r / tau, dt * v_leak / tau
        else:
            p["b_m"] = dt * r
        if cuba:
            a["cuba"] = CUBA_FIRST
            p["a_s"], p["b_s"] = 1 - dt / tau_syn, dt * w_in / tau_syn
    elif profile == "sinabs":
        if leaky:
            if np.any(v_leak != 0):
                raise GraphError("profile sinabs: v_leak must be 0 (sinabs has no leak potential)")
            p["a_m"], p["b_m"] = np.exp(-1.0 / tau), r
        else:
            p["b_m"] = r
        if cuba:      # sinabs' synaptic current: i = alpha_syn * (i + x)
            a["cuba"] = CUBA_FIRST
            alpha = np.exp(-1.0 / tau_syn)
            p["a_s"], p["b_s"] = alpha, alpha * w_in
        if spiking:
            a["fire"], a["reset"] = FIRE_MULTI, RESET_SUB
            if kind == "IF":
                a["floor"] = True
                p["vmin"] = -p["vth"]
    elif profile == "snntorch":
        if leaky:
            p["a_m"], p["b_m"], p["c_m"] = 1 - dt / tau, dt * r / tau, dt * v_leak / tau
        else:
            p["b_m"] = r
        if cuba:
            a["cuba"] = CUBA_FIRST
            p["a_s"], p["b_s"] = 1 - dt / tau_syn, dt * w_in / tau_syn
        if spiking:
            a["reset"] = RESET_SUB_LATE
    elif profile == "norse":
        if leaky:
            k = dt * dt / tau
            p["a_m"], p["b_m"], p["c_m"] = 1 - k, k * r, k * v_leak
        else:
            p["b_m"] = r
        if cuba:      # Norse adds the input to the current, then uses it, then decays it
            a["cuba"] = CUBA_FIRST
            p["a_s"], p["b_s"] = 1 - dt * dt / tau_syn, w_in
    return p, a


def semantics(kind: str, profile: str) -> str:
    """One line for inspect / the metadata: what the step does."""
    a = discretise_flags(kind, profile)
    fire = {FIRE_NONE: "no spikes (membrane out)", FIRE_GT: "spike if v > th", FIRE_GE: "spike if v >= th",
            FIRE_MULTI: "trunc(v/th) spikes if v > 0"}[a["fire"]]
    reset = {RESET_NONE: "", RESET_TO: ", reset to v_reset", RESET_SUB: ", subtract th per spike",
             RESET_SUB_LATE: ", subtract th one step later"}[a["reset"]]
    floor = ", floor -th" if a["floor"] else ""
    return f"{kind}/{profile}: {fire}{reset}{floor}"


def discretise_flags(kind, profile):
    class _N:   # placeholder parameters: only the flags are wanted
        r = tau = tau_mem = tau_syn = v_threshold = threshold = 1.0
        v_leak = 0.0
        v_reset = 0.0
        w_in = 1.0
    return discretise(kind, _N(), (1,), profile, DEFAULT_DT[profile])[1]
