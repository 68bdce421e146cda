"""The mappable `.evrt` layout (evrt/modelfile.py): float32 files half the size, parameters viewed in the
mapped file (no copy, also inside the Session), the same results as the float64 file, old files still
loading, and hostile layouts (truncated, overlapping, misaligned members, wrong dtypes) refused with
one line or read safely."""
import io
import json
import struct
import zipfile

import numpy as np
import pytest

from evrt.engine import Session
from evrt.errors import GraphError
from evrt.graph import GRAPH_KEY, Graph
from evrt.modelfile import ALIGN
from evrt.toy import toy_graph
from parity import random_gesture_events


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("modelfile")
    g = toy_graph(seed=3, T=4, channels=64)
    g.save(d / "f64.evrt")
    g.save(d / "f32.evrt", precision="float32")
    return d, g


def _params(g):
    return {f"{op.name}/{k}": v for op in g.ops for k, v in op.params.items()}


def test_float32_file_is_half_the_size_and_maps_every_parameter(files):
    d, g = files
    n64, n32 = (d / "f64.evrt").stat().st_size, (d / "f32.evrt").stat().st_size
    assert n32 < 0.55 * n64
    h = Graph.load(d / "f32.evrt")
    params = _params(h)
    assert all(p.dtype == np.float32 for p in params.values())
    assert h.file_info == {"mapped_bytes": sum(p.nbytes for p in params.values()), "copied_bytes": 0}
    for p in params.values():
        assert p.ctypes.data % ALIGN == 0 and p.flags.writeable and p.flags.aligned
    for k, p in _params(g).items():   # rounded once, from the float64 values
        np.testing.assert_array_equal(params[k], p.astype(np.float32))
    with np.load(d / "f32.evrt") as z:   # still an npz any numpy reads
        np.testing.assert_array_equal(z["conv1/w"], params["conv1/w"])


def test_session_uses_the_mapped_float32_parameters_and_gives_identical_results(files):
    d, g = files
    s32 = Session(str(d / "f32.evrt"), precision="float32")
    for impl in s32.impls:
        held = [v for v in vars(impl).values() if isinstance(v, np.ndarray)]
        for k, p in impl.op.params.items():
            assert any(np.shares_memory(p, a) for a in held), f"{impl.name}/{k} was copied"
    s64 = Session(str(d / "f64.evrt"), precision="float32")
    for seed in range(3):
        ev = random_gesture_events(3000, seed, (32, 32))
        a, b = s64.run_clip(ev), s32.run_clip(ev)
        np.testing.assert_array_equal(a.logits, b.logits)
        np.testing.assert_array_equal(a.step_logits, b.step_logits)
        assert (a.acs, a.macs) == (b.acs, b.macs)


def test_float64_precision_on_a_float32_file_runs(files):
    d, _ = files
    res = Session(str(d / "f32.evrt"), precision="float64").run_clip(random_gesture_events(2000, 0, (32, 32)))
    assert np.isfinite(res.logits).all()


@pytest.mark.parametrize("compress", [False, True])
def test_files_written_by_np_savez_still_load(files, tmp_path, compress):
    """The layout before this one: plain (unaligned) or compressed npz of float64 arrays."""
    d, g = files
    with np.load(d / "f64.evrt") as z:
        arrays = {k: z[k] for k in z.files}
    path = tmp_path / "old.evrt"
    with open(path, "wb") as f:
        (np.savez_compressed if compress else np.savez)(f, **arrays)
    h = Graph.load(path)
    for k, p in _params(g).items():
        np.testing.assert_array_equal(_params(h)[k], p)
    assert h.file_info["mapped_bytes"] + h.file_info["copied_bytes"] == sum(p.nbytes for p in _params(g).values())


def _members(path):
    with zipfile.ZipFile(path) as zf:
        return {i.filename[:-4]: zf.read(i) for i in zf.infolist()}


def _rewrite(path, members, extra=b""):
    """Members (raw .npy bytes) written as a plain stored zip; `extra` shifts every member's data."""
    with zipfile.ZipFile(path, "w") as zf:
        for k, b in members.items():
            info = zipfile.ZipInfo(k + ".npy")
            info.extra = extra
            zf.writestr(info, b)
    return path


def _npy(arr):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr)
    return buf.getvalue()


def test_misaligned_and_byte_swapped_members_are_read_into_memory(files, tmp_path):
    d, _ = files
    members = _members(d / "f32.evrt")
    with np.load(d / "f32.evrt") as z:
        ref = {k: z[k] for k in z.files}
    members["conv1/w"] = _npy(ref["conv1/w"].astype(">f4"))
    path = _rewrite(tmp_path / "odd.evrt", members, extra=struct.pack("<HH", 0xCAFE, 1) + b"\0")
    h = Graph.load(path)
    assert h.file_info["copied_bytes"] > 0
    p = _params(h)
    np.testing.assert_array_equal(p["conv1/w"], ref["conv1/w"])
    assert p["conv1/w"].dtype.isnative
    for k, v in p.items():
        np.testing.assert_array_equal(v, ref[k])
        assert v.flags.aligned
    ev = random_gesture_events(2000, 1, (32, 32))
    np.testing.assert_array_equal(Session(h).run_clip(ev).logits, Session(str(d / "f32.evrt")).run_clip(ev).logits)


def _load_error(path) -> str:
    with pytest.raises(GraphError) as exc:
        Graph.load(path)
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg
    return msg


@pytest.mark.parametrize("dtype", ["complex64", "<U4", "datetime64[s]"])
def test_wrong_dtype_is_refused(files, tmp_path, dtype):
    d, _ = files
    members = _members(d / "f32.evrt")
    members["attn.q/w"] = _npy(np.zeros((16, 16), dtype))
    msg = _load_error(_rewrite(tmp_path / "dtype.evrt", members))
    assert "'attn.q'" in msg and "parameter 'w' has dtype" in msg


def test_truncated_files_and_members_are_refused(files, tmp_path):
    d, _ = files
    raw = (d / "f32.evrt").read_bytes()
    for cut in (0, 10, len(raw) // 2, len(raw) - 1):
        p = tmp_path / f"cut{cut}.evrt"
        p.write_bytes(raw[:cut])
        assert "not an evrt model file" in _load_error(p)
    members = _members(d / "f32.evrt")
    members["conv2/w"] = members["conv2/w"][:-40]       # a member shorter than its header declares
    msg = _load_error(_rewrite(tmp_path / "short.evrt", members))
    assert "'conv2'" in msg and "parameter 'w' declares shape" in msg


def _central_offsets(raw: bytes) -> dict:
    """member name -> position of its 'local header offset' field in the central directory."""
    out, i = {}, raw.find(b"PK\x01\x02")
    while i >= 0:
        n = struct.unpack_from("<H", raw, i + 28)[0]
        out[raw[i + 46:i + 46 + n].decode()[:-4]] = i + 42
        i = raw.find(b"PK\x01\x02", i + 46 + n)
    return out


def _patched(tmp_path, raw, name, offset):
    b = bytearray(raw)
    struct.pack_into("<I", b, _central_offsets(raw)[name], offset)
    p = tmp_path / "patched.evrt"
    p.write_bytes(bytes(b))
    return p


def test_overlapping_and_outside_offsets_are_refused(files, tmp_path):
    """A directory pointing two parameters at the same bytes, past the end of the file, or into the
    middle of another member's data: one line, nothing mapped."""
    d, _ = files
    raw = (d / "f32.evrt").read_bytes()
    offs = {k: struct.unpack_from("<I", raw, v)[0] for k, v in _central_offsets(raw).items()}
    # conv2/w's directory entry names conv1/w's bytes (read earlier)
    msg = _load_error(_patched(tmp_path, raw, "conv2/w", offs["conv1/w"]))
    assert "'conv2'" in msg and "overlaps member 'conv1/" in msg
    msg = _load_error(_patched(tmp_path, raw, "conv2/w", len(raw) - 8))
    assert "'conv2'" in msg and ("outside the file" in msg or "not an evrt model file" in msg)
    msg = _load_error(_patched(tmp_path, raw, "conv2/w", offs["conv1/w"] + 200))
    assert "'conv2'" in msg and "damaged zip header" in msg


def test_graph_record_and_float32_precision_field(files):
    d, _ = files
    with np.load(d / "f32.evrt") as z:
        doc = json.loads(z[GRAPH_KEY].tobytes().decode())
    assert doc["precision"] == "float32" and doc["version"] == 1
    with pytest.raises(GraphError, match="precision must be"):
        toy_graph().save(d / "x.evrt", precision="float16")


def test_a_mapped_graph_can_be_saved_over_its_own_file(tmp_path, files):
    """The arrays view the old file; saving writes a new file and renames it over the old path."""
    d, g = files
    path = tmp_path / "m.evrt"
    g.save(path, precision="float32")
    h = Graph.load(path)
    assert h.file_info["mapped_bytes"] > 0
    h.meta["note"] = "re-saved"
    h.save(path, precision="float32")
    again = Graph.load(path)
    assert again.meta["note"] == "re-saved"
    for k, p in _params(g).items():
        np.testing.assert_array_equal(_params(again)[k], p.astype(np.float32))
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.evrt"]
