"""The op contract: every op is validated against its declaration when a graph is loaded or built, and a
hostile `.evrt` fails at load with one line naming the op and the attribute or parameter — before any
buffer is allocated or any kernel runs."""
import io
import json
import zipfile

import numpy as np
import pytest

from evrt.cli import main
from evrt.engine import Session
from evrt.errors import GraphError
from evrt.graph import GRAPH_KEY, Graph, GraphBuilder, Op
from evrt.ops import OP_TYPES, Kind, MAX_ELEMENTS
from evrt.toy import toy_graph


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The toy model as the two parts of a .evrt file: the graph record and the arrays."""
    path = tmp_path_factory.mktemp("contract") / "toy.evrt"
    toy_graph(seed=0, T=4).save(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != GRAPH_KEY}
        doc = json.loads(z[GRAPH_KEY].tobytes().decode())
    return doc, arrays


def _write(path, doc, arrays, raw: dict | None = None):
    """A hand-written .evrt: npz members written one by one (raw = members given as bytes)."""
    with zipfile.ZipFile(path, "w") as zf:
        for k, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(a), allow_pickle=True)
            zf.writestr(k + ".npy", buf.getvalue())
        for k, b in (raw or {}).items():
            zf.writestr(k + ".npy", b)
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.frombuffer(json.dumps(doc).encode(), np.uint8))
        zf.writestr(GRAPH_KEY + ".npy", buf.getvalue())
    return path


def _op(doc, name):
    return next(d for d in doc["ops"] if d["name"] == name)


def _load_error(tmp_path, doc, arrays, raw=None) -> str:
    path = _write(tmp_path / "bad.evrt", doc, arrays, raw)
    with pytest.raises(GraphError) as exc:
        Graph.load(path)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_the_unmodified_file_loads(tmp_path, model):
    doc, arrays = model
    g = Graph.load(_write(tmp_path / "ok.evrt", doc, arrays))
    assert g.shapes()["lif2"] == (8, 8, 16)


def test_missing_attribute(tmp_path, model):
    doc, arrays = json.loads(json.dumps(model[0])), model[1]
    del _op(doc, "tokens")["attrs"]["shape"]
    msg = _load_error(tmp_path, doc, arrays)
    assert "'tokens'" in msg and "missing attribute 'shape'" in msg


@pytest.mark.parametrize("op,key,value,words", [
    ("conv2", "stride", "2", "'stride' must be an integer"),
    ("conv2", "stride", 2.5, "'stride' must be an integer"),
    ("conv2", "stride", 0, "'stride' = 0 must be >= 1"),
    ("conv2", "in_kind", "spikes", "'in_kind' is 'spikes'"),
    ("lif1", "k", [0.5], "'k' must be a number"),
    ("lif1", "k", True, "'k' must be a number"),
    ("tokens", "shape", [64, "16"], "'shape' must be a list of integers"),
    ("tokens", "shape", [63, 16], "cannot reshape"),
    ("pool1", "k", 2**40, "has an empty axis"),
    ("input", "width", 1 << 22, "exceeds"),
    ("input", "sensor_width", 64, "does not fit"),
    ("lif1", "colour", 3, "unknown attribute 'colour'"),
])
def test_ill_typed_or_bad_attribute(tmp_path, model, op, key, value, words):
    doc, arrays = json.loads(json.dumps(model[0])), model[1]
    _op(doc, op)["attrs"][key] = value
    msg = _load_error(tmp_path, doc, arrays)
    assert f"'{op}'" in msg and words in msg, msg


@pytest.mark.parametrize("key,value,words", [
    ("dilation", "2", "'dilation' must be a list of integers or null"),
    ("dilation", [2], "'dilation' = [2] must be a pair [h, w]"),
    ("dilation", [0, 1], "'dilation' = [0, 1] must be >= 1"),
    ("dilation", [2**40, 1], "is too large"),
    ("dilation", [30, 1], "has an empty axis"),
    ("stride_hw", [1, 2, 3], "must be a pair"),
    ("stride_hw", [1, 0], "must be >= 1"),
    ("stride_hw", [1.5, 1], "must be a list of integers"),
    ("pad_hw", [-1, 0], "must be >= 0"),
    ("pad_hw", [1 << 20, 1 << 20], "exceeds"),
])
def test_hostile_conv_geometry(tmp_path, model, key, value, words):
    """The optional per-axis stride/pad and dilation of conv2d are checked like every other attribute."""
    doc, arrays = json.loads(json.dumps(model[0])), model[1]
    _op(doc, "conv2")["attrs"][key] = value
    msg = _load_error(tmp_path, doc, arrays)
    assert "'conv2'" in msg and words in msg, msg


def test_conv_geometry_attributes_load_and_run(tmp_path, model):
    """Null means absent; a square [s, s]/[p, p] pair runs as the plain attributes do (fast kernel); a
    dilation changes the output shape by the dilated-window rule."""
    doc, arrays = json.loads(json.dumps(model[0])), model[1]
    a = _op(doc, "conv2")["attrs"]
    assert not {"dilation", "stride_hw", "pad_hw"} & set(a)          # files written today carry none
    s, p = a.get("stride", 1), a.get("pad", 0)
    base = Graph.load(_write(tmp_path / "a.evrt", doc, arrays))
    a.update(stride_hw=[s, s], pad_hw=[p, p], dilation=None, stride=7, pad=5)
    same = Graph.load(_write(tmp_path / "b.evrt", doc, arrays))
    assert same.shapes() == base.shapes()
    rng = np.random.default_rng(0)
    frames = [rng.poisson(0.3, (2, 32, 32)).astype(np.float64) for _ in range(4)]
    r1, r2 = Session(base), Session(same)
    acs = []
    for x in frames:
        o1, o2 = r1.step(x), r2.step(x)
        np.testing.assert_array_equal(o1.logits, o2.logits)
        assert o1.acs == o2.acs
        acs.append(o1.acs)
    # dilation [2, 3] with padding [2, 3] keeps this layer's output size: the rest of the model still fits
    a.update(stride_hw=None, pad_hw=[2, 3], stride=s, pad=p, dilation=[2, 3])
    h, w = base.shapes()[_op(doc, "conv2")["inputs"][0]][:2]
    kh, kw = base.op("conv2").params["w"].shape[:2]
    dil = Graph.load(_write(tmp_path / "c.evrt", doc, arrays))
    assert dil.shapes()["conv2"][:2] == ((h + 4 - 2 * (kh - 1) - 1) // s + 1, (w + 6 - 3 * (kw - 1) - 1) // s + 1)
    r3 = Session(dil)
    assert any(r3.step(x).acs != r1_acs for x, r1_acs in zip(frames, acs))


@pytest.mark.parametrize("op,key,bad,words", [
    ("conv2", "b", lambda a: a[:-1], "parameter 'b' has shape (15,); axis cout must be 16"),
    ("conv2", "w", lambda a: a[:, :, :-1], "parameter 'w' has shape (3, 3, 7, 16); axis cin_g must be 8"),
    ("conv2", "w", lambda a: a[0], "parameter 'w' has shape (3, 8, 16); expected 4 axes"),
    ("attn.q", "w", lambda a: a.T[:-1], "axis cin must be 16"),
    ("attn.q", "w", lambda a: a.astype(np.complex128), "parameter 'w' has dtype complex128"),
    ("attn.q", "w", lambda a: a.astype("U8"), "parameter 'w' has dtype <U8"),
    ("attn.q", "w", lambda a: np.array([a, None], dtype=object), "parameter 'w' has dtype object"),
    ("attn.q", "b", lambda a: np.full_like(a, np.nan), "parameter 'b' holds non-finite"),
])
def test_bad_parameter(tmp_path, model, op, key, bad, words):
    doc, arrays = model
    arrays = dict(arrays)
    arrays[f"{op}/{key}"] = bad(arrays[f"{op}/{key}"])
    msg = _load_error(tmp_path, doc, arrays)
    assert f"'{op}'" in msg and words in msg, msg


def test_missing_and_unknown_parameter(tmp_path, model):
    doc, arrays = json.loads(json.dumps(model[0])), dict(model[1])
    del arrays["conv2/w"]
    assert "parameter 'w' listed in the graph is missing" in _load_error(tmp_path, doc, arrays)
    doc, arrays = json.loads(json.dumps(model[0])), dict(model[1])
    _op(doc, "conv2")["params"].remove("w")
    del arrays["conv2/w"]
    assert "'conv2'" in (m := _load_error(tmp_path, doc, arrays)) and "missing parameter 'w'" in m
    doc, arrays = json.loads(json.dumps(model[0])), dict(model[1])
    _op(doc, "pool1")["params"] = ["w"]
    arrays["pool1/w"] = np.ones(3)
    assert "'pool1'" in (m := _load_error(tmp_path, doc, arrays)) and "unknown parameter 'w'" in m


def test_huge_declared_size_is_refused_before_allocation(tmp_path, model):
    """A header declaring 10^12 elements over a few bytes of data: refused from the header alone."""
    doc, arrays = model
    arrays = dict(arrays)
    del arrays["attn.q/w"]
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    msg = _load_error(tmp_path, doc, arrays, raw={"attn.q/w": buf.getvalue() + b"\0" * 64})
    assert "'attn.q'" in msg and "parameter 'w' declares shape (1000000, 1000000)" in msg


def test_malformed_records(tmp_path, model):
    for mutate, words in [
        (lambda d: d["ops"][3].update(type="conv3d"), "unknown type 'conv3d'"),
        (lambda d: d["ops"][3].update(inputs="pool1"), "inputs must be a list"),
        (lambda d: d["ops"][3].update(attrs=[1]), "attrs must be an object"),
        (lambda d: d["ops"][3].update(inputs=["lif2"]), "not produced before it"),
        (lambda d: d["ops"][4].update(inputs=["pool1", "lif1"]), "reads 2 input(s); it takes 1"),
        (lambda d: d["ops"][3].update(inputs=["events"]), "only an input op may"),
        (lambda d: d.update(ops={}), "lacks a meta object or an op list"),
        (lambda d: d["ops"].append(5), "lacks a string name or type"),
    ]:
        doc = json.loads(json.dumps(model[0]))
        mutate(doc)
        assert words in _load_error(tmp_path, doc, model[1])


def test_cli_prints_one_line(tmp_path, model, capsys):
    doc, arrays = json.loads(json.dumps(model[0])), model[1]
    _op(doc, "conv2")["attrs"]["groups"] = 3
    path = _write(tmp_path / "bad.evrt", doc, arrays)
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "'conv2'" in lines[0] and "groups" in lines[0] and "Traceback" not in err, err


def test_in_memory_graph_is_checked_before_any_kernel(model):
    """A Graph made in code with a mis-shaped parameter fails in Session(), not in a kernel."""
    g = toy_graph(seed=0, T=4)
    g.op("attn.proj").params["w"] = np.zeros((16, 15))
    with pytest.raises(GraphError, match=r"op 'attn.proj' \(linear\): parameter 'b' has shape \(16,\); axis cout must be 15"):
        Session(g)


def test_builder_infers_shapes_and_names_the_bad_op():
    g = GraphBuilder()
    x = g.input(T=2, width=16, height=12, sensor=(32, 24), bin=2)
    assert g.shape(x) == (12, 16, 2)
    y = g.add("c", "conv2d", [x], {"w": np.zeros((3, 3, 2, 4))}, stride=2, pad=1, in_kind="events")
    assert g.shape(y) == (6, 8, 4)
    p = g.add("p", "maxpool", [g.lif("s", y)], k=3, stride=2, pad=1)
    assert g.shape(p) == (3, 4, 4)
    with pytest.raises(GraphError, match=r"op 'bad' \(ssa\): missing attribute 'heads'"):
        g.add("bad", "ssa", [p, p, p])
    with pytest.raises(GraphError, match=r"op 't' \(reshape\).*cannot reshape"):
        g.add("t", "reshape", [p], shape=[5, 4])
    graph = g.graph({"T": 2})
    assert graph.meta["frame"] == {"T": 2, "sensor_size": [32, 24], "resize": None, "sum_channel": False}


def test_every_op_type_declares_itself():
    assert set(k.value for k in Kind) == {c.kind.value for c in OP_TYPES.values()}
    for name, cls in OP_TYPES.items():
        assert cls.type_name == name and cls.__doc__, name
        assert isinstance(cls.kind, Kind)
        assert "run" in vars(cls) or any("run" in vars(b) for b in cls.__mro__[1:-2]), name
    assert "if" not in OP_TYPES     # merged into dif (delay 0, no budget)
    assert MAX_ELEMENTS >= 1 << 24


def test_op_record_round_trip_keeps_declared_defaults_out(tmp_path):
    """Defaults are the declaration's: a file that omits an optional attribute runs with its default."""
    g = GraphBuilder()
    x = g.input(T=1, width=4, height=4)
    g.add("c", "conv2d", [x], {"w": np.ones((1, 1, 2, 3))}, in_kind="events")   # stride, pad, groups default
    graph = g.graph({"T": 1})
    graph.save(tmp_path / "m.evrt")
    impl = Session(Graph.load(tmp_path / "m.evrt")).impls[1]
    assert (impl.a["stride"], impl.a["pad"], impl.a["groups"]) == (1, 0, 1)
    assert isinstance(graph.ops[1], Op)
