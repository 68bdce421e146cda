"""AEDAT 3.1 reader/writer and labels CSV: round trip, a slow reference decoder, bad files, fuzzing."""
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import require

from evrt.errors import FormatError
from evrt.formats.aedat31 import (EVENT_DTYPE, LABEL_DTYPE, cut_samples, read_aedat31,
                                  read_labels_csv, write_aedat31, write_labels_csv)

HEAD = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n"


def reference_decode(blob: bytes):
    """Obviously-correct, slow decoder written straight from the format description."""
    lines_end = blob.index(b"#!END-HEADER\r\n") + len(b"#!END-HEADER\r\n")
    pos, out = lines_end, []
    while pos < len(blob):
        etype, _src, esize, _tso, ovf, cap, _num, _val = struct.unpack("<hhiiiiii", blob[pos:pos + 28])
        pos += 28
        if etype == 1:
            for k in range(cap):
                data, ts = struct.unpack("<II", blob[pos + 8 * k:pos + 8 * k + 8])
                out.append((ts | (ovf << 31), (data >> 17) & 0x7FFF, (data >> 2) & 0x7FFF,
                            bool((data >> 1) & 1)))
        pos += esize * cap
    return np.array(out, EVENT_DTYPE)


def packet(etype, payload_events, esize=8, ovf=0, cap=None):
    n = len(payload_events) if cap is None else cap
    body = b"".join(payload_events) if etype == 1 else b"\x00" * (esize * n)
    return struct.pack("<hhiiiiii", etype, 1, esize, 4, ovf, n, n, n) + body


def pol(x, y, p, ts):
    return struct.pack("<II", (x << 17) | (y << 2) | (p << 1) | 1, ts)


def random_events(rng, n, t0=0):
    ev = np.empty(n, EVENT_DTYPE)
    ev["t"] = t0 + np.cumsum(rng.integers(0, 50, n))
    ev["x"] = rng.integers(0, 128, n)
    ev["y"] = rng.integers(0, 128, n)
    ev["on"] = rng.integers(0, 2, n).astype(bool)
    return ev


def test_round_trip_and_reference(tmp_path):
    rng = np.random.default_rng(1)
    # cross the 2**31 µs overflow boundary so the overflow field and packet splitting are exercised
    ev = random_events(rng, 5000, t0=(1 << 31) - 40_000)
    p = tmp_path / "r.aedat"
    write_aedat31(p, ev, packet_events=700)
    got = read_aedat31(p)
    assert got.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(got, ev)
    np.testing.assert_array_equal(got, reference_decode(p.read_bytes()))


def test_other_packets_are_skipped_not_misread(tmp_path):
    blob = HEAD + packet(1, [pol(3, 4, 1, 10), pol(127, 0, 0, 11)]) \
        + packet(2, [], esize=12, cap=5) + packet(1, [pol(5, 6, 0, 20)], ovf=1) \
        + packet(8, [], esize=0, cap=0)
    p = tmp_path / "mixed.aedat"
    p.write_bytes(blob)
    got = read_aedat31(p)
    np.testing.assert_array_equal(got, reference_decode(blob))
    assert got["x"].tolist() == [3, 127, 5] and got["on"].tolist() == [True, False, False]
    assert int(got["t"][2]) == 20 + (1 << 31)


def test_empty_recording(tmp_path):
    p = tmp_path / "e.aedat"
    write_aedat31(p, np.zeros(0, EVENT_DTYPE))
    assert len(read_aedat31(p)) == 0


@pytest.mark.parametrize("blob, where", [
    (b"#!AER-DAT2.0\r\n#!END-HEADER\r\n", "byte 0"),
    (b"#!AER-DAT3.1\r\n#Format: RAW\r\n", "byte 28"),                 # no header end
    (b"#!AER-DAT3.1\r\nxyz\r\n#!END-HEADER\r\n", "byte 14"),           # non-comment line
    (HEAD + b"\x01\x00\x01\x00", f"byte {len(HEAD)}"),                # truncated packet header
    (HEAD + packet(1, [pol(1, 1, 1, 5)])[:-3], f"byte {len(HEAD)}"),  # payload beyond EOF
    (HEAD + packet(1, [], esize=12, cap=1), f"byte {len(HEAD)}"),     # wrong polarity eventSize
    (HEAD + packet(1, [pol(1, 1, 1, 5), pol(1, 1, 1, 4)]), f"byte {len(HEAD) + 28 + 8}"),
])
def test_bad_files_name_the_byte(tmp_path, blob, where):
    p = tmp_path / "bad.aedat"
    p.write_bytes(blob)
    with pytest.raises(FormatError) as e:
        read_aedat31(p)
    assert str(p) in str(e.value) and where in str(e.value), str(e.value)


def test_backwards_timestamps_can_be_allowed(tmp_path):
    p = tmp_path / "b.aedat"
    p.write_bytes(HEAD + packet(1, [pol(1, 1, 1, 5), pol(2, 1, 1, 4)]))
    assert read_aedat31(p, check_monotonic=False)["t"].tolist() == [5, 4]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_reader_returns_or_raises_formaterror(tmp_path, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    base = bytearray(HEAD + packet(1, [pol(int(rng.integers(128)), int(rng.integers(128)), 1, i)
                                       for i in range(6)]) + packet(2, [], esize=4, cap=3))
    mode = data.draw(st.sampled_from(["mutate", "truncate", "random", "splice"]))
    if mode == "mutate":
        for _ in range(data.draw(st.integers(1, 8))):
            base[data.draw(st.integers(0, len(base) - 1))] = data.draw(st.integers(0, 255))
        blob = bytes(base)
    elif mode == "truncate":
        blob = bytes(base[:data.draw(st.integers(0, len(base)))])
    elif mode == "splice":
        blob = HEAD + data.draw(st.binary(max_size=200))
    else:
        blob = data.draw(st.binary(max_size=300))
    p = tmp_path / "fuzz.aedat"
    p.write_bytes(blob)
    try:
        ev = read_aedat31(p)
    except FormatError:
        return
    assert ev.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(ev, reference_decode(blob))


def test_labels_round_trip_and_cut(tmp_path):
    ev = np.zeros(10, EVENT_DTYPE)
    ev["t"] = np.arange(10) * 100
    lab = np.array([(1, 100, 300), (11, 300, 301), (5, 850, 5000)], LABEL_DTYPE)
    p = tmp_path / "u_labels.csv"
    write_labels_csv(p, lab)
    assert p.read_text().splitlines()[0] == "class,startTime_usec,endTime_usec"
    back = read_labels_csv(p)
    np.testing.assert_array_equal(back, lab)
    parts = cut_samples(ev, back)
    assert [x["t"].tolist() for x in parts] == [[100, 200], [300], [900]]  # start <= t < end


@pytest.mark.parametrize("text, line", [
    ("cls,a,b\n1,0,5\n", "line 1"),
    ("class,startTime_usec,endTime_usec\n1,0,5\n12,5,9\n", "line 3"),
    ("class,startTime_usec,endTime_usec\n1,0,5\n\n2,9,9\n", "line 4"),
    ("class,startTime_usec,endTime_usec\n1,0,x\n", "line 2"),
    ("class,startTime_usec,endTime_usec\n1,0\n", "line 2"),
])
def test_bad_labels_name_the_line(tmp_path, text, line):
    p = tmp_path / "bad_labels.csv"
    p.write_text(text)
    with pytest.raises(FormatError) as e:
        read_labels_csv(p)
    assert str(p) in str(e.value) and line in str(e.value), str(e.value)


def test_label_outside_recording_names_the_row():
    ev = np.zeros(3, EVENT_DTYPE)
    ev["t"] = [1000, 2000, 3000]
    lab = np.array([(1, 1000, 2000), (2, 5000, 6000)], LABEL_DTYPE)
    with pytest.raises(FormatError, match=r"rec\.aedat: label row 1 \(csv line 3\)"):
        cut_samples(ev, lab, source="rec.aedat")


def _spikingjelly_load_aedat_v3():
    """spikingjelly's own AEDAT 3.1 reader, compiled from its source file alone: importing the
    package pulls in torchvision, which need not be importable here."""
    import ast
    import typing
    import warnings
    sj = require("spikingjelly")  # its package __init__ is light; its datasets module is not
    src_path = Path(list(sj.__path__)[0]) / "datasets" / "__init__.py"
    with warnings.catch_warnings():  # its docstrings have invalid escapes
        warnings.simplefilter("ignore")
        tree = ast.parse(src_path.read_text())
    fn = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "load_aedat_v3"]
    assert fn, f"{src_path} has no load_aedat_v3 (the dev extra pins a spikingjelly that has it)"
    ns = {"np": np, "struct": struct, "Dict": typing.Dict}
    exec(compile(ast.Module(body=fn, type_ignores=[]), str(src_path), "exec"), ns)
    return ns["load_aedat_v3"]


def test_spikingjelly_reads_our_files(tmp_path):
    load = _spikingjelly_load_aedat_v3()
    ev = random_events(np.random.default_rng(7), 3000, t0=(1 << 31) - 20_000)
    p = tmp_path / "sj.aedat"
    write_aedat31(p, ev, packet_events=512)
    d = load(str(p))
    np.testing.assert_array_equal(d["t"], ev["t"])
    np.testing.assert_array_equal(d["x"], ev["x"])
    np.testing.assert_array_equal(d["y"], ev["y"])
    np.testing.assert_array_equal(d["p"], ev["on"].astype(int))
