"""The public loaders evrt's readers are held equal to, taken from their installed source.

spikingjelly's dataset functions are compiled from their source files alone (importing
``spikingjelly.datasets`` pulls in torchvision, which need not be importable here): only the named
top-level functions, classes and constants are run. On CI a missing package fails instead of skipping.
"""
from __future__ import annotations

import ast
import importlib.util
import struct
import typing
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import ON_CI


def _missing(what):
    if ON_CI:
        pytest.fail(f"{what} is required on CI (dev extra) but is not installed")
    pytest.skip(f"{what} not installed")


class _NumPy1:
    """NumPy as spikingjelly's loaders expect it: NumPy 2 removed the binary mode of ``fromstring``,
    which reads bytes exactly as ``frombuffer`` does."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def fromstring(data, dtype=float):
        return np.frombuffer(data, dtype)


def spikingjelly_defs(relpath: str, *names: str) -> dict:
    """Namespace with the top-level definitions ``names`` (functions, classes, assignments) of
    ``spikingjelly/<relpath>``."""
    spec = importlib.util.find_spec("spikingjelly")
    if spec is None or not spec.submodule_search_locations:
        _missing("spikingjelly")
    src = Path(list(spec.submodule_search_locations)[0]) / relpath
    with warnings.catch_warnings():  # its docstrings have invalid escapes
        warnings.simplefilter("ignore")
        tree = ast.parse(src.read_text())
    want = set(names)
    body = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in want:
            if isinstance(node, ast.ClassDef):  # keep its methods only; bases need torchvision
                node.bases, node.keywords = [], []
            body.append(node)
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in want for t in node.targets):
            body.append(node)
    found = {getattr(n, "name", None) or n.targets[0].id for n in body}
    if found != want:
        pytest.fail(f"spikingjelly/{relpath} lacks {sorted(want - found)}")
    ns = {"np": _NumPy1(), "struct": struct, "Dict": typing.Dict, "Optional": typing.Optional,
          "Callable": typing.Callable, "Tuple": typing.Tuple}
    exec(compile(ast.Module(body=body, type_ignores=[]), str(src), "exec"), ns)
    return ns
