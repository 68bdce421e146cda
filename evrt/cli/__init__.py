"""The `evrt` command. Every module `cmd_*.py` in this package contributes one sub-command."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ..errors import EvrtError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evrt", description="Event-driven inference for spiking vision transformers.")
    parser.add_argument("--version", action="version", version=f"evrt {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if mod.name.startswith("cmd_"):
            importlib.import_module(f"{__name__}.{mod.name}").register(sub)
    return parser


def _version() -> str:
    from .. import __version__
    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EvrtError as exc:
        print(f"evrt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # python -m evrt.cli
    sys.exit(main())
