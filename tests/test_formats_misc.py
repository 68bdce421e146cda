import struct

import numpy as np
import pytest

from evrt.errors import FormatError
from evrt.events import EVENT_DTYPE, make_events, to_tonic
from evrt.formats import LABELS_DTYPE, Recording, detect_format, read_recording
from evrt.formats.npz import read_npz, write_npy, write_npz


def random_events(n, seed=0, sensor=(128, 128)):
    rng = np.random.default_rng(seed)
    return make_events(np.sort(rng.integers(0, 10**6, n)), rng.integers(0, sensor[0], n),
                       rng.integers(0, sensor[1], n), rng.integers(0, 2, n))


# ------------------------------------------------------------------------------------- npz / npy
def test_npz_roundtrip_with_sensor_and_labels(tmp_path):
    ev = random_events(1000)
    labels = np.array([(3, 0, 400_000), (5, 400_000, 900_000)], LABELS_DTYPE)
    p = tmp_path / "rec.npz"
    write_npz(p, ev, sensor_size=(128, 128), labels=labels)
    rec = read_recording(p)
    assert rec.format == "npz" and rec.sensor_size == (128, 128) and rec.path == str(p)
    np.testing.assert_array_equal(rec.events, ev)
    np.testing.assert_array_equal(rec.labels, labels)
    samples = list(rec.samples())
    assert [lab for lab, _ in samples] == [3, 5]
    for (lab, s), row in zip(samples, labels):
        np.testing.assert_array_equal(s, ev[(ev["t"] >= row["start_us"]) & (ev["t"] < row["end_us"])])


def test_npz_plain_columns_and_on_key(tmp_path):
    ev = random_events(50)
    p = tmp_path / "cols.npz"
    np.savez(p, t=ev["t"].astype(np.int64), x=ev["x"].astype(np.int32), y=ev["y"], on=ev["on"])
    rec = read_recording(p)
    np.testing.assert_array_equal(rec.events, ev)
    assert rec.sensor_size is None and rec.labels is None and list(rec.samples()) == []
    # labels as an integer (K, 3) array
    np.savez(p, t=ev["t"], x=ev["x"], y=ev["y"], p=ev["on"].astype(int), labels=np.array([[1, 0, 10**6]]))
    assert read_recording(p).labels.dtype == LABELS_DTYPE


def test_npy_event_dtype_and_tonic(tmp_path):
    ev = random_events(100)
    p = tmp_path / "ev.npy"
    write_npy(p, ev)
    np.testing.assert_array_equal(read_recording(p).events, ev)
    np.save(tmp_path / "tonic.npy", to_tonic(ev, [("x", "<i8"), ("y", "<i8"), ("p", "<i8"), ("t", "<i8")]))
    rec = read_recording(tmp_path / "tonic.npy")
    assert rec.format == "npy"
    np.testing.assert_array_equal(rec.events, ev)


def test_npz_npy_errors_name_file_and_problem(tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, t=np.arange(3), x=np.arange(3))
    with pytest.raises(FormatError, match=r"bad\.npz: missing event arrays \['y', 'p \(or on\)'\]"):
        read_recording(p)
    np.savez(p, frames=np.zeros((2, 2, 4, 4)))
    with pytest.raises(FormatError, match="already framed"):
        read_recording(p)
    np.savez(p, t=[0, 1], x=[0, -4], y=[0, 0], p=[0, 1])
    with pytest.raises(FormatError, match=r"bad\.npz: event 1: x=-4"):
        read_recording(p)
    np.savez(p, t=[0], x=[0], y=[0], p=[0], sensor_size=[0, 5])
    with pytest.raises(FormatError, match="sensor_size"):
        read_recording(p)
    q = tmp_path / "plain.npy"
    np.save(q, np.zeros((5, 4)))
    with pytest.raises(FormatError, match=r"plain\.npy: expected a structured event array.*read_tonic_npy"):
        read_recording(q)
    np.save(q, np.zeros(3, [("a", "<i4")]))
    with pytest.raises(FormatError, match="plain.npy"):
        read_recording(q)
    (tmp_path / "trunc.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(FormatError, match=r"trunc\.npz: cannot read"):
        read_recording(tmp_path / "trunc.npz")
    with pytest.raises(FormatError, match="not an .npz archive"):
        read_npz(q)


def test_dispatcher_unknown_and_unsupported(tmp_path):
    u = tmp_path / "x.xyz"
    u.write_bytes(b"hello world, not events")
    with pytest.raises(FormatError, match=r"x\.xyz: unknown recording format.*AEDAT 3\.1.*AEDAT 4.*\.npz.*\.npy"):
        read_recording(u)
    v = tmp_path / "old.aedat"
    v.write_bytes(b"#!AER-DAT3.0\r\n# stuff\r\n")
    with pytest.raises(FormatError, match=r"AEDAT 3\.0 is not supported"):
        read_recording(v)
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(FormatError, match="empty"):
        read_recording(tmp_path / "empty.npz")
    with pytest.raises(FormatError, match="cannot open"):
        read_recording(tmp_path / "missing.npz")
    (tmp_path / "fake.npy").write_bytes(b"not numpy at all")
    with pytest.raises(FormatError, match=r"named \.npy"):
        read_recording(tmp_path / "fake.npy")


def test_recording_samples_unsorted_and_type_check():
    ev = make_events([5, 1, 9, 3], [0] * 4, [0] * 4, [1] * 4)
    rec = Recording(ev, labels=np.array([(0, 2, 6)], LABELS_DTYPE))
    (lab, s), = rec.samples()
    assert s["t"].tolist() == [5, 3] and rec.duration_us == 8
    with pytest.raises(TypeError):
        Recording(np.zeros(3))


# -------------------------------------------------------------------------------------- AEDAT 3.1
def test_aedat31_dispatch_with_labels_csv(tmp_path):
    from evrt.formats import aedat31
    ev = random_events(3000, 4)
    path = tmp_path / "user01_fluorescent.aedat"
    aedat31.write_aedat31(path, ev)
    rec = read_recording(path)
    assert rec.format == "aedat3.1" and rec.sensor_size == (128, 128) and rec.labels is None
    np.testing.assert_array_equal(rec.events, ev)
    (tmp_path / "user01_fluorescent_labels.csv").write_text(
        "class,startTime_usec,endTime_usec\r\n1,0,300000\r\n11,300000,700000\r\n")
    rec = read_recording(path)
    assert rec.labels["label"].tolist() == [0, 10]  # csv class 1..11 -> gesture id 0..10
    (_, a), (_, b) = rec.samples()
    assert len(a) + len(b) == int((ev["t"] < 700_000).sum())


# ----------------------------------------------------------------------------------------- AEDAT 4
# A minimal uncompressed AEDAT 4 writer for fixtures (the `aedat` package only reads). Layout: magic
# line, u32 length + IOHeader flatbuffer ("IOHE": compression, file_data_position = -1, XML
# description of the streams), then packets: u32 stream id, u32 length, size-prefixed flatbuffer
# EventPacket ("EVTS") whose `elements` vector holds 16-byte structs (i64 t, i16 x, i16 y, bool on).
def _ioheader(description: str) -> bytes:
    desc = description.encode()
    head = struct.pack("<I4s", 24, b"IOHE")                      # root table at 24
    vtable = struct.pack("<5H", 10, 24, 4, 16, 8).ljust(16, b"\0")  # at 8: compression@4, fdp@16, desc@8
    table = struct.pack("<iiIiq", 16, 0, 48 - 32, 0, -1)         # soffset to vtable, compression, desc
    return head + vtable + table + struct.pack("<I", len(desc)) + desc + b"\0"


def _event_packet(ev) -> bytes:
    el = np.zeros(len(ev), [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "u1"), ("pad", "V3")])
    el["t"], el["x"], el["y"], el["on"] = ev["t"], ev["x"], ev["y"], ev["on"]
    body = (struct.pack("<I4s", 16, b"EVTS") + struct.pack("<3H", 6, 8, 4).ljust(8, b"\0")
            + struct.pack("<iI", 8, 28 - 24) + struct.pack("<I", len(ev)) + el.tobytes())
    return struct.pack("<I", len(body)) + body


def _description(streams) -> str:
    nodes = []
    for sid, ident, size in streams:
        info = (f'<node name="info" path="/o/{sid}/info/"><attr key="sizeX" type="int">{size[0]}</attr>'
                f'<attr key="sizeY" type="int">{size[1]}</attr></node>') if size else ""
        nodes.append(f'<node name="{sid}" path="/o/{sid}/"><attr key="typeIdentifier" type="string">{ident}'
                     f'</attr>{info}</node>')
    return f'<dv version="2.0"><node name="outInfo" path="/o/">{"".join(nodes)}</node></dv>'


def write_aedat4_fixture(path, packets, streams=((0, "EVTS", (346, 260)),)):
    hdr = _ioheader(_description(streams))
    out = [b"#!AER-DAT4.0\r\n", struct.pack("<I", len(hdr)), hdr]
    for sid, ev in packets:
        pk = _event_packet(ev)
        out += [struct.pack("<II", sid, len(pk)), pk]
    path.write_bytes(b"".join(out))


def test_aedat4_read_through_aedat_package(tmp_path):
    ev = random_events(2500, 9, (346, 260))
    p = tmp_path / "rec.aedat4"
    write_aedat4_fixture(p, [(0, ev[:1000]), (1, ev[:10]), (0, ev[1000:])],
                         streams=((0, "EVTS", (346, 260)), (1, "EVTS", (640, 480))))
    assert detect_format(p) == "aedat4"
    rec = read_recording(p)
    assert rec.format == "aedat4" and rec.sensor_size == (346, 260) and rec.events.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(rec.events, ev)
    from evrt.formats.aedat4 import read_aedat4
    r1 = read_aedat4(p, stream_id=1)
    assert r1.sensor_size == (640, 480)
    np.testing.assert_array_equal(r1.events, ev[:10])
    with pytest.raises(FormatError, match="stream 7 is not an event stream"):
        read_aedat4(p, stream_id=7)


def test_aedat4_without_event_stream(tmp_path):
    p = tmp_path / "frames.aedat4"
    write_aedat4_fixture(p, [], streams=((0, "FRME", (346, 260)), (1, "IMUS", None)))
    with pytest.raises(FormatError, match=r"frames\.aedat4: (byte 0: )?no event stream.*0: frame, 1: imus"):
        read_recording(p)
    q = tmp_path / "broken.aedat4"
    q.write_bytes(b"#!AER-DAT4.0\r\n\xff\xff")
    with pytest.raises(FormatError, match=r"broken\.aedat4: (byte \d+: )?not a readable AEDAT 4 file"):
        read_recording(q)

