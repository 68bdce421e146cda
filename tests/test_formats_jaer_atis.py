"""AEDAT 2.0 (jAER) and N-MNIST / N-Caltech101 .bin readers: parity with the public loaders, the
numba decoders equal to their NumPy twins, and hostile bytes that end in one-line errors."""
import glob
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evrt.errors import FormatError
from evrt.events import EVENT_DTYPE
from evrt.formats import detect_format, read_recording
from evrt.formats.aedat2 import decode_aedat2, read_aedat2
from evrt.formats.atis_bin import decode_atis_bin
from evrt.kernels.decode import decode_aer_be, decode_aer_be_np, decode_atis40, decode_atis40_np
from reference_loaders import spikingjelly_defs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NMNIST = sorted(glob.glob(os.path.join(ROOT, "examples", "data", "nmnist", "Test", "*", "*.bin")))
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------ N-MNIST .bin
def _orchard_reference(data):
    """The datasets' own rule (Read_Ndataset.m; tonic's read_mnist_file), written out as they do."""
    raw = np.frombuffer(data, np.uint8).astype(np.uint32)
    x, y = raw[0::5], raw[1::5]
    p = (raw[2::5] & 128) >> 7
    ts = ((raw[2::5] & 127) << 16) | (raw[3::5] << 8) | raw[4::5]
    for i in np.where(y == 240)[0]:
        ts[i:] += 2 ** 13
    keep = y != 240
    return ts[keep], x[keep], y[keep], p[keep]


def test_real_nmnist_matches_spikingjelly_and_orchard():
    assert len(NMNIST) == 100
    load_atis_bin = spikingjelly_defs("datasets/__init__.py", "load_ATIS_bin")["load_ATIS_bin"]
    total = 0
    for f in NMNIST[::7]:
        rec = read_recording(f)
        assert rec.format == "atis-bin" and rec.sensor_size is None
        d = load_atis_bin(f)  # spikingjelly ignores overflow markers; the real files have none
        assert not np.any(d["y"] == 240)
        for ours, ref in zip(("t", "x", "y", "on"), ("t", "x", "y", "p")):
            np.testing.assert_array_equal(rec.events[ours], d[ref])
        assert rec.events["x"].max() < 34 and rec.events["y"].max() < 34
        total += len(rec.events)
    assert total > 10_000


def _atis_bytes(rng, n, overflow_every=0):
    r = np.empty((n, 5), np.uint8)
    r[:, 0] = rng.integers(0, 240, n)
    r[:, 1] = rng.integers(0, 180, n)
    r[:, 2:] = rng.integers(0, 256, (n, 3))
    if overflow_every:
        r[::overflow_every, 1] = 240
    return r.tobytes()


def test_overflow_markers_follow_the_dataset_rule():
    rng = np.random.default_rng(3)
    data = _atis_bytes(rng, 5000, overflow_every=97)
    ev = decode_atis_bin(data)
    t, x, y, p = _orchard_reference(data)
    assert len(ev) == 5000 - len(range(0, 5000, 97))
    np.testing.assert_array_equal(ev["t"], t)
    np.testing.assert_array_equal(ev["x"], x)
    np.testing.assert_array_equal(ev["y"], y)
    np.testing.assert_array_equal(ev["on"], p.astype(bool))
    # the last event saw every marker: 52 x 8192 µs added
    assert int(ev["t"][-1]) - (int.from_bytes(data[-3:], "big") & 0x7FFFFF) == 52 * 8192


def test_atis_kernel_equals_numpy_twin():
    rng = np.random.default_rng(4)
    for data in [_atis_bytes(rng, 3000, 13), open(NMNIST[0], "rb").read(), b""]:
        buf = np.frombuffer(data, np.uint8)
        a, b = np.zeros(len(buf) // 5, EVENT_DTYPE), np.zeros(len(buf) // 5, EVENT_DTYPE)
        ka, kb = decode_atis40(buf, a), decode_atis40_np(buf, b)
        assert ka == kb
        np.testing.assert_array_equal(a[:ka], b[:kb])


def test_atis_truncated_record_names_byte(tmp_path):
    p = tmp_path / "cut.bin"
    p.write_bytes(open(NMNIST[0], "rb").read()[:-2])
    size = p.stat().st_size
    with pytest.raises(FormatError, match=rf"cut\.bin: byte {size - 3}: incomplete 40-bit event record \(3 of 5"):
        read_recording(p)
    (tmp_path / "empty.bs2").write_bytes(b"")
    with pytest.raises(FormatError, match="empty"):
        read_recording(tmp_path / "empty.bs2")
    assert detect_format(p) == "atis-bin"


@FUZZ
@given(st.binary(max_size=400))
def test_atis_fuzz(data):
    try:
        ev = decode_atis_bin(data)
    except FormatError as e:
        assert "\n" not in str(e) and "byte" in str(e) and len(data) % 5
        return
    assert len(ev) <= len(data) // 5


# ------------------------------------------------------------------------------ AEDAT 2.0
SJ_NAMES = ("CIFAR10DVS", "load_events", "load_raw_events", "parse_raw_address", "read_bits", "skip_header",
            "EVT_DVS", "y_mask", "y_shift", "x_mask", "x_shift", "polarity_mask", "polarity_shift",
            "valid_mask", "valid_shift")
HEADER = (b"#!AER-DAT2.0\r\n# This is a raw AE data file created by saveaerdat.m\r\n"
          b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n")


def _aedat2(addr, ts, header=HEADER):
    body = np.empty(len(addr), [("a", ">u4"), ("t", ">u4")])
    body["a"], body["t"] = addr, ts
    return header + body.tobytes()


def _dvs128(rng, n):
    x, y, p = rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)
    return (x << 1) | (y << 8) | p, x, y, p


def test_dvs128_orientations(tmp_path):
    rng = np.random.default_rng(5)
    addr, rx, ry, rp = _dvs128(rng, 2000)
    ts = np.sort(rng.integers(0, 10 ** 7, 2000))
    p = tmp_path / "cifar.aedat"
    p.write_bytes(_aedat2(addr, ts))
    assert detect_format(p) == "aedat2"
    sj = spikingjelly_defs("datasets/cifar10_dvs.py", *SJ_NAMES)["CIFAR10DVS"].load_origin_data(str(p))
    rec = read_aedat2(p, orientation="spikingjelly")
    assert rec.sensor_size == (128, 128) and rec.camera is None and rec.format == "aedat2"
    for ours, ref in zip(("t", "x", "y", "on"), ("t", "x", "y", "p")):
        np.testing.assert_array_equal(rec.events[ours], sj[ref])
    # jAER (DVS128.Extractor): x mirrored, y as is, bit 0 clear = ON
    j = read_aedat2(p, orientation="jaer").events
    np.testing.assert_array_equal(j["x"], 127 - rx)
    np.testing.assert_array_equal(j["y"], ry)
    np.testing.assert_array_equal(j["on"], rp == 0)
    im = read_recording(p).events  # default: jAER's picture with rows from the top
    np.testing.assert_array_equal(im["x"], 127 - rx)
    np.testing.assert_array_equal(im["y"], 127 - ry)
    np.testing.assert_array_equal(im["on"], rp == 0)
    raw = read_aedat2(p, orientation="raw").events
    np.testing.assert_array_equal(raw["x"], rx)
    np.testing.assert_array_equal(raw["on"], rp == 1)


def _davis_header(chip):
    return (b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n# AEChip: " + chip.encode()
            + b"\r\n#Start of Preferences\r\n#<?xml version=\"1.0\"?>\r\n")


def test_davis346_layout_skips_aps_imu_and_triggers(tmp_path):
    rng = np.random.default_rng(6)
    n = 3000
    x, y, pol = rng.integers(0, 346, n), rng.integers(0, 260, n), rng.integers(0, 2, n)
    addr = (y << 22) | (x << 12) | (pol << 11)
    kind = rng.integers(0, 10, n)  # 0: APS sample (bit 31), 1: external input (bit 10), else DVS
    addr = np.where(kind == 0, addr | 0x80000000, np.where(kind == 1, 0x400 | 3, addr))
    ts = np.arange(n) * 10
    p = tmp_path / "davis.aedat"
    p.write_bytes(_aedat2(addr, ts, _davis_header("eu.seebetter.ini.chips.davis.Davis346red")))
    rec = read_recording(p)
    assert rec.camera == "Davis346red" and rec.sensor_size == (346, 260)
    dvs = kind >= 2
    np.testing.assert_array_equal(rec.events["t"], ts[dvs])
    np.testing.assert_array_equal(rec.events["x"], 345 - x[dvs])  # as tonic's read_davis_346
    np.testing.assert_array_equal(rec.events["y"], 259 - y[dvs])
    np.testing.assert_array_equal(rec.events["on"], pol[dvs] == 1)
    # spikingjelly's generic load_events (DAVIS masks, filter_dvs) keeps bit-31-clear words, raw bits
    ns = spikingjelly_defs("datasets/cifar10_dvs.py", *SJ_NAMES)
    with open(p, "rb") as f:
        t, sx, sy, sp = ns["load_events"](f, filter_dvs=True)
    not_trigger = kind[kind != 0] >= 2  # it has no notion of trigger words: drop those from its output
    raw = read_aedat2(p, orientation="raw").events
    for ours, ref in zip(("t", "x", "y", "on"), (t, sx, sy, sp)):
        np.testing.assert_array_equal(raw[ours], ref[not_trigger])
    with pytest.raises(FormatError, match="'spikingjelly' orientation is its CIFAR10-DVS"):
        read_aedat2(p, orientation="spikingjelly")


def test_dvs128_special_events_skipped_except_for_spikingjelly(tmp_path):
    p = tmp_path / "sync.aedat"
    p.write_bytes(_aedat2([(5 << 8) | (6 << 1), 0x8000, (7 << 8) | (8 << 1) | 1], [1, 2, 3]))
    ev = read_recording(p).events
    assert ev["t"].tolist() == [1, 3] and ev["x"].tolist() == [121, 119] and ev["y"].tolist() == [122, 120]
    assert len(read_aedat2(p, orientation="spikingjelly").events) == 3


def test_davis240_geometry_and_out_of_sensor_address(tmp_path):
    p = tmp_path / "d240.aedat"
    addr = np.array([(5 << 22) | (7 << 12), (179 << 22) | (239 << 12) | 0x800, (3 << 22) | (300 << 12)])
    p.write_bytes(_aedat2(addr, [1, 2, 3], _davis_header("eu.seebetter.ini.chips.davis.DAVIS240C")))
    hdr = len(_davis_header("eu.seebetter.ini.chips.davis.DAVIS240C"))
    with pytest.raises(FormatError, match=rf"d240\.aedat: byte {hdr + 16}: address 0x00d2c000 lies outside "
                                          r"the 240 x 180 sensor \(DAVIS240C\)"):
        read_recording(p)
    p.write_bytes(_aedat2(addr[:2], [1, 2], _davis_header("eu.seebetter.ini.chips.davis.DAVIS240C")))
    ev = read_recording(p).events
    assert ev["x"].tolist() == [232, 0] and ev["y"].tolist() == [174, 0] and ev["on"].tolist() == [False, True]


def test_davis_without_chip_line(tmp_path):
    p = tmp_path / "nochip.aedat"
    p.write_bytes(_aedat2([(5 << 22) | (7 << 12)], [1]))
    with pytest.raises(FormatError, match="names no chip of known size"):
        read_recording(p)
    assert read_aedat2(p, orientation="raw").events["x"].tolist() == [7]
    assert read_aedat2(p, sensor_size=(346, 260)).events["x"].tolist() == [338]


def test_timestamp_wrap_and_aedat1(tmp_path):
    p = tmp_path / "wrap.aedat"
    p.write_bytes(_aedat2([2, 2, 2, 2], [2 ** 32 - 10, 2 ** 32 - 1, 5, 3]))
    assert read_recording(p).events["t"].tolist() == [2 ** 32 - 10, 2 ** 32 - 1, 2 ** 32 + 5, 2 ** 32 + 3]
    body = np.empty(2, [("a", ">u2"), ("t", ">u4")])
    body["a"], body["t"] = [(3 << 8) | (4 << 1) | 1, 0], [10, 20]
    p.write_bytes(b"#!AER-DAT1.0\r\n" + body.tobytes())
    ev = read_recording(p).events
    assert ev["x"].tolist() == [123, 127] and ev["y"].tolist() == [124, 127] and ev["on"].tolist() == [False, True]


def test_aer_kernel_equals_numpy_twin():
    rng = np.random.default_rng(8)
    addr = rng.integers(0, 2 ** 32, 4000, dtype=np.uint64)
    ts = rng.integers(0, 2 ** 32, 4000, dtype=np.uint64)
    data = np.frombuffer(_aedat2(addr, ts, b"#!AER-DAT2.0\n"), np.uint8)
    for args in [(0xFE, 1, 0x7F00, 8, 1, False, 127, 127, True, 0, 0),
                 (0x003FF000, 12, 0x7FC00000, 22, 0x800, True, -1, -1, False, 0x80000400, 0),
                 (0x003FF000, 12, 0x7FC00000, 22, 0x800, True, 1023, 511, False, 0x80000400, 0),
                 (0x003FF000, 12, 0x7FC00000, 22, 0x800, True, 345, 259, False, 0x80000400, 0)]:
        for rec in (8, 6):
            m = (len(data) - 13) // rec
            a, b = np.zeros(m, EVENT_DTYPE), np.zeros(m, EVENT_DTYPE)
            ra = decode_aer_be(data, 13, rec, *args, a)
            rb = decode_aer_be_np(data, 13, rec, *args, b)
            assert ra == rb
            np.testing.assert_array_equal(a[:ra[0]], b[:rb[0]])


@FUZZ
@given(st.binary(max_size=300), st.sampled_from([b"#!AER-DAT2.0\r\n", b"#!AER-DAT1.0\n",
                                                 b"#!AER-DAT2.0\r\n# AEChip: x.Davis346B\r\n", b"#!AER-DAT9\n"]))
def test_aedat2_fuzz(body, head):
    try:
        ev, size, _ = decode_aedat2(head + body, source="f")
    except FormatError as e:
        assert "\n" not in str(e) and str(e).startswith("f: byte ")
        return
    assert len(ev) <= len(body) // 6
