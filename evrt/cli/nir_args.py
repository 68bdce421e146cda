"""`evrt convert MODEL.nir` options and handler (kept beside cmd_convert so that file stays small)."""
from __future__ import annotations

import json

from ..errors import EvrtError


def add_nir_args(p):
    from ..nir.profiles import PROFILES
    g = p.add_argument_group("NIR graphs (.nir)")
    g.add_argument("--nir-profile", choices=PROFILES,
                   help="discretisation: what the exporting tool meant (docs/NIR.md; default: euler, or the "
                        "profile a graph written by `evrt export` names)")
    g.add_argument("--dt", type=float, help="time step in seconds for the profile (default: the profile's)")
    g.add_argument("--time-window-us", type=int,
                   help="framing: events of this many µs make one step (tonic ToFrame(time_window))")


def convert_nir(args, classes) -> int:
    """The NIR branch of `evrt convert` (cmd_convert has checked -o and read --classes)."""
    from ..nir import import_nir

    graph = import_nir(args.checkpoint, profile=args.nir_profile, dt=args.dt, time_window_us=args.time_window_us,
                       timesteps=args.timesteps, classes=classes)
    try:
        graph.save(args.output, precision=args.precision)
    except OSError as e:
        raise EvrtError(f"-o {args.output}: cannot write ({e.strerror or e})") from None
    meta = graph.meta
    n_params = graph.num_params
    summary = {"output": args.output, "arch": "nir", "profile": meta["nir"]["profile"], "dt": meta["nir"]["dt"],
               "T": meta["T"], "params": n_params, "precision": args.precision, "ops": len(graph.ops), "classes": meta["classes"],
               "framing": meta.get("framing")}
    if args.json:
        print(json.dumps(summary))
    else:
        tw = (meta.get("framing") or {}).get("time_window_us")
        print(f"wrote {args.output}: NIR graph, profile {summary['profile']} (dt={summary['dt']:g} s), "
              f"{n_params:,} parameters, {len(graph.ops)} ops"
              + (f", {tw} µs per step" if tw else ", no event framing (give --time-window-us for recordings)"))
    return 0
