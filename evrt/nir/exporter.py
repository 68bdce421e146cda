"""evrt Graph -> NIR graph (`evrt export M.evrt -o M.nir`).

What NIR can express is written. A graph with attention is refused naming its first attention op;
otherwise the first op NIR cannot express (max pooling, per-step weight tables, token reshapes, ...)
stops the export with a one-line error naming it.

- conv2d -> Conv2d (weights back to (Cout, Cin/g, kh, kw)); linear -> Affine on a vector, a 1x1
  Conv2d on a map; sumpool -> SumPool2d / AvgPool2d; scale -> Scale; add -> a Scale of ones fed by
  every addend (NIR sums the edges into a node); reshape to a vector -> Flatten; mean over a map ->
  AvgPool2d over the whole map + Flatten.
- Neurons: a `nir_neuron` (imported from NIR) is written back from the NIR parameters it was imported
  with, and the graph's metadata names the profile, so `evrt convert` re-imports it unchanged.
  evrt's own `lif` (v += (x − v)·k, spike when v >= vth, reset to 0) becomes NIR LIF with
  tau = dt/k, R = 1 under the `euler` profile; `if` (v += x, subtractive reset) becomes NIR IF with
  R = 1/dt. Their node metadata records evrt's spike rule (>=) and reset, which NIR's rules lack.
"""
from __future__ import annotations

import numpy as np

from ..errors import GraphError
from ..graph import Graph
from ..ops.base import out_size
from ..ops.converted import NO_CAP
from ..ops.synaptic import Conv2d
from . import require_nir

WHAT = {"ssa": "spiking self-attention", "sdsa_kv": "spike-driven self-attention", "dssa_scores": "DSSA attention",
        "dssa_out": "DSSA attention", "tprod_qk": "attention product", "tprod_av": "attention product",
        "mask": "attention mask", "maxpool": "max pooling", "maxpool_delta": "max pooling",
        "table_lif": "per-step neuron tables", "dif": "delayed IF with a spike budget",
        "scaled_add": "scaled residual", "token_sum": "token sum"}
ATTENTION = ("ssa", "sdsa_kv", "dssa_scores", "dssa_out", "tprod_qk", "tprod_av", "mask")
CAN = "NIR can express convolutions, linear layers, neurons, sum/average pooling, flatten and sums"


def _refuse(op, why=None):
    what = why or WHAT.get(op.type, op.type)
    raise GraphError(f"op {op.name!r} ({op.type}: {what}) has no NIR equivalent; {CAN}")


def export_nir(graph: Graph | str, path=None, dt: float = 1e-3):
    """-> nir.NIRGraph (written to path when given)."""
    nir = require_nir()
    if not isinstance(graph, Graph):
        graph = Graph.load(graph)
    from ..quant import dequantise_graph
    graph = dequantise_graph(graph)     # NIR weights are floats: an int8 model exports q * scale
    meta_nir = graph.meta.get("nir") or {}
    profile = meta_nir.get("profile", "euler")
    if "profile" in meta_nir:
        dt = float(meta_nir.get("dt", dt))
    # attention is the reason a spiking transformer cannot go to NIR: name it before any stem op
    for op in graph.ops:
        if op.type in ATTENTION:
            _refuse(op)
    nodes, edges = {}, []
    vals = {}          # op name -> (nir node name, NIR shape, perm, runtime shape)

    def put(name, node, srcs):
        nodes[name] = node
        for s in srcs:
            edges.append((vals[s][0], name))

    for op in graph.ops:
        a = op.attrs
        src = vals.get(op.inputs[0]) if op.inputs and op.inputs[0] in vals else None
        t = op.type
        if t == "events_in":
            if int(a.get("bin", 1)) != 1 or a.get("resize"):
                _refuse(op, "binned or resized input")
            shape = (int(a["channels"]), int(a["height"]), int(a["width"]))
            nodes["input"] = nir.Input(input_type={"input": np.array(shape)})
            vals[op.name] = ("input", shape, None, (shape[1], shape[2], shape[0]))
        elif t == "tensor_in":
            shape = tuple(a["ref_shape"])
            nodes["input"] = nir.Input(input_type={"input": np.array(shape)})
            vals[op.name] = ("input", shape, None, tuple(a["shape"]))
        elif t == "conv2d":
            w = op.params["w"]
            if w.ndim != 4:
                _refuse(op, "per-step weight tables")
            _need_map(op, src)
            c, h, wd = src[1]
            kh, kw, _, cout = w.shape
            s, p, d = Conv2d.geometry({"stride": int(a.get("stride", 1)), "pad": int(a.get("pad", 0)),
                                       **{k: a.get(k) for k in ("stride_hw", "pad_hw", "dilation")}})
            put(op.name, nir.Conv2d(input_shape=(h, wd), weight=np.ascontiguousarray(w.transpose(3, 2, 0, 1)),
                                    stride=s, padding=p, dilation=d, groups=int(a.get("groups", 1)),
                                    bias=_bias(op, cout)), op.inputs)
            ho, wo = out_size(h, kh, s[0], p[0], d[0]), out_size(wd, kw, s[1], p[1], d[1])
            vals[op.name] = (op.name, (cout, ho, wo), None, (ho, wo, cout))
        elif t == "linear":
            w = op.params["w"]
            if w.ndim != 2:
                _refuse(op, "per-step weight tables")
            cin, cout = w.shape
            if len(src[1]) == 3:       # token-wise on a map: a 1x1 conv
                c, h, wd = src[1]
                put(op.name, nir.Conv2d(input_shape=(h, wd), weight=w.T.reshape(cout, cin, 1, 1).copy(), stride=(1, 1),
                                        padding=(0, 0), dilation=(1, 1), groups=1, bias=_bias(op, cout)), op.inputs)
                vals[op.name] = (op.name, (cout, h, wd), None, (h, wd, cout))
            elif len(src[1]) == 1:
                wn = w.T.copy()
                if src[2] is not None:
                    wn = np.empty_like(wn)
                    wn[:, src[2]] = w.T
                put(op.name, nir.Affine(weight=wn, bias=_bias(op, cout)), op.inputs)
                vals[op.name] = (op.name, (cout,), None, (cout,))
            else:
                _refuse(op, "linear map on tokens")
        elif t in ("lif", "dif"):
            shape = src[1]
            vth = _to_nir(op.params.get("vth", np.array([float(a.get("vth", 1.0))])), src)
            if t == "lif":
                k = float(a.get("k", 0.5))
                node = nir.LIF(tau=np.full(shape, dt / k), r=np.ones(shape), v_leak=np.zeros(shape),
                               v_threshold=vth, v_reset=np.zeros(shape), metadata={"evrt_spike": ">="})
            else:
                # dif is a plain IF (soft reset, spike at v >= vth) only with no initial charge (its
                # default v_init is vth/2), no integrate-only delay and no spike cap
                v_init = op.params.get("v_init")
                if v_init is None or np.any(v_init != 0) or int(a.get("delay", 0)) or \
                        int(a.get("cap", NO_CAP)) != NO_CAP:
                    _refuse(op, "IF with an initial charge, a delay or a spike cap")
                node = nir.IF(r=np.full(shape, 1.0 / dt), v_threshold=vth, v_reset=np.zeros(shape),
                              metadata={"evrt_spike": ">=", "evrt_reset": "subtract"})
            put(op.name, node, op.inputs)
            vals[op.name] = (op.name, shape, src[2], src[3])
        elif t == "nir_neuron":
            kind = a.get("nir_type")
            fields = {k[4:]: op.params[k] for k in op.params if k.startswith("nir_")}
            cls = getattr(nir, kind, None)
            if cls is None or not fields:
                _refuse(op, "neuron without its NIR parameters")
            put(op.name, cls(**fields), op.inputs)
            vals[op.name] = (op.name, src[1], src[2], src[3])
        elif t == "delay":
            put(op.name, nir.Delay(delay=np.asarray(op.params["nir_delay"], np.float64)), op.inputs)
            vals[op.name] = (op.name,) + src[1:]
        elif t == "sumpool":
            _need_map(op, src)
            (kh, kw), st, pd = a["k"], a["stride"], a["pad"]
            scale = float(a.get("scale", 1.0))
            if scale == 1.0:
                node = nir.SumPool2d(kernel_size=np.array([kh, kw]), stride=np.array(st), padding=np.array(pd))
            elif np.isclose(scale, 1.0 / (kh * kw)):
                node = nir.AvgPool2d(kernel_size=np.array([kh, kw]), stride=np.array(st), padding=np.array(pd))
            else:
                _refuse(op, f"pooling scaled by {scale}")
            put(op.name, node, op.inputs)
            c, h, wd = src[1]
            ho, wo = (h + 2 * pd[0] - kh) // st[0] + 1, (wd + 2 * pd[1] - kw) // st[1] + 1
            vals[op.name] = (op.name, (c, ho, wo), None, (ho, wo, c))
        elif t == "scale":
            put(op.name, nir.Scale(scale=_to_nir(op.params["s"], src)), op.inputs)
            vals[op.name] = (op.name,) + src[1:]
        elif t == "add":
            shapes = {vals[s][1] for s in op.inputs}
            if len(shapes) != 1:
                _refuse(op, "sum of differently shaped tensors")
            put(op.name, nir.Scale(scale=np.ones(src[1])), op.inputs)
            vals[op.name] = (op.name,) + src[1:]
        elif t == "reshape":
            out = tuple(a["shape"])
            if len(out) == 1 and len(src[1]) == 3:
                c, h, wd = src[1]
                put(op.name, nir.Flatten(input_type={"input": np.array(src[1])}, start_dim=0, end_dim=-1), op.inputs)
                perm = np.arange(c * h * wd).reshape(c, h, wd).transpose(1, 2, 0).reshape(-1)
                vals[op.name] = (op.name, (c * h * wd,), perm, out)
            elif len(out) == 1 and len(src[1]) == 1:
                vals[op.name] = src
            else:
                _refuse(op, "reshape to tokens")
        elif t == "mean":
            _need_map(op, src)
            c, h, wd = src[1]
            put(op.name + ".pool", nir.AvgPool2d(kernel_size=np.array([h, wd]), stride=np.array([h, wd]),
                                                 padding=np.array([0, 0])), op.inputs)
            nodes[op.name] = nir.Flatten(input_type={"input": np.array([c, 1, 1])}, start_dim=0, end_dim=-1)
            edges.append((op.name + ".pool", op.name))
            vals[op.name] = (op.name, (c,), None, (c,))
        else:
            _refuse(op)
    out_op = graph.meta.get("output", graph.ops[-1].name)
    out = vals[out_op]
    nodes["output"] = nir.Output(output_type={"output": np.array(out[1])})
    edges.append((out[0], "output"))
    md = {"evrt_profile": profile, "evrt_dt": float(dt), "evrt_family": str(graph.meta.get("family", ""))}
    tw = (graph.meta.get("framing") or {}).get("time_window_us")
    if tw:
        md["evrt_time_window_us"] = int(tw)
    g = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False, metadata=md)
    if path is not None:
        nir.write(str(path), g)
    return g


def _need_map(op, src):
    if src is None or len(src[1]) != 3:
        _refuse(op, f"needs a (C, H, W) map, gets {None if src is None else src[1]}")


def _bias(op, cout):
    b = op.params.get("b")
    if b is None:
        return np.zeros(cout)
    if b.ndim != 1:
        _refuse(op, "per-step bias tables")
    return np.asarray(b, np.float64)


def _to_nir(arr, src):
    """A runtime per-channel / per-element array -> NIR layout of src's shape."""
    shape, perm, rt = src[1], src[2], src[3]
    arr = np.asarray(arr, np.float64)
    full = np.broadcast_to(arr.reshape(-1) if arr.size <= rt[-1] else arr.reshape(rt), rt)
    if len(shape) == 3:
        return np.ascontiguousarray(full.transpose(2, 0, 1))
    flat = full.reshape(-1)
    if perm is not None:
        out = np.empty_like(flat)
        out[perm] = flat
        return out
    return flat.copy()
