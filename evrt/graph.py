"""The folded model: a short list of ops with their parameters, saved as one `.evrt` file.

A `.evrt` file is an uncompressed npz: every parameter array is stored as `<op name>/<param name>`,
and `__graph__` holds UTF-8 JSON with the format version, the model's metadata and the op list. Array
data is 64-byte aligned in the file so loading maps it instead of reading it (evrt/modelfile.py).
No pickle anywhere: loading never executes anything from the file.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import modelfile
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
    # how Graph.load got the parameters: bytes viewed in the mapped file / read into memory
    file_info: dict = field(default_factory=dict, compare=False, repr=False)

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

    def save(self, path: str | Path, precision: str | None = None) -> None:
        """Write the graph as one `.evrt` file (evrt/modelfile.py: aligned, uncompressed, mappable).
        precision "float32": every floating-point parameter is rounded to float32 once, here (what the
        float32 Session would do at load), so the file is half the size and loads without a copy;
        None/"float64": parameters are written as they are held (float64 from the builders)."""
        self.check()
        if precision not in (None, "float64", "float32"):
            raise GraphError(f"precision must be float32 or float64, got {precision!r}")
        arrays = {}
        for op in self.ops:
            for key, arr in op.params.items():
                if "/" in key:
                    raise GraphError(f"parameter name {key!r} of op {op.name!r} contains '/'")
                arr = np.asarray(arr)
                if arr.dtype.kind == "f" and precision is not None:
                    arr = arr.astype(PRECISION_DTYPES[precision])
                arrays[f"{op.name}/{key}"] = np.ascontiguousarray(arr)
        doc = {"format": FORMAT, "version": VERSION, "meta": self.meta,
               "ops": [{k: v for k, v in op.describe().items() if k != "params"} | {"params": sorted(op.params)}
                       for op in self.ops]}
        if precision is not None:
            doc["precision"] = precision
        arrays[GRAPH_KEY] = np.frombuffer(json.dumps(doc, default=_json_default).encode(), dtype=np.uint8)
        modelfile.write(Path(path), arrays)

    @classmethod
    def load(cls, path: str | Path) -> "Graph":
        """Read and check a `.evrt` file. Parameters of the aligned layout are views of a private map of
        the file (no copy; evrt/modelfile.py); older files are read into memory."""
        path = Path(path)
        try:
            mf = modelfile.ModelFile(path)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise GraphError(f"{path}: not an evrt model file ({exc})") from None
        with mf:
            if GRAPH_KEY not in mf.names():
                raise GraphError(f"{path}: no {GRAPH_KEY} record; not an evrt model file")
            try:
                doc = json.loads(mf.read_bytes(GRAPH_KEY).decode())
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
                raise GraphError(f"{path}: graph record is not valid JSON ({exc})") from None
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise GraphError(f"{path}: graph record cannot be read ({exc})") from None
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                fmt = doc.get("format") if isinstance(doc, dict) else None
                raise GraphError(f"{path}: format {fmt!r} is not {FORMAT!r}")
            if doc.get("version") != VERSION:
                raise GraphError(f"{path}: graph version {doc.get('version')} is not supported "
                                 f"(this evrt reads version {VERSION}); re-run `evrt convert`")
            if not isinstance(doc.get("meta"), dict) or not isinstance(doc.get("ops"), list):
                raise GraphError(f"{path}: graph record lacks a meta object or an op list")
            names = mf.names()
            records = [_read_op(path, d) for d in doc["ops"]]
            # every header first (dtype, size, bounds, overlap), then the arrays
            headers = {(r[0], k): _header(path, mf, names, r[0], k) for r in records for k in r[4]}
            ops = [Op(name, type_, inputs, attrs, {k: _array(path, mf, headers[name, k]) for k in keys})
                   for name, type_, inputs, attrs, keys in records]
            loaded = {"mapped_bytes": mf.mapped_bytes, "copied_bytes": mf.copied_bytes}
        graph = cls(doc["meta"], ops)
        graph.file_info = loaded
        graph.check()
        return graph


PRECISION_DTYPES = {"float32": np.float32, "float64": np.float64}
MAX_PARAM_ELEMENTS = modelfile.MAX_PARAM_ELEMENTS


def _read_op(path, d) -> tuple:
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
    return name, d["type"], list(inputs), dict(attrs), keys


def _header(path, mf, names, op_name, key):
    """The `.npy` and zip headers of `<op>/<key>`, checked: a numeric dtype, no more elements than the
    bytes the member holds (a header declaring a huge shape must not allocate it), inside the file and
    overlapping no other member."""
    entry = f"{op_name}/{key}"
    if entry not in names:
        raise GraphError(f"{path}: op {op_name!r}: parameter {key!r} listed in the graph is missing")
    try:
        return op_name, key, mf.header(entry)
    except modelfile.ModelFileError as exc:
        raise GraphError(f"{path}: op {op_name!r}: parameter {key!r} {exc}") from None
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise GraphError(f"{path}: op {op_name!r}: parameter {key!r} is not a readable array ({exc})") from None


def _array(path, mf, header) -> np.ndarray:
    op_name, key, member = header
    try:
        return mf.array(member)
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
