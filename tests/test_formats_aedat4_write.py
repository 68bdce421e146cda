"""AEDAT 4 writing, read back by two independent readers (the ``aedat`` package and iniVation's
dv-processing), and the real recordings in tests/data through ``evrt info``."""
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import require
from evrt.cli import main
from evrt.events import make_events
from evrt.formats import AEDAT4Writer, read_recording, write_aedat4
from evrt.formats.aedat2 import read_aedat2

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
DVX = os.path.join(DATA, "dvxplorer_cut.aedat4")
V2E = os.path.join(DATA, "dvxplorer_v2e_davis346.aedat")
NMNIST = os.path.join(os.path.dirname(os.path.dirname(DATA)), "examples", "data", "nmnist", "Test", "0", "00004.bin")


def _dv():
    return require("dv_processing", "pip install dv-processing")


def _read_with_aedat(path):
    import aedat
    d = aedat.Decoder(path)
    streams = d.id_to_stream()
    ev = np.concatenate([p["events"] for p in d if "events" in p])
    return streams, ev


def _read_with_dv(path):
    dv = _dv()
    rec = dv.io.MonoCameraRecording(path)
    parts = []
    while rec.isRunning():
        batch = rec.getNextEventBatch()
        if batch is None:
            break
        parts.append(batch.numpy())
    return rec.getCameraName(), tuple(rec.getEventResolution()), np.concatenate(parts)


def _same(a, ev, names=("t", "x", "y", "on")):
    for ours, theirs in zip(("t", "x", "y", "on"), names):
        np.testing.assert_array_equal(a[theirs], ev[ours])


def test_real_dvxplorer_recording():
    rec = read_recording(DVX)
    assert (rec.format, rec.sensor_size, rec.camera) == ("aedat4", (320, 240), "DVXplorer_DXB00010")
    _, ev = _read_with_aedat(DVX)
    _same(ev, rec.events, ev.dtype.names)
    name, size, a = _read_with_dv(DVX)
    assert name == "DVXplorer_DXB00010" and size == (320, 240)
    _same(a, rec.events, ("timestamp", "x", "y", "polarity"))


def test_write_real_events_read_back_by_aedat_and_dv(tmp_path):
    ev = read_recording(DVX).events
    p = tmp_path / "out.aedat4"
    n = write_aedat4(p, ev, (320, 240), source="DVXplorer replay", packet_events=1000)
    assert n == os.path.getsize(p)
    streams, back = _read_with_aedat(str(p))
    assert streams == {0: {"type": "events", "width": 320, "height": 240}}
    _same(back, ev, back.dtype.names)
    name, size, a = _read_with_dv(str(p))
    assert name == "DVXplorer replay" and size == (320, 240)
    _same(a, ev, ("timestamp", "x", "y", "polarity"))
    rec = read_recording(p)
    assert (rec.format, rec.sensor_size, rec.camera) == ("aedat4", (320, 240), "DVXplorer replay")


def test_streaming_writer_and_refusals(tmp_path):
    rng = np.random.default_rng(1)
    ev = make_events(np.sort(rng.integers(0, 2 ** 40, 9000)), rng.integers(0, 346, 9000),
                     rng.integers(0, 260, 9000), rng.integers(0, 2, 9000))
    p = tmp_path / "live.aedat4"
    with AEDAT4Writer(p, (346, 260)) as w:
        for a in range(0, 9000, 2500):
            w.write(ev[a:a + 2500])
        w.write(ev[:0])
        assert w.events_written == 9000
        with pytest.raises(ValueError, match="backwards"):
            w.write(ev[:5])
    _, back = _read_with_aedat(str(p))
    _same(back, ev, back.dtype.names)
    with pytest.raises(FileExistsError):
        write_aedat4(p, ev, (346, 260))  # never replaces an existing file unless asked
    write_aedat4(p, ev[:10], (346, 260), overwrite=True)
    assert len(read_recording(p).events) == 10
    with pytest.raises(ValueError, match="outside the 100 x 100 sensor"):
        write_aedat4(tmp_path / "small.aedat4", ev, (100, 100))
    with pytest.raises(ValueError, match="sensor_size"):
        AEDAT4Writer(tmp_path / "bad.aedat4", (0, 5))


def test_v2e_written_aedat2_holds_the_dvxplorer_events():
    """v2e's AEDAT-2.0 writer (DAVIS346 layout, x and y mirrored into jAER's convention) took the
    DVXplorer events with top-left origin and t rebased to 0 (as float seconds, truncated back to
    µs); the 'image' orientation must give those events back."""
    src = read_recording(DVX).events
    rec = read_aedat2(V2E, sensor_size=(346, 260))
    assert rec.camera is None and rec.sensor_size == (346, 260)
    t = (1e6 * ((src["t"] - src["t"][0]).astype(np.float64) / 1e6)).astype(np.int32)
    np.testing.assert_array_equal(rec.events["t"], t)
    for f in ("x", "y", "on"):
        np.testing.assert_array_equal(rec.events[f], src[f])
    jaer = read_aedat2(V2E, sensor_size=(346, 260), orientation="jaer").events
    np.testing.assert_array_equal(jaer["y"], 259 - src["y"])  # jAER counts rows from the bottom


@pytest.mark.parametrize("path, fmt, size, camera", [
    (DVX, "aedat4", [320, 240], "DVXplorer_DXB00010"),
    (os.path.join(DATA, "prophesee_gen3_evt2.raw"), "evt2", [640, 480],
     "Prophesee hal_plugin_gen3_fx3 (serial 00000157)"),
    (os.path.join(DATA, "prophesee_gen41_evt3.raw"), "evt3", [1280, 720],
     "Prophesee hal_plugin_gen41_evk3 (serial 00000307)"),
    (os.path.join(DATA, "prophesee_gen3_cd.dat"), "dat", [640, 480], None),
    (NMNIST, "atis-bin", None, None),
])
def test_info_on_real_files(capsys, path, fmt, size, camera):
    assert main(["info", path, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["format"], s["sensor_size"], s["camera"]) == (fmt, size, camera)
    assert s["events"] > 1000
    assert main(["info", path]) == 0
    out = capsys.readouterr().out
    assert f"format:      {fmt}" in out and (camera is None or f"camera:      {camera}" in out)


def test_info_on_v2e_file_without_chip_is_one_line_error(capsys):
    assert main(["info", V2E]) == 2
    err = capsys.readouterr().err.strip()
    assert "names no chip of known size" in err and "\n" not in err


# ------------------------------------------------------------------------- AEDAT 4 decoding paths
def _faery():
    return require("faery", "pip install faery")


def test_lz4_and_zstd_files_written_by_faery(tmp_path):
    """faery's AEDAT 4 encoder (LZ4 and ZSTD packets, with a data table at the end): the numba LZ4 path
    and the aedat-package ZSTD path both give the events back."""
    faery = _faery()
    ev = read_recording(DVX).events
    for comp in ("lz4", "zstd"):
        p = tmp_path / f"{comp}.aedat4"
        arr = np.zeros(len(ev), faery.EVENTS_DTYPE)
        arr["t"], arr["x"], arr["y"], arr["on"] = ev["t"], ev["x"], ev["y"], ev["on"]
        faery.events_stream_from_array(arr, dimensions=(320, 240)).to_file(p, compression=(comp, 1), zero_t0=False)
        rec = read_recording(p)
        assert rec.sensor_size == (320, 240)
        _same(rec.events, ev, ("t", "x", "y", "on"))


def test_lz4_kernel_equals_python_twin_on_real_packets():
    import struct
    from evrt.formats.aedat4 import parse_io_header
    from evrt.kernels.decode import lz4f_decode, lz4f_decode_py
    data = open(DVX, "rb").read()
    compression, _, off, end = parse_io_header(data)
    assert compression == 1  # DV wrote this recording with LZ4 packets
    buf = np.frombuffer(data, np.uint8)
    seen = 0
    while off < end:
        sid, size = struct.unpack_from("<iI", data, off)
        for cap in (1 << 16, 100):  # roomy, and too small (-2)
            a, b = np.zeros(cap, np.uint8), np.zeros(cap, np.uint8)
            ra, rb = lz4f_decode(buf, off + 8, off + 8 + size, a), lz4f_decode_py(buf, off + 8, off + 8 + size, b)
            assert ra == rb
            if ra > 0:
                np.testing.assert_array_equal(a[:ra], b[:rb])
        seen += 1
        off += 8 + size
    assert seen >= 10


def test_copy_kernel_equals_numpy_twin():
    from evrt.events import EVENT_DTYPE
    from evrt.kernels.decode import copy_aedat4_events, copy_aedat4_events_np
    rng = np.random.default_rng(3)
    pk = rng.integers(0, 256, 16 * 500 + 7, dtype=np.uint8)
    pk[7::16] &= 0x7F  # most times non-negative
    for w, h in ((0, 0), (40000, 40000), (300, 200)):
        a, b = np.zeros(500, EVENT_DTYPE), np.zeros(500, EVENT_DTYPE)
        ra = copy_aedat4_events(pk, 7, 500, w, h, a.view(np.uint8), 0)
        rb = copy_aedat4_events_np(pk, 7, 500, w, h, b.view(np.uint8), 0)
        assert ra == rb
        if ra > 0:
            np.testing.assert_array_equal(a, b)


def test_hostile_aedat4_bytes_give_one_line_errors():
    """Flipped bytes and truncations of the real DV recording: a clean decode or one FormatError line."""
    from evrt.errors import FormatError
    from evrt.formats.aedat4 import decode_aedat4
    data = open(DVX, "rb").read()
    rng = np.random.default_rng(11)
    outcomes = set()
    for trial in range(300):
        b = bytearray(data)
        if trial % 3 == 0:
            b = b[:int(rng.integers(0, len(b)))]
        else:
            for i in rng.integers(0, len(b), int(rng.integers(1, 20))):
                b[i] = int(rng.integers(0, 256))
        try:
            ev, _, _ = decode_aedat4(bytes(b), source="f")
            assert len(ev) <= 255 * len(b) // 16
            outcomes.add("ok")
        except FormatError as e:
            assert "\n" not in str(e) and str(e).startswith("f: byte ") or str(e).startswith("f: packet at byte ")
            outcomes.add("error")
    assert outcomes == {"ok", "error"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([0, 1]), st.lists(st.tuples(st.integers(0, 2), st.binary(max_size=120)), max_size=6),
       st.binary(max_size=8))
def test_aedat4_fuzz(compression, packets, tail):
    """A valid IOHeader (one 8 x 8 event stream, none or LZ4) and hostile packets after it."""
    import struct
    from evrt.errors import FormatError
    from evrt.formats.aedat4 import decode_aedat4
    from evrt.formats.aedat4_writer import MAGIC, _description, _io_header
    head = bytearray(_io_header(_description((8, 8), "fuzz")))
    struct.pack_into("<i", head, 24 + 4, compression)  # IOHeader table at 24: compression right after soffset
    body = b"".join(struct.pack("<iI", sid, len(b)) + b for sid, b in packets) + tail
    try:
        ev, size, _ = decode_aedat4(MAGIC + bytes(head) + body, source="f")
    except FormatError as e:
        assert "\n" not in str(e) and (str(e).startswith("f: byte ") or str(e).startswith("f: packet at byte "))
        return
    assert size == (8, 8) and len(ev) <= 255 * len(body)
    assert len(ev) == 0 or (ev["x"].max() < 8 and ev["y"].max() < 8)
