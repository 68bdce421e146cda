"""evrt export M.evrt -o M.nir: write a model as a NIR graph (docs/NIR.md says what NIR can express)."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import EvrtError


def register(sub):
    p = sub.add_parser("export", help="write an .evrt model as a NIR graph (.nir)")
    p.add_argument("model", help="an .evrt file or a zoo model name")
    p.add_argument("-o", "--output", required=True, help="output .nir file")
    p.add_argument("--dt", type=float, default=1e-3,
                   help="time step (s) that evrt's own LIF/IF neurons are written for (default 1 ms)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..nir import export_nir
    from ..zoo import resolve_model

    path = resolve_model(args.model)
    if Path(args.output).resolve() == Path(path).resolve():
        raise EvrtError(f"{args.output}: the output would overwrite the input model")
    g = export_nir(path, args.output, dt=args.dt)
    summary = {"output": args.output, "nodes": len(g.nodes), "edges": len(g.edges),
               "profile": g.metadata.get("evrt_profile"), "dt": g.metadata.get("evrt_dt")}
    print(json.dumps(summary) if args.json else
          f"wrote {args.output}: {len(g.nodes)} NIR nodes, {len(g.edges)} edges "
          f"(re-import with: evrt convert {args.output} -o M.evrt)")
    return 0
