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
from .ops import check_op

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
        """Run-time parameters; an imported NIR neuron's `nir_*` arrays are its source values, kept only so
        `evrt export` can write them back, and are not counted."""
        return int(sum(p.size for op in self.ops for k, p in op.params.items() if not k.startswith("nir_")))

    def check(self) -> dict[str, tuple]:
        """Validate the whole graph before anything is allocated or run: names are unique, every input is
        produced earlier (or is the graph input "events"), and every op fits its type's declaration
        (attribute types, parameter shapes and dtypes, input shapes; evrt.ops.base). Returns each op's
        output shape. A `.evrt` file is untrusted: a wrong shape must fail here, never in a kernel."""
        shapes: dict[str, tuple | None] = {"events": None}  # the graph input: one step of events or a frame
        if not self.ops:
            raise GraphError("the graph has no ops")
        for op in self.ops:
            if op.name in shapes:
                raise GraphError(f"duplicate op name {op.name!r}")
            for src in op.inputs:
                if src not in shapes:
                    raise GraphError(f"op {op.name!r} reads {src!r}, which is not produced before it")
            shapes[op.name], _ = check_op(op, [shapes[s] for s in op.inputs])
        out = self.meta.get("output", self.ops[-1].name)
        if out not in shapes or out == "events":
            raise GraphError(f"graph output {out!r} is not an op")
        del shapes["events"]
        return shapes

    def shapes(self) -> dict[str, tuple]:
        """Output shape of every op (runtime layout), by the ops' shape rules."""
        return self.check()

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
            if not isinstance(doc.get("meta"), dict) or not isinstance(doc.get("ops"), list):
                raise GraphError(f"{path}: graph record lacks a meta object or an op list")
            ops = [_read_op(path, npz, d) for d in doc["ops"]]
        graph = cls(doc["meta"], ops)
        graph.check()
        return graph


# the largest parameter array a model file may declare (elements): far above any real layer
MAX_PARAM_ELEMENTS = 1 << 28


def _read_op(path, npz, d) -> Op:
    """One op record from the file, its structure checked before any array is read."""
    if not isinstance(d, dict) or not isinstance(d.get("name"), str) or not isinstance(d.get("type"), str):
        raise GraphError(f"{path}: an op record lacks a string name or type: {str(d)[:80]}")
    name = d["name"]
    inputs, attrs, keys = d.get("inputs"), d.get("attrs", {}), d.get("params", [])
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise GraphError(f"{path}: op {name!r}: inputs must be a list of op names")
    if not isinstance(attrs, dict):
        raise GraphError(f"{path}: op {name!r}: attrs must be an object")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise GraphError(f"{path}: op {name!r}: params must be a list of names")
    params = {key: _read_array(path, npz, name, key) for key in keys}
    return Op(name, d["type"], list(inputs), dict(attrs), params)


def _read_array(path, npz, op_name, key) -> np.ndarray:
    """Read `<op>/<key>` after checking its header: a numeric dtype, and no more elements than the bytes
    the file holds (a header declaring a huge shape must not allocate it)."""
    entry = f"{op_name}/{key}"
    member = entry + ".npy"
    if entry not in npz.files:
        raise GraphError(f"{path}: op {op_name!r}: parameter {key!r} listed in the graph is missing")
    try:
        info = npz.zip.getinfo(member)
        with npz.zip.open(member) as f:
            major, _ = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise GraphError(f"{path}: op {op_name!r}: parameter {key!r} is not a readable array ({exc})") from None
    if dtype.hasobject or dtype.kind not in "biuf":
        raise GraphError(f"{path}: op {op_name!r}: parameter {key!r} has dtype {dtype}; "
                         f"expected a real number array")
    n = int(np.prod(shape, dtype=np.float64))
    if n > MAX_PARAM_ELEMENTS or n * dtype.itemsize > info.file_size:
        raise GraphError(f"{path}: op {op_name!r}: parameter {key!r} declares shape {shape} "
                         f"({n * dtype.itemsize} bytes) but the file holds {info.file_size} bytes for it")
    try:
        return npz[entry]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise GraphError(f"{path}: op {op_name!r}: parameter {key!r} cannot be read ({exc})") from None


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


class GraphBuilder:
    """The way to build a graph in code (converters, examples, importers). Each `add` validates the op
    against its type's declaration and runs its shape rule, so `shape(name)` answers at once and a
    mistake fails at the op that makes it. Parameters are kept in float64 (rounded once by the Session).

    `input()` declares the input op and the frame metadata (how a clip is binned into steps) together,
    so the two cannot disagree; `graph(meta)` adds that frame record to the metadata."""

    def __init__(self):
        self.ops: list[Op] = []
        self.shapes: dict[str, tuple | None] = {"events": None}
        self.frame: dict | None = None

    def add(self, name: str, type_: str, inputs: list[str], params: dict | None = None, **attrs) -> str:
        op = Op(name, type_, list(inputs), attrs, {k: np.asarray(v, np.float64) for k, v in (params or {}).items()})
        if name in self.shapes:
            raise GraphError(f"duplicate op name {name!r}")
        for src in op.inputs:
            if src not in self.shapes:
                raise GraphError(f"op {name!r} reads {src!r}, which is not produced before it")
        self.shapes[name], _ = check_op(op, [self.shapes[s] for s in op.inputs])
        self.ops.append(op)
        return name

    def shape(self, name: str) -> tuple:
        """Output shape of an op added so far (runtime layout: (H, W, C), (N, C) or (C,))."""
        try:
            shape = self.shapes[name]
        except KeyError:
            raise GraphError(f"no op named {name!r} has been added") from None
        if shape is None:
            raise GraphError("the graph input 'events' has no fixed shape")
        return shape

    def input(self, *, T: int, width: int, height: int, sensor: tuple[int, int] | None = None, bin: int = 1,
              channels: int = 2, resize: str | None = None, sum_channel: bool = False,
              name: str = "input") -> str:
        """The input op on a width x height grid from a `sensor` = (width, height) camera (default: the
        grid times `bin`), and the frame record: T input steps, the resize, whether the reference adds
        a sum-of-polarities channel (folded into the first conv, so frames carry one channel more)."""
        sw, sh = sensor if sensor is not None else (width * bin, height * bin)
        extra = {"frame_channels": channels + 1} if sum_channel else {}
        self.add(name, "events_in", ["events"], width=width, height=height, channels=channels,
                 sensor_width=int(sw), sensor_height=int(sh), bin=bin, resize=resize, **extra)
        self.frame = {"T": int(T), "sensor_size": [int(sw), int(sh)], "resize": resize, "sum_channel": bool(sum_channel)}
        return name

    def conv_bn(self, name, src, w, bias, bn, *, stride=1, pad=0, groups=1, in_kind="spike", scale=1.0):
        """torch conv weight (+ optional bias) followed by BN affine (a, b) -> one conv2d op."""
        from .fold import conv_runtime, fold_affine
        wf, bf = fold_affine(w, bias, *bn) if bn is not None else fold_affine(w, bias, np.ones(w.shape[0]), np.zeros(w.shape[0]))
        return self.add(name, "conv2d", [src], {"w": conv_runtime(wf) * scale, "b": bf},
                        stride=stride, pad=pad, groups=groups, in_kind=in_kind)

    def linear_bn(self, name, src, w, bias, bn, *, in_kind="spike"):
        from .fold import fold_affine, linear_runtime
        wf, bf = fold_affine(w, bias, *bn) if bn is not None else fold_affine(w, bias, np.ones(w.shape[0]), np.zeros(w.shape[0]))
        return self.add(name, "linear", [src], {"w": linear_runtime(wf), "b": bf}, in_kind=in_kind)

    def lif(self, name, src, *, k=0.5, vth=1.0, ref_shape=None, ref_layout="channels_first", h_scale=1.0):
        """ref_shape/ref_layout say how the reference lays out this neuron's tensor (for goldens);
        h_scale converts this neuron's membrane to the reference's (a folded input scale)."""
        return self.add(name, "lif", [src], k=float(k), vth=float(vth), ref_shape=ref_shape,
                        ref_layout=ref_layout, h_scale=h_scale)

    def graph(self, meta: dict) -> Graph:
        meta = dict(meta)
        if self.frame is not None:
            if meta.get("frame") not in (None, self.frame):
                raise GraphError(f"meta['frame'] {meta['frame']} disagrees with the input op's {self.frame}")
            meta["frame"] = self.frame
        g = Graph(meta, self.ops)
        g.check()
        return g
