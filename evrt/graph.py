"""The folded model: a short list of ops with their parameters, saved as one `.evrt` file.

A `.evrt` file is an uncompressed npz: every parameter array is stored as `<op name>/<param name>`,
and `__graph__` holds UTF-8 JSON with the format version, the model's metadata and the op list.
No pickle anywhere: loading never executes anything from the file.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import GraphError

FORMAT = "evrt-graph"
VERSION = 1
GRAPH_KEY = "__graph__"


@dataclass
class Op:
    name: str
    type: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)

    def describe(self) -> dict:
        return {"name": self.name, "type": self.type, "inputs": list(self.inputs), "attrs": self.attrs,
                "params": {k: list(v.shape) for k, v in self.params.items()}}


@dataclass
class Graph:
    meta: dict
    ops: list[Op]

    def op(self, name: str) -> Op:
        for op in self.ops:
            if op.name == name:
                return op
        raise KeyError(name)

    @property
    def num_params(self) -> int:
        return int(sum(p.size for op in self.ops for p in op.params.values()))

    def check(self) -> None:
        """Every input refers to an earlier op (or the graph input "events"); names are unique."""
        seen = {"events"}  # the graph input: one step of events or a frame
        for op in self.ops:
            if op.name in seen:
                raise GraphError(f"duplicate op name {op.name!r}")
            for src in op.inputs:
                if src not in seen:
                    raise GraphError(f"op {op.name!r} reads {src!r}, which is not produced before it")
            seen.add(op.name)
        out = self.meta.get("output", self.ops[-1].name if self.ops else None)
        if out not in seen:
            raise GraphError(f"graph output {out!r} is not an op")

    def save(self, path: str | Path) -> None:
        self.check()
        arrays = {}
        for op in self.ops:
            for key, arr in op.params.items():
                if "/" in key:
                    raise GraphError(f"parameter name {key!r} of op {op.name!r} contains '/'")
                arrays[f"{op.name}/{key}"] = np.ascontiguousarray(arr)
        doc = {"format": FORMAT, "version": VERSION, "meta": self.meta,
               "ops": [{k: v for k, v in op.describe().items() if k != "params"} | {"params": sorted(op.params)}
                       for op in self.ops]}
        arrays[GRAPH_KEY] = np.frombuffer(json.dumps(doc, default=_json_default).encode(), dtype=np.uint8)
        path = Path(path)
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "Graph":
        path = Path(path)
        try:
            npz = np.load(path, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise GraphError(f"{path}: not an evrt model file ({exc})") from None
        with npz:
            if GRAPH_KEY not in npz.files:
                raise GraphError(f"{path}: no {GRAPH_KEY} record; not an evrt model file")
            try:
                doc = json.loads(npz[GRAPH_KEY].tobytes().decode())
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise GraphError(f"{path}: graph record is not valid JSON ({exc})") from None
            if doc.get("format") != FORMAT:
                raise GraphError(f"{path}: format {doc.get('format')!r} is not {FORMAT!r}")
            if doc.get("version") != VERSION:
                raise GraphError(f"{path}: graph version {doc.get('version')} is not supported "
                                 f"(this evrt reads version {VERSION}); re-run `evrt convert`")
            ops = []
            for d in doc["ops"]:
                params = {}
                for key in d["params"]:
                    name = f"{d['name']}/{key}"
                    if name not in npz.files:
                        raise GraphError(f"{path}: parameter {name} listed in the graph is missing")
                    params[key] = npz[name]
                ops.append(Op(d["name"], d["type"], list(d["inputs"]), dict(d["attrs"]), params))
        graph = cls(doc["meta"], ops)
        graph.check()
        return graph


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
