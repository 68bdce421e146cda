"""evrt models: list the model zoo."""
from __future__ import annotations

import json


def register(sub):
    p = sub.add_parser("models", help="list the trained models shipped in models/")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..zoo import list_models, zoo_dir

    cards = list_models()
    if args.json:
        print(json.dumps(cards))
        return 0
    if not cards:
        print(f"no models found in {zoo_dir()}")
        return 0
    print(f"{'name':28s} {'family':18s} {'T':>3s} {'params':>9s} {'acc evrt':>9s} {'acc torch':>9s}  path")
    for c in cards:
        acc = c.get("accuracy", {})
        fmt = lambda v: f"{100 * v:8.1f}%" if isinstance(v, (int, float)) else f"{'-':>9s}"  # noqa: E731
        print(f"{c['name'][:28]:28s} {c.get('family', '?'):18s} {c.get('T', '?'):>3} {c.get('params', 0):>9,} "
              f"{fmt(acc.get('evrt'))} {fmt(acc.get('reference'))}  {c['path']}")
    return 0
