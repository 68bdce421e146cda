"""evrt inspect MODEL.evrt: layers, shapes, parameters, T, framing, classes."""
from __future__ import annotations

import json


def register(sub):
    p = sub.add_parser("inspect", help="show a folded model: layers, shapes, parameters, T, framing, classes")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..engine import Session
    from ..ops import Kind, kind_of
    from ..zoo import resolve_model

    sess = Session(resolve_model(args.model), precision="float32")
    g, meta = sess.graph, sess.meta
    layers = [{"name": i.name, "type": i.op.type, "inputs": i.op.inputs, "shape": list(i.out_shape),
               "params": {k: list(v.shape) for k, v in i.op.params.items()},
               "attrs": {k: v for k, v in i.op.attrs.items() if k not in ("ref_shape", "ref_layout")}}
              for i in sess.impls]
    # the same count `evrt convert` prints, split so per-neuron coefficient arrays (imported NIR neurons)
    # are not mistaken for weights
    synaptic = sum(p.size for op in g.ops if kind_of(op.type) is Kind.SYNAPTIC for p in op.params.values())
    counts = {"total": g.num_params, "synaptic": synaptic, "other": g.num_params - synaptic}
    if args.json:
        print(json.dumps({"meta": meta, "params": g.num_params, "param_counts": counts, "layers": layers},
                         default=str))
        return 0
    print(f"family {meta.get('family')}  T={meta.get('T')}  parameters {g.num_params:,} ({synaptic:,} synaptic "
          f"weights and biases, {counts['other']:,} in other ops)  ops {len(g.ops)}")
    print(f"framing: {meta.get('frame')}   live stream: {meta.get('stream')}")
    print(f"classes ({meta.get('class_order', '')}): {', '.join(meta.get('classes', []))}")
    for note in meta.get("folding", []):
        print(f"folding: {note}")
    print(f"{'op':38s} {'type':12s} {'output shape':18s} params")
    for l in layers:
        params = ", ".join(f"{k}{tuple(v)}" for k, v in l["params"].items())
        print(f"{l['name'][:38]:38s} {l['type']:12s} {str(tuple(l['shape'])):18s} {params}")
    return 0
