"""Parity harness (docs/SEMANTICS.md "Parity"), used by the family tests and tools/parity_report.py: a
PyTorch reference checkpoint, its goldens, and the checks evrt must pass against them.

Checks:
- float64 parity mode: identical spikes in every neuron layer except where the golden pre-fire
  membrane is within 1e-9 of the threshold; logits within 1e-9 relative.
- float32 fast mode with teacher forcing (every neuron layer is fed the golden spikes of the layers
  before it): >= 99.9 % spike agreement per layer, identical where |H - V_th| > 1e-4.
- float32 end to end: same argmax, logits within 1e-3.
- counters: each synaptic op's ACs equal a count made here from the golden spike maps and the layer
  geometry alone (no evrt kernel involved).
"""
from __future__ import annotations

import numpy as np

from evrt.checkpoint import load_checkpoint
from evrt.archs import convert
from evrt.engine import Session
from evrt.events import make_events
from evrt.framing import FrameSpec, clip_frames, event_bins
from evrt.ops import Kind


def random_gesture_events(n, seed, sensor=(128, 128), duration_us=1_000_000):
    """Events clustered around a moving blob plus background noise (denser than uniform noise)."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, duration_us, n))
    phase = t / duration_us * 2 * np.pi
    w, h = sensor
    cx = w / 2 + w / 4 * np.cos(phase + seed)
    cy = h / 2 + h / 4 * np.sin(phase)
    blob = rng.random(n) < 0.8
    x = np.where(blob, rng.normal(cx, w / 12), rng.uniform(0, w, n))
    y = np.where(blob, rng.normal(cy, h / 12), rng.uniform(0, h, n))
    x = np.clip(x, 0, w - 1).astype(int)
    y = np.clip(y, 0, h - 1).astype(int)
    return make_events(t, x, y, rng.integers(0, 2, n))


def make_graph(ckpt_path, arch, **kw):
    return convert(load_checkpoint(ckpt_path), arch, **kw)


# ------------------------------------------------------------------------------------- spike checks

def compare_float64(graph, golden, events, frames=None):
    """Returns per-layer mismatch counts outside the 1e-9 band and the logits' relative error."""
    sess = Session(graph, "float64")
    sess.trace = True
    res = sess.run_clip(events) if frames is None else sess.run_clip(frames=frames)
    traces = sess.reference_traces()
    report = {}
    for name in golden["layers"]:
        assert name in traces, f"evrt has no neuron layer named {name!r} (has {sorted(traces)[:8]}...)"
        s, _ = traces[name]
        g_s, g_h = golden["spikes"][name], golden["h"][name]
        vth = golden["layer_meta"][name]["vth"]
        assert s.shape == g_s.shape, f"{name}: evrt {s.shape} vs reference {g_s.shape}"
        near = np.abs(g_h - vth) < 1e-9 * np.maximum(1.0, np.abs(g_h))
        report[name] = int(np.count_nonzero((s != g_s) & ~near))
    rel = np.max(np.abs(res.logits - golden["logits"])) / max(1e-300, np.max(np.abs(golden["logits"])))
    step_rel = np.max(np.abs(res.step_logits - golden["step_logits"])) / max(1e-300, np.max(np.abs(golden["step_logits"])))
    return report, rel, step_rel, sess


def teacher_forced_float32(graph, golden, events, frames=None):
    """Per layer: (agreement fraction, mismatches where |H - vth| > 1e-4)."""
    sess = Session(graph, "float32")
    sess.trace = True
    T = graph.meta["T"]
    steps = list(event_bins(events, T)) if frames is None else list(frames)
    if frames is None and graph.meta["frame"].get("resize") == "antialias":
        steps = list(clip_frames(events, FrameSpec.from_dict(graph.meta["frame"]), dtype=np.float32))
    sess.reset()
    for t, x in enumerate(steps):
        sess.step(x, force={n: golden["spikes"][n][t] for n in golden["layers"]})
    traces = sess.reference_traces()
    out = {}
    for name in golden["layers"]:
        _, h = traces[name]
        vth = golden["layer_meta"][name]["vth"]
        own = (h >= vth).astype(np.uint8)   # the neuron's own decision from its own membrane
        g_s, g_h = golden["spikes"][name], golden["h"][name]
        agree = float(np.mean(own == g_s))
        far = np.abs(g_h - vth) > 1e-4
        out[name] = (agree, int(np.count_nonzero((own != g_s) & far)))
    return out


# ---------------------------------------------------------------------------- independent AC counts

def _valid_taps(n_in, n_out, k, stride, pad, dil=1):
    """For each input coordinate, how many kernel taps map it onto an in-bounds output coordinate
    (tap kk of a dilated kernel reads input o*stride - pad + kk*dil)."""
    i = np.arange(n_in)[:, None]
    kk = np.arange(k)[None, :]
    num = i + pad - kk * dil
    ok = (num % stride == 0) & (num // stride >= 0) & (num // stride < n_out)
    return ok.sum(axis=1)


def _maxpool(x, k, s, p):
    """(H, W, C) max-pool with -inf padding, plain numpy."""
    h, w, c = x.shape
    xp = np.full((h + 2 * p, w + 2 * p, c), -np.inf)
    xp[p:p + h, p:p + w] = x
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.full((ho, wo, c), -np.inf)
    for dy in range(k):
        for dx in range(k):
            out = np.maximum(out, xp[dy:dy + s * ho:s, dx:dx + s * wo:s])
    return out


def _count_conv(op, ins, ctx):
    kh, kw, _, cout = op.params["w"].shape[-4:]
    s, p, g = op.attrs.get("stride", 1), op.attrs.get("pad", 0), op.attrs.get("groups", 1)
    # per-axis stride/pad and dilation (layers imported from NIR); absent: both axes alike, undilated
    sh, sw = op.attrs.get("stride_hw") or (s, s)
    ph, pw = op.attrs.get("pad_hw") or (p, p)
    dh, dw = op.attrs.get("dilation") or (1, 1)
    hh, ww = ctx["shape"][op.name][:2]
    if op.attrs.get("in_kind") == "real":   # real-valued input: MACs, not counted here
        return None
    if isinstance(ins[0], str):             # fed by raw events: each event is one spike
        ev = ctx["bins"][ctx["t"]]
        src = ctx["graph"].op(op.inputs[0]).attrs
        ty = _valid_taps(src["height"], hh, kh, sh, ph, dh)
        tx = _valid_taps(src["width"], ww, kw, sw, pw, dw)
        b = src.get("bin", 1)
        return int(np.sum(ty[ev["y"].astype(int) // b] * tx[ev["x"].astype(int) // b])) * cout
    x = ins[0]
    ty, tx = _valid_taps(x.shape[0], hh, kh, sh, ph, dh), _valid_taps(x.shape[1], ww, kw, sw, pw, dw)
    return int(np.sum(x * ty[:, None, None] * tx[None, :, None])) * (cout // g)


def _count_ssa(op, ins, ctx):
    q, k_, v_ = ins
    heads = op.attrs["heads"]
    d = q.shape[1] // heads
    n = 0
    for hd in range(heads):
        sl = slice(hd * d, (hd + 1) * d)
        n += int(np.sum(q[:, sl].sum(0) * k_[:, sl].sum(0)))   # non-zero terms of Q K^T
        a = q[:, sl] @ k_[:, sl].T
        n += int(np.sum((a != 0).astype(int) @ (v_[:, sl] != 0).astype(int)))
    return n


def _nz(x):
    return (x != 0).astype(np.int64)


def _count_tprod_qk(op, ins, ctx):
    """Non-zero terms a_t·B_t + A_{t-1}·b_t per head, from the cumulative spike counts kept here."""
    q, k_ = ins
    heads = op.attrs["heads"]
    A, B = ctx["state"].get(op.name, (np.zeros_like(q), np.zeros_like(k_)))
    Bt = B + k_
    d = q.shape[1] // heads
    n = 0
    for hd in range(heads):
        sl = slice(hd * d, (hd + 1) * d)
        n += int((_nz(q[:, sl]) @ _nz(Bt[:, sl]).T).sum() + (_nz(A[:, sl]) @ _nz(k_[:, sl]).T).sum())
    ctx["state"][op.name] = (A + q, Bt)
    return n


def _count_tprod_av(op, ins, ctx):
    a, v_ = ins
    heads = a.shape[0]
    A, V = ctx["state"].get(op.name, (np.zeros_like(a), np.zeros_like(v_)))
    Vt = V + v_
    d = v_.shape[1] // heads
    n = 0
    for hd in range(heads):
        sl = slice(hd * d, (hd + 1) * d)
        n += int((_nz(a[hd]) @ _nz(Vt[:, sl])).sum() + (_nz(A[hd]) @ _nz(v_[:, sl])).sum())
    ctx["state"][op.name] = (A + a, Vt)
    return n


def _count_sumpool(op, ins, ctx):
    """A window sum is a synapse whose weights are all 1: each input value adds once per window that
    holds it (count input: a count c is c ACs). Real-valued input gives MACs, not counted here."""
    if op.attrs.get("in_kind") == "real":
        return None
    x = ins[0]
    (kh, kw), (sh, sw), (ph, pw) = op.attrs["k"], op.attrs["stride"], op.attrs.get("pad", [0, 0])
    hh, ww = ctx["shape"][op.name][:2]
    ty, tx = _valid_taps(x.shape[0], hh, kh, sh, ph), _valid_taps(x.shape[1], ww, kw, sw, pw)
    return int(np.sum(x * ty[:, None, None] * tx[None, :, None]))


# an independent count for every op type whose declared kind counts ACs (evrt.ops.Kind.counts_acs);
# each is made from the layer's geometry and its input spike maps, never by an evrt kernel
COUNTS = {
    "conv2d": _count_conv,
    "linear": lambda op, ins, ctx: None if op.attrs.get("in_kind") == "real"
    else int(np.sum(ins[0])) * op.params["w"].shape[-1],
    "sdsa_kv": lambda op, ins, ctx: int(np.count_nonzero(ins[0] * ins[1])),
    "ssa": _count_ssa,
    "dssa_scores": lambda op, ins, ctx: int(np.count_nonzero(ins[1])) * ctx["shape"][op.inputs[0]][0],
    "dssa_out": lambda op, ins, ctx: int(np.count_nonzero(ins[1])) * (ctx["shape"][op.name][1] // op.attrs["heads"]),
    "tprod_qk": _count_tprod_qk,
    "tprod_av": _count_tprod_av,
    "scaled_add": lambda op, ins, ctx: int(np.sum(ins[1])),
    "sumpool": _count_sumpool,
    "scale": lambda op, ins, ctx: None,     # an element-wise multiply by real factors: MACs only, no ACs
}

# the inputs a count reads (default: all); the others may be real-valued (unknown here)
NEEDS = {"scaled_add": (1,), "dssa_scores": (1,), "dssa_out": (1,)}

# how routing and pooling ops pass spike maps on (plain numpy); other values are unknown (None)
VALUES = {
    "maxpool": lambda op, ins: _maxpool(ins[0], op.attrs["k"], op.attrs["stride"], op.attrs["pad"]),
    "add": lambda op, ins: sum(ins[1:], ins[0].copy()),
    "reshape": lambda op, ins: ins[0].reshape(op.attrs["shape"]),
    "mask": lambda op, ins: ins[0] * ins[1].reshape(1, -1),
    "token_sum": lambda op, ins: ins[0].reshape(-1, ins[0].shape[-1]).sum(0),
}


def independent_acs(graph, golden, events, sess):
    """ACs per counting op (declared kind synaptic or attention), per clip, from the golden spikes
    (runtime layout via the session's layout map) and layer geometry. Values that are not
    spike-derived (real-valued) are None and their ops are skipped; an op kind that counts ACs but has
    no independent count here is an error, not a silent skip."""
    T = graph.meta["T"]
    n_in = int(graph.meta.get("input_steps", T))   # converted models: input in the first steps only
    bins = list(event_bins(events, n_in)) + [events[:0]] * (T - n_in)
    ctx = {"graph": graph, "bins": bins, "state": {},
           "shape": {i.name: i.out_shape for i in sess.impls}}
    kinds = {i.name: i.kind for i in sess.impls}
    missing = sorted({op.type for op in graph.ops if kinds[op.name].counts_acs and op.type not in COUNTS})
    if missing:
        raise KeyError(f"no independent AC count for op type(s) {missing}; add one to tools/parity.py COUNTS")
    counts = {}
    for t in range(T):
        ctx["t"] = t
        vals = {}
        for op in graph.ops:
            ins = [vals.get(s) for s in op.inputs]
            kind = kinds[op.name]
            if kind is Kind.NEURON:
                vals[op.name] = sess.from_reference(op.name, golden["spikes"][op.name][t]).astype(np.float64) \
                    if op.name in golden["spikes"] else None
            elif kind is Kind.INPUT:
                vals[op.name] = "events"
            elif kind.counts_acs:
                need = [ins[i] for i in NEEDS.get(op.type, range(len(ins)))]
                known = all(v is not None for v in need) and (op.type == "conv2d" or not any(isinstance(v, str) for v in need))
                n = COUNTS[op.type](op, ins, ctx) if known else None
                counts[op.name] = None if n is None or counts.get(op.name, 0) is None else counts.get(op.name, 0) + n
                vals[op.name] = None
            else:
                f = VALUES.get(op.type)
                vals[op.name] = None if f is None or any(v is None or isinstance(v, str) for v in ins) else f(op, ins)
    return {k: v for k, v in counts.items() if v is not None}


def end_to_end_float32(graph, g64, g32, events):
    """evrt's float32 fast mode, run freely (no forcing), against the float64 truth.

    Folding BN into the weights changes float32 rounding (docs/SEMANTICS.md "Folding"), and near-threshold flips
    cascade through deep random models, so PyTorch's own float32 run also departs from float64. The
    bound is 1e-3 or twice PyTorch's own float32 error, whichever is larger; the prediction must
    match float64 unless float64's top-2 margin is inside that bound.
    Returns (evrt error, pytorch float32 error, bound, argmax ok)."""
    res = Session(graph, "float32").run_clip(events)
    truth = g64["logits"]
    err = float(np.max(np.abs(res.logits - truth)))
    ref_err = float(np.max(np.abs(g32["logits"].astype(np.float64) - truth)))
    bound = max(1e-3, 2 * ref_err)
    top2 = np.sort(truth)[-2:]
    argmax_ok = res.class_index == int(np.argmax(truth)) or (top2[1] - top2[0]) < bound
    return err, ref_err, bound, argmax_ok
