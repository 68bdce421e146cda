"""The `evrt` command. Every module `cmd_*.py` in this package contributes one sub-command."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ..errors import EvrtError


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every sub-command, or with just `only` (a command name) when that is all a
    command line needs: registering a command imports its module, and some pull in numba, the model
    architectures or zmq, which `evrt eval ...` should not wait for (docs/INTERNALS.md "Start-up")."""
    parser = argparse.ArgumentParser(prog="evrt", description="Event-driven inference for spiking vision transformers.")
    parser.add_argument("--version", action="version", version=f"evrt {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("cmd_"))
    if only is not None and f"cmd_{only}" in names:
        names = [f"cmd_{only}"]
    for name in names:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def _version() -> str:
    from .. import __version__
    return __version__


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # the command is the first argument (global options such as --version need the whole parser)
    parser = build_parser(argv[0] if argv and not argv[0].startswith("-") else None)
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
