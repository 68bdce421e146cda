"""What an op is: its declaration (attributes, parameters, inputs, kind, shape rule) and the runtime
base class that runs it.

Every op type is one `OpImpl` subclass registered with `@op_type(name)`. The class says, once:
- `kind`: which family of work it does (`Kind`); the engine, the benchmark's by-kind table and the
  parity harness ask this instead of keeping their own lists of type names;
- `inputs`: how many inputs it reads (an int, or (min, max) with max None for "any number");
- `attrs`: name -> `Attr(type, default, check)`;
- `params`: name -> `Param(dims, ...)`, the shape rule of each parameter array;
- `shape(a, p, ins)`: the output shape from resolved attributes, parameter shapes and input shapes.

`check_op(op, in_shapes)` validates an op record against its declaration and returns its output
shape; `Graph.check()` runs it for every op before anything is allocated or any kernel runs, because a
`.evrt` file is untrusted input and numba does no bounds checks. The runtime objects never import
`evrt.graph`: an op record is anything with name, type, inputs, attrs and params.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable

import numpy as np

from ..errors import GraphError

# The largest buffer one op may declare (elements). Far above every real model (the largest zoo
# model's biggest activation is ~1e6), far below what would exhaust memory.
MAX_ELEMENTS = 1 << 27


class Kind(str, Enum):
    INPUT = "input"            # the step's events or frame onto the model grid
    SYNAPTIC = "synaptic"      # weights driven by spikes/counts: counted as ACs (MACs for real input)
    NEURON = "neuron"          # stateful spiking units: counted as spikes
    POOLING = "pooling"        # max/mean pooling: no arithmetic counted
    ATTENTION = "attention"    # spike x spike (or spike x value) products: counted as ACs
    STRUCTURAL = "structural"  # add, reshape, mask, sums: routing, no arithmetic counted

    @property
    def counts_acs(self) -> bool:
        return self in (Kind.SYNAPTIC, Kind.ATTENTION)


_REQUIRED = object()


@dataclass(frozen=True)
class Attr:
    """One attribute: its JSON type (int, float, str, bool, "ints" = list of int, "floats" = float or
    list of floats, "any"), its default (absent: required), an optional check returning an error text
    or None, and the allowed values."""
    type: Any
    default: Any = _REQUIRED
    check: Callable[[Any], str | None] | None = None
    choices: tuple | None = None

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


@dataclass(frozen=True)
class Param:
    """One parameter array. `dims` names its axes; a name already bound (by an attribute, an input
    shape or an earlier parameter) must match, an unbound name is bound by this array. An int is a fixed
    size. `per_step` allows one extra leading axis (a table per timestep) — all per_step parameters of
    an op have it or none does. `broadcast` instead of dims: the array must broadcast to the output
    shape or have a size that divides it (per channel / per element neuron parameters); "same": it
    must have exactly the output's shape (per-element tables a kernel indexes by element); "ref": exactly
    the attribute ref_shape (values kept in the reference's layout for export). `check`: a test of the
    values (array -> error text or None), for arrays whose values size a buffer or divide."""
    dims: tuple = ()
    optional: bool = False
    per_step: bool = False
    broadcast: str = ""
    check: Callable[[np.ndarray], str | None] | None = None


def positive(v):
    return None if v >= 1 else "must be >= 1"


def non_negative(v):
    return None if v >= 0 else "must be >= 0"


def _type_ok(kind, v) -> bool:
    if kind is int:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)
    if kind is float:
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    if kind is bool:
        return isinstance(v, (bool, np.bool_))
    if kind is str:
        return isinstance(v, str)
    if kind == "ints":
        return isinstance(v, (list, tuple)) and all(_type_ok(int, x) for x in v)
    if kind == "ints?":
        return v is None or _type_ok("ints", v)
    if kind == "floats":   # a scalar or a nested list of numbers
        return _type_ok(float, v) or (isinstance(v, (list, tuple)) and all(_type_ok("floats", x) for x in v))
    if kind == "any":
        return True
    raise TypeError(kind)


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true/false", str: "a string",
               "ints": "a list of integers", "ints?": "a list of integers or null",
               "floats": "a number or a list of numbers", "any": "anything"}


class StepStats:
    __slots__ = ("acs", "macs", "spikes", "in_nonzero")

    def __init__(self):
        self.acs = self.macs = self.spikes = self.in_nonzero = 0


OP_TYPES: dict[str, type["OpImpl"]] = {}


def op_type(name: str):
    def register(cls):
        cls.type_name = name
        OP_TYPES[name] = cls
        return cls
    return register


def op_class(op) -> type["OpImpl"]:
    try:
        return OP_TYPES[op.type]
    except (KeyError, TypeError):
        raise GraphError(f"op {op.name!r} has unknown type {op.type!r}; known: {', '.join(sorted(OP_TYPES))}") \
            from None


# attributes every op may carry for the parity tooling (how the reference lays out its tensor)
REFERENCE_ATTRS = {
    "ref_shape": Attr("ints?", None),
    "ref_layout": Attr(str, "channels_first", choices=("channels_first", "flat", "same")),
    "h_scale": Attr("floats", 1.0),
}


class OpImpl:
    type_name = ""
    kind: Kind = Kind.STRUCTURAL
    inputs: int | tuple = 1
    attrs: dict[str, Attr] = {}
    params: dict[str, Param] = {}
    per_step = False   # holds per-timestep tables (the last row is held beyond T)
    check_params = None   # optional rule across parameters: params dict -> error text or None

    # ------------------------------------------------------------------------------ declaration side
    @classmethod
    def shape(cls, a: dict, p: dict, ins: list) -> tuple:
        """Output shape from resolved attrs `a`, parameter shapes `p` and input shapes `ins`.
        Raise ValueError with a short reason when they do not fit together."""
        return tuple(ins[0])

    @classmethod
    def bind(cls, a: dict, ins: list) -> dict:
        """Axis sizes the parameters must match, known from attrs and inputs before any parameter."""
        return {}

    # ---------------------------------------------------------------------------------- runtime side
    def __init__(self, op, in_shapes: list, dtype, resolved: dict | None = None):
        self.op = op
        self.name = op.name
        self.dtype = dtype
        self.in_shapes = in_shapes
        self.a = resolved if resolved is not None else check_op(op, in_shapes)[1]
        self.stats = StepStats()
        self.out_shape = self.shape(self.a, {k: v.shape for k, v in op.params.items()}, in_shapes)
        self.out = np.zeros(self.out_shape, dtype)
        self.dense_ops = 0   # MACs a dense implementation of this op performs per step
        self.in_size = int(np.prod(in_shapes[0])) if in_shapes and in_shapes[0] else 0

    @property
    def is_neuron(self) -> bool:
        return self.kind is Kind.NEURON

    @property
    def is_synaptic(self) -> bool:
        return self.kind.counts_acs

    def attr(self, key, default=None):
        v = self.a.get(key)
        return default if v is None else v

    def param(self, key) -> np.ndarray:
        try:
            return np.ascontiguousarray(self.op.params[key], dtype=self.dtype)
        except KeyError:
            raise GraphError(f"op {self.name!r} ({self.type_name}) lacks parameter {key!r}") from None

    def reset(self):
        pass

    def run(self, inputs: list, ctx) -> np.ndarray:
        raise NotImplementedError

    @property
    def neurons(self) -> int:
        return int(np.prod(self.out_shape)) if self.is_neuron else 0


# ------------------------------------------------------------------------------------- validation

def _fail(op, what: str):
    raise GraphError(f"op {op.name!r} ({op.type}): {what}")


def resolve_attrs(cls, op) -> dict:
    decl = {**REFERENCE_ATTRS, **cls.attrs}
    if not isinstance(op.attrs, dict):
        _fail(op, "attributes must be a JSON object")
    unknown = sorted(set(op.attrs) - set(decl))
    if unknown:
        _fail(op, f"unknown attribute {unknown[0]!r} (declared: {', '.join(sorted(cls.attrs)) or 'none'})")
    out = {}
    for key, d in decl.items():
        if key not in op.attrs or (op.attrs[key] is None and not d.required and d.type != "ints?"):
            if d.required:
                _fail(op, f"missing attribute {key!r} ({_TYPE_NAMES[d.type]})")
            out[key] = d.default
            continue
        v = op.attrs[key]
        if not _type_ok(d.type, v):
            _fail(op, f"attribute {key!r} must be {_TYPE_NAMES[d.type]}, got {v!r:.60}")
        if d.type is int:
            v = int(v)
        elif d.type is float:
            v = float(v)
        if d.choices is not None and v not in d.choices:
            _fail(op, f"attribute {key!r} is {v!r}; allowed: {', '.join(map(repr, d.choices))}")
        if d.check is not None and (msg := d.check(v)):
            _fail(op, f"attribute {key!r} = {v!r:.60} {msg}")
        out[key] = v
    return out


def _check_params(cls, op, a: dict, in_shapes: list) -> None:
    if not isinstance(op.params, dict):
        _fail(op, "parameters must be a mapping")
    unknown = sorted(set(op.params) - set(cls.params))
    if unknown:
        _fail(op, f"unknown parameter {unknown[0]!r} (declared: {', '.join(sorted(cls.params)) or 'none'})")
    try:
        bound = dict(cls.bind(a, in_shapes))
    except (ValueError, TypeError, IndexError) as exc:
        _fail(op, f"inputs {in_shapes} do not fit: {exc}")
    per_step = None
    for key, decl in cls.params.items():
        arr = op.params.get(key)
        if arr is None:
            if not decl.optional:
                _fail(op, f"missing parameter {key!r}")
            continue
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
            dt = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
            _fail(op, f"parameter {key!r} has dtype {dt}; expected a real number array")
        if arr.size and not np.all(np.isfinite(arr)):
            _fail(op, f"parameter {key!r} holds non-finite values (NaN or inf): a diverged or corrupt checkpoint")
        if decl.check is not None and (msg := decl.check(arr)):
            _fail(op, f"parameter {key!r} {msg}")
        if decl.broadcast:
            continue   # checked against the output shape below
        dims, shape = list(decl.dims), tuple(arr.shape)
        if decl.per_step:
            has = len(shape) == len(dims) + 1
            if per_step is None:
                per_step = has
            elif per_step != has:
                _fail(op, f"parameter {key!r} has shape {shape}: the op's per-step tables disagree "
                          f"on a leading timestep axis")
            if has:
                dims = ["steps"] + dims
        if len(shape) != len(dims):
            _fail(op, f"parameter {key!r} has shape {shape}; expected {len(dims)} axes ({', '.join(map(str, dims))})")
        for name, size in zip(dims, shape):
            want = name if isinstance(name, int) else bound.get(name)
            if want is None:
                if size < 1:
                    _fail(op, f"parameter {key!r} has an empty axis {name} in shape {shape}")
                bound[name] = size
            elif size != want:
                _fail(op, f"parameter {key!r} has shape {shape}; axis {name} must be {want}")


def _check_broadcast(op, key, arr, out_shape, mode, a):
    if mode in ("same", "ref"):
        want = tuple(out_shape) if mode == "same" else tuple(a.get("ref_shape") or ())
        if mode == "ref" and not want:
            _fail(op, f"parameter {key!r} is kept in the reference layout, but the op has no ref_shape")
        if tuple(arr.shape) != want:
            _fail(op, f"parameter {key!r} has shape {tuple(arr.shape)}; it must be "
                      f"{'the output shape' if mode == 'same' else 'ref_shape'} {want}")
        return
    c = out_shape[-1] if out_shape else 1
    try:
        ok = np.broadcast_shapes(arr.shape, tuple(out_shape)) == tuple(out_shape) and arr.size >= 1
    except ValueError:
        ok = False
    ok = ok or (mode == "channel" and arr.size in (1, c))
    if not ok:
        _fail(op, f"parameter {key!r} has shape {arr.shape}; it must broadcast to the output {tuple(out_shape)}")


def check_op(op, in_shapes: list) -> tuple[tuple, dict]:
    """Validate one op record against its type's declaration; returns (output shape, resolved attrs).
    `in_shapes` are the shapes its inputs produce (None for the graph's raw step input)."""
    cls = op_class(op)
    lo, hi = (cls.inputs, cls.inputs) if isinstance(cls.inputs, int) else cls.inputs
    n = len(in_shapes)
    if n < lo or (hi is not None and n > hi):
        want = str(lo) if lo == hi else f"{lo} or more" if hi is None else f"{lo} to {hi}"
        _fail(op, f"reads {n} input(s); it takes {want}")
    if cls.kind is not Kind.INPUT and any(s is None for s in in_shapes):
        _fail(op, "reads the raw step input directly; only an input op may")
    a = resolve_attrs(cls, op)
    _check_params(cls, op, a, in_shapes)
    if cls.check_params is not None and (msg := cls.check_params(op.params)):
        _fail(op, msg)
    try:
        out = tuple(int(v) for v in cls.shape(a, {k: v.shape for k, v in op.params.items()}, in_shapes))
    except (ValueError, TypeError, IndexError, ZeroDivisionError) as exc:
        _fail(op, f"inputs {[tuple(s) if s is not None else 'events' for s in in_shapes]} do not fit: {exc}")
    if any(v < 1 for v in out):
        _fail(op, f"output shape {out} has an empty axis")
    if int(np.prod(out, dtype=np.float64)) > MAX_ELEMENTS:
        _fail(op, f"output shape {out} exceeds {MAX_ELEMENTS} elements")
    for key, decl in cls.params.items():
        if decl.broadcast and key in op.params:
            _check_broadcast(op, key, op.params[key], out, decl.broadcast, a)
    return out, a


def out_size(n: int, k: int, stride: int, pad: int, dilation: int = 1) -> int:
    """Output length of a sliding window (conv, pool) in floor mode — the one copy of this formula.
    A dilated window spans d(k-1)+1 inputs; with d = 1 this is (n + 2p - k)//s + 1."""
    return (n + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def need(cond: bool, reason: str) -> None:
    """A shape rule's assertion: raise the reason (caught by check_op and named with the op)."""
    if not cond:
        raise ValueError(reason)
