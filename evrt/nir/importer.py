"""NIR graph -> evrt Graph.

Layout: NIR tensors are (C, H, W) or flat vectors; evrt runs channels-last (H, W, C). Every value
keeps (runtime shape, NIR shape, perm): after a Flatten of a (C, H, W) map the runtime vector is the
(H, W, C) order, and perm[j] is the NIR index of runtime element j — the next Affine permutes its
weight columns and the next neuron its parameters once, at import, so nothing moves at run time.
Multiple edges into one node are summed (an `add` op), as NIR defines.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import GraphError
from ..fold import conv_runtime
from ..framing import FrameSpec
from ..graph import Graph, GraphBuilder
from . import profiles as P
from . import require_nir

SYNAPTIC = ("Conv2d", "Conv1d", "Affine", "Linear", "Scale", "SumPool2d", "AvgPool2d")
SUPPORTED = ("Input", "Output", "Flatten", "Delay") + SYNAPTIC + P.NEURON_KINDS


@dataclass
class Value:
    op: str                 # evrt op that produces it
    shape: tuple            # runtime shape
    nir_shape: tuple        # NIR shape
    kind: str               # events | spike | count | real
    perm: np.ndarray | None = None   # runtime -> NIR element index of a flattened map

    def to_runtime(self, arr: np.ndarray) -> np.ndarray:
        """A NIR-layout array of this value's shape -> runtime layout."""
        arr = np.broadcast_to(np.asarray(arr, np.float64), self.nir_shape)
        if len(self.nir_shape) == 3:
            return np.ascontiguousarray(arr.transpose(1, 2, 0))
        if len(self.nir_shape) == 2:         # (C, L) sequence -> (L, C)
            return np.ascontiguousarray(arr.T)
        flat = arr.reshape(-1)
        return flat[self.perm] if self.perm is not None else flat.copy()


def _pair(v, name, node):
    if isinstance(v, str):
        raise GraphError(f"NIR node {node!r}: {name}={v!r} is not supported (give numbers)")
    a = np.atleast_1d(np.asarray(v)).astype(np.int64).reshape(-1)
    if a.size == 1:
        return int(a[0]), int(a[0])
    if a.size != 2:
        raise GraphError(f"NIR node {node!r}: {name} {a.tolist()} must have 1 or 2 values")
    return int(a[0]), int(a[1])


def _order(nodes: dict, edges: list) -> list[str]:
    """Topological order; a cycle is named by a node on it."""
    preds = {n: [] for n in nodes}
    succ = {n: [] for n in nodes}
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise GraphError(f"NIR edge ({a!r}, {b!r}) names {end!r}, which is not a node")
        preds[b].append(a)
        succ[a].append(b)
    indeg = {n: len(p) for n, p in preds.items()}
    ready = sorted(n for n, d in indeg.items() if d == 0)
    order = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in succ[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    if len(order) != len(nodes):
        stuck = sorted(n for n in nodes if n not in order)
        raise GraphError(f"NIR graph has a cycle through node {stuck[0]!r} (recurrent connections are "
                         f"not supported)")
    return order, preds


def read_graph(source):
    nir = require_nir()
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise GraphError(f"{path}: no such NIR file")
        try:
            return nir.read(str(path))
        except Exception as exc:          # h5py / nir raise many kinds on a bad file
            raise GraphError(f"{path}: not a readable NIR file ({type(exc).__name__}: {exc})") from None
    return source


def import_nir(source, profile: str | None = None, dt: float | None = None, time_window_us: int | None = None,
               timesteps: int | None = None, classes: list[str] | None = None) -> "Graph":
    """source: a .nir path or a nir.NIRGraph. profile: None = the one an evrt-exported graph names, else
    euler. time_window_us: the framing (events -> one step per window);
    timesteps: the clip length T used by streaming readouts (defaults to 1 window per step, T=1)."""
    g = read_graph(source)
    md = getattr(g, "metadata", None) or {}
    if profile is None:       # a graph evrt exported says which profile it was imported with
        profile = _text(md.get("evrt_profile", "euler"))
        if dt is None and "evrt_dt" in md:
            dt = float(np.asarray(md["evrt_dt"]))
    if time_window_us is None and "evrt_time_window_us" in md:
        time_window_us = int(np.asarray(md["evrt_time_window_us"]))
    if profile not in P.PROFILES:
        raise GraphError(f"unknown NIR profile {profile!r}; known: {', '.join(P.PROFILES)}")
    dt = float(P.DEFAULT_DT[profile] if dt is None else dt)
    nodes, edges = dict(g.nodes), [tuple(e) for e in g.edges]
    for name, node in nodes.items():
        kind = type(node).__name__
        if kind == "NIRGraph":
            raise GraphError(f"NIR node {name!r} is a sub-graph (e.g. a recurrent layer); not supported")
        if kind not in SUPPORTED:
            raise GraphError(f"NIR node {name!r} has type {kind}, which evrt does not support "
                             f"(supported: {', '.join(SUPPORTED)})")
    order, preds = _order(nodes, edges)
    inputs = [n for n in order if type(nodes[n]).__name__ == "Input"]
    outputs = [n for n in order if type(nodes[n]).__name__ == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise GraphError(f"NIR graph must have exactly one Input and one Output node, has {len(inputs)} "
                         f"and {len(outputs)}")

    b = GraphBuilder()
    values: dict[str, Value] = {}
    taken = {"events"}
    semantics = {}

    def opname(n):
        name = str(n) if str(n) not in taken else f"nir_{n}"
        taken.add(name)
        return name

    for n in order:
        node = nodes[n]
        kind = type(node).__name__
        if kind == "Input":
            values[n] = _input(b, n, node, nodes, edges, opname(n))
            continue
        srcs = preds[n]
        if not srcs:
            raise GraphError(f"NIR node {n!r} ({kind}) has no input edge")
        x = values[srcs[0]]
        if len(srcs) > 1:
            others = [values[s] for s in srcs[1:]]
            for o in others:
                if o.shape != x.shape or (o.perm is None) != (x.perm is None) or \
                        (o.perm is not None and not np.array_equal(o.perm, x.perm)):
                    raise GraphError(f"NIR node {n!r}: its inputs have different shapes "
                                     f"{[values[s].nir_shape for s in srcs]}")
            if x.kind == "events" or any(o.kind == "events" for o in others):
                raise GraphError(f"NIR node {n!r}: summing the raw input is not supported")
            name = b.add(opname(f"{n}.sum"), "add", [values[s].op for s in srcs])
            x = Value(name, x.shape, x.nir_shape, "real", x.perm)
        if kind == "Output":
            values[n] = x
            continue
        values[n] = _node(b, n, kind, node, x, opname(n), profile, dt, semantics)
        _check_type(n, node, values[n])

    out = values[outputs[0]]
    src_desc = {"nir_file": str(source) if isinstance(source, (str, Path)) else None}
    if isinstance(source, (str, Path)):
        src_desc["sha256"] = hashlib.sha256(Path(source).read_bytes()).hexdigest()
    inp = values[inputs[0]]
    n_classes = int(np.prod(out.shape))
    T = int(timesteps or 1)
    meta = {"family": "nir", "T": T,
            "classes": list(classes) if classes else [str(i) for i in range(n_classes)],
            "readout": "mean_logits", "output": out.op, "source": src_desc, "folding": [],
            "unused_keys": [],
            "nir": {"profile": profile, "dt": dt, "input_shape": list(inp.nir_shape),
                    "output_shape": list(out.nir_shape), "neurons": semantics}}
    if len(classes or []) not in (0, n_classes):
        raise GraphError(f"{len(classes)} class names for {n_classes} outputs")
    if len(inp.nir_shape) == 3:
        c, h, w = inp.nir_shape
        meta["frame"] = FrameSpec(T, sensor_size=(w, h)).to_dict()
    if time_window_us:
        tw = int(time_window_us)
        if tw < 1:
            raise GraphError(f"time window must be >= 1 µs, got {tw}")
        meta["framing"] = {"kind": "time_window", "time_window_us": tw, "include_incomplete": False,
                           "start": "first_event"}
        meta["stream"] = {"window_us": tw}
    return b.graph(meta)


def _input(b, n, node, nodes, edges, name) -> Value:
    shape = tuple(int(v) for v in np.asarray(node.input_type["input"]).reshape(-1))
    if len(shape) in (2, 4) and shape[0] == 1:
        shape = shape[1:]           # some exporters keep the batch dimension of their sample input
    succ = [bb for a, bb in edges if a == n]
    first_conv = len(succ) == 1 and type(nodes[succ[0]]).__name__ == "Conv2d"
    if len(shape) == 3 and shape[0] == 2 and first_conv:
        # an event camera's two polarities: raw events go straight into the first conv's kernel
        c, h, w = shape
        b.add(name, "events_in", ["events"], width=w, height=h, channels=c, sensor_width=w, sensor_height=h, bin=1)
        return Value(name, (h, w, c), shape, "events")
    rt = (shape[1], shape[2], shape[0]) if len(shape) == 3 else (shape[1], shape[0]) if len(shape) == 2 else shape
    b.add(name, "tensor_in", ["events"], shape=list(rt), ref_shape=list(shape))
    return Value(name, rt, shape, "real")


def _in_kind(x: Value) -> str:
    return {"events": "events", "spike": "spike", "count": "count"}.get(x.kind, "real")


def _node(b, n, kind, node, x: Value, name, profile, dt, semantics) -> Value:
    if kind in ("Conv2d", "Conv1d"):
        return _conv(b, n, kind, node, x, name)
    if x.kind == "events":
        raise GraphError(f"NIR node {n!r} ({kind}) reads the raw event input; only a Conv2d may")
    if kind in ("Affine", "Linear"):
        w = np.asarray(node.weight, np.float64)
        if w.ndim != 2 or len(x.shape) != 1 or w.shape[1] != x.shape[0]:
            raise GraphError(f"NIR node {n!r} ({kind}): weight {w.shape} does not fit its input of shape "
                             f"{x.nir_shape} (flatten first)")
        bias = np.asarray(node.bias, np.float64).reshape(-1) if kind == "Affine" else np.zeros(w.shape[0])
        wr = w[:, x.perm] if x.perm is not None else w
        b.add(name, "linear", [x.op], {"w": np.ascontiguousarray(wr.T), "b": bias}, in_kind=_in_kind(x))
        return Value(name, (w.shape[0],), (w.shape[0],), "real")
    if kind == "Scale":
        s = x.to_runtime(np.asarray(node.scale, np.float64))
        b.add(name, "scale", [x.op], {"s": s})
        return Value(name, x.shape, x.nir_shape, "real", x.perm)
    if kind == "Delay":
        steps = np.asarray(node.delay, np.float64) / dt
        if np.any(steps < 0) or not np.allclose(steps, np.round(steps), rtol=0, atol=1e-6):
            raise GraphError(f"NIR node {n!r} (Delay): delays must be whole multiples of the time step "
                             f"dt={dt:g} s (got {np.unique(np.asarray(node.delay))[:4].tolist()})")
        d = x.to_runtime(np.round(steps))
        b.add(name, "delay", [x.op], {"d": d, "nir_delay": np.broadcast_to(np.asarray(node.delay, np.float64),
                                                                            x.nir_shape)},
              ref_shape=list(x.nir_shape))
        return Value(name, x.shape, x.nir_shape, x.kind, x.perm)
    if kind == "Flatten":
        start, end = int(getattr(node, "start_dim", 0)), int(getattr(node, "end_dim", -1))
        nd = len(x.nir_shape)
        if nd > 1 and (start % nd, end % nd) != (0, nd - 1):
            raise GraphError(f"NIR node {n!r} (Flatten): only flattening the whole tensor is supported "
                             f"(start_dim={start}, end_dim={end} on {x.nir_shape})")
        size = int(np.prod(x.shape))
        perm = x.perm
        if nd == 3:
            c, h, w = x.nir_shape
            perm = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
        elif nd == 2:
            c, length = x.nir_shape
            perm = np.arange(c * length).reshape(c, length).T.reshape(-1)
        b.add(name, "reshape", [x.op], shape=[size])
        return Value(name, (size,), (size,), x.kind, perm)
    if kind in ("SumPool2d", "AvgPool2d"):
        if len(x.shape) != 3:
            raise GraphError(f"NIR node {n!r} ({kind}) needs a (C, H, W) input, got {x.nir_shape}")
        k = _pair(node.kernel_size, "kernel_size", n)
        s = _pair(node.stride, "stride", n)
        p = _pair(node.padding, "padding", n)
        scale = 1.0 if kind == "SumPool2d" else 1.0 / (k[0] * k[1])
        b.add(name, "sumpool", [x.op], k=list(k), stride=list(s), pad=list(p), scale=scale, in_kind=_in_kind(x))
        ho, wo, c = b.shape(name)
        out_kind = "count" if kind == "SumPool2d" and x.kind in ("spike", "count") else "real"
        return Value(name, (ho, wo, c), (c, ho, wo), out_kind)
    if kind in P.NEURON_KINDS:
        try:
            params, attrs = P.discretise(kind, node, x.nir_shape, profile, dt)
        except GraphError as exc:
            raise GraphError(f"NIR node {n!r} ({kind}): {exc}") from None
        _evrt_overrides(node, attrs)
        rt = {k: x.to_runtime(v) for k, v in params.items()}
        # the node's own parameters, in NIR layout, so that `evrt export` writes them back unchanged
        for field in NIR_FIELDS:
            val = getattr(node, field, None)
            if val is not None and not isinstance(val, (str, bytes)):
                rt[f"nir_{field}"] = np.broadcast_to(np.asarray(val, np.float64), x.nir_shape)
        b.add(name, "nir_neuron", [x.op], rt, shape=list(x.shape), ref_shape=list(x.nir_shape),
              ref_layout="channels_first" if len(x.shape) in (2, 3) else "flat",
              ref_perm=None if x.perm is None else x.perm.tolist(), nir_type=kind, **attrs)
        semantics[name] = P.semantics(kind, profile)
        out_kind = {P.FIRE_NONE: "real", P.FIRE_MULTI: "count"}.get(attrs["fire"], "spike")
        return Value(name, x.shape, x.nir_shape, out_kind, x.perm)
    raise GraphError(f"NIR node {n!r}: type {kind} is not supported")


NIR_FIELDS = ("tau", "tau_mem", "tau_syn", "r", "v_leak", "v_threshold", "v_reset", "w_in", "threshold")


def _text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def _evrt_overrides(node, attrs):
    """Graphs written by `evrt export` say in node metadata where evrt's own neurons differ from NIR's
    rules (spike when v >= threshold; IF with subtractive reset), so that they re-import unchanged."""
    md = getattr(node, "metadata", None) or {}
    if _text(md.get("evrt_spike", "")) == ">=":
        attrs["fire"] = P.FIRE_GE
    if _text(md.get("evrt_reset", "")) == "subtract":
        attrs["reset"] = P.RESET_SUB


def _conv(b, n, kind, node, x: Value, name) -> Value:
    w = np.asarray(node.weight, np.float64)
    if kind == "Conv1d":
        return _conv1d(b, n, node, x, name)
    if len(x.shape) != 3:
        raise GraphError(f"NIR node {n!r} (Conv2d) needs a (C, H, W) input, got {x.nir_shape}")
    cout, cig, kh, kw = w.shape
    g = np.asarray(getattr(node, "groups", 1) if getattr(node, "groups", None) is not None else 1).reshape(-1)
    groups = int(g[0]) if g.size else 1
    h, wd, cin = x.shape
    if cin != cig * groups:
        raise GraphError(f"NIR node {n!r} (Conv2d): weight {w.shape} with groups={groups} expects {cig * groups} "
                         f"input channels, input has shape {x.nir_shape}")
    d = _pair(node.dilation, "dilation", n)
    s = _pair(node.stride, "stride", n)
    if isinstance(getattr(node, "padding", 0), (str, bytes)):
        p = tuple(_same_pad(node, n, "Conv2d", k, dd) for k, dd in zip((kh, kw), d))
    else:
        p = _pair(node.padding, "padding", n)
    if x.kind == "events" and groups != 1:
        raise GraphError(f"NIR node {n!r} (Conv2d): a grouped conv cannot read raw events")
    bias = np.asarray(node.bias, np.float64).reshape(-1) if getattr(node, "bias", None) is not None \
        else np.zeros(cout)
    if bias.size == 1 and cout > 1:
        bias = np.full(cout, float(bias[0]))
    b.add(name, "conv2d", [x.op], {"w": conv_runtime(w), "b": bias}, groups=groups,
          in_kind="count" if x.kind == "events" else _in_kind(x), **_geometry(s, p, d))
    ho, wo, _ = b.shape(name)
    return Value(name, (ho, wo, cout), (cout, ho, wo), "real")


def _same_pad(node, n, kind, k, d):
    """One axis's zero padding: an integer per axis, "valid" (0) or "same" (d(k-1)/2 each side when
    that is whole; torch pads unevenly otherwise, which a symmetric zero pad cannot express)."""
    pad = getattr(node, "padding", 0)
    if isinstance(pad, bytes):
        pad = pad.decode()
    if isinstance(pad, str):
        if pad == "valid":
            return 0
        if pad == "same" and d * (k - 1) % 2 == 0:
            return d * (k - 1) // 2
        raise GraphError(f"NIR node {n!r} ({kind}): padding {pad!r} is not supported with kernel {k}, dilation {d}")
    return None


def _geometry(s, p, d):
    """conv2d attributes: the plain stride/pad where both axes agree and there is no dilation (what
    every evrt-written file holds, run by the fast kernels), else the per-axis pairs and dilation."""
    if s[0] == s[1] and p[0] == p[1] and tuple(d) == (1, 1):
        return {"stride": int(s[0]), "pad": int(p[0])}
    return {"stride_hw": [int(v) for v in s], "pad_hw": [int(v) for v in p], "dilation": [int(v) for v in d]}


def _conv1d(b, n, node, x: Value, name) -> Value:
    """A (C, L) sequence as a one-row map: reshape (free) -> conv2d with a 1 x k kernel, padded and
    dilated along the length axis only -> reshape."""
    w = np.asarray(node.weight, np.float64)
    if len(x.shape) != 2:
        raise GraphError(f"NIR node {n!r} (Conv1d) needs a (C, L) input, got {x.nir_shape}")
    cout, cig, k = w.shape
    g = np.asarray(getattr(node, "groups", 1) if getattr(node, "groups", None) is not None else 1).reshape(-1)
    groups = int(g[0]) if g.size else 1
    length, cin = x.shape
    if cin != cig * groups:
        raise GraphError(f"NIR node {n!r} (Conv1d): weight {w.shape} with groups={groups} expects {cig * groups} "
                         f"input channels, input has shape {x.nir_shape}")
    s, d = (_one(v, what, n) for v, what in ((node.stride, "stride"), (node.dilation, "dilation")))
    p = _same_pad(node, n, "Conv1d", k, d)
    p = _one(node.padding, "padding", n, 0) if p is None else p
    bias = np.asarray(node.bias, np.float64).reshape(-1) if getattr(node, "bias", None) is not None else np.zeros(cout)
    if bias.size == 1 and cout > 1:
        bias = np.full(cout, float(bias[0]))
    row = b.add(f"{name}.row", "reshape", [x.op], shape=[1, length, cin])
    geo = {"stride": s, "pad": 0} if p == 0 and d == 1 else {"stride_hw": [1, s], "pad_hw": [0, p], "dilation": [1, d]}
    conv = b.add(f"{name}.conv", "conv2d", [row], {"w": conv_runtime(w[:, :, None, :]), "b": bias}, groups=groups,
                 in_kind=_in_kind(x), **geo)
    lo = b.shape(conv)[1]
    b.add(name, "reshape", [conv], shape=[lo, cout])
    return Value(name, (lo, cout), (cout, lo), "real")


def _one(v, what, n, lo=1):
    """A Conv1d scalar (stride, padding, dilation): an integer >= lo, or a one-element array of one."""
    a = np.asarray(v).reshape(-1)
    if a.size != 1 or not np.issubdtype(a.dtype, np.number) or a[0] != int(a[0]) or int(a[0]) < lo:
        raise GraphError(f"NIR node {n!r} (Conv1d): {what} {v!r:.40} must be one integer >= {lo}")
    return int(a[0])


def _check_type(n, node, v: Value):
    """NIR nodes may carry their output shape; when they do it must equal the one evrt computed."""
    ot = getattr(node, "output_type", None) or {}
    want = ot.get("output") if isinstance(ot, dict) else None
    if want is None or np.size(want) == 0:
        return
    want = tuple(int(a) for a in np.asarray(want).reshape(-1))
    if int(np.prod(want)) != int(np.prod(v.nir_shape)) or (len(want) == len(v.nir_shape) and want != v.nir_shape):
        raise GraphError(f"NIR node {n!r}: output shape {v.nir_shape} computed by evrt, the file says {want}")
