"""Prophesee EVT 2.0 / EVT 3.0 / DAT readers on real camera recordings (tests/data/README.md), against
faery's decoder where it is installed (dev extra), the numba decoders against their twins, and
hostile bytes that end in one-line errors."""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import require
from evrt.errors import FormatError
from evrt.events import EVENT_DTYPE
from evrt.formats import detect_format, read_recording
from evrt.formats.prophesee import decode_prophesee, parse_header
from evrt.kernels.decode import (count_evt3, decode_dat, decode_dat_np, decode_evt2, decode_evt2_np, decode_evt3,
                                 decode_evt3_py)

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
EVT2 = os.path.join(DATA, "prophesee_gen3_evt2.raw")
EVT3 = os.path.join(DATA, "prophesee_gen41_evt3.raw")
DAT = os.path.join(DATA, "prophesee_gen3_cd.dat")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _faery():
    return require("faery", "pip install faery")


def _faery_events(path, size):
    faery = _faery()
    return np.concatenate(list(faery.events_stream_from_file(path, dimensions_fallback=size)))


def test_real_files_detected_with_camera_and_geometry():
    cases = [(EVT2, "evt2", (640, 480), "Prophesee hal_plugin_gen3_fx3 (serial 00000157)"),
             (EVT3, "evt3", (1280, 720), "Prophesee hal_plugin_gen41_evk3 (serial 00000307)"),
             (DAT, "dat", (640, 480), None)]
    for path, fmt, size, camera in cases:
        assert detect_format(path) == fmt
        rec = read_recording(path)
        assert (rec.format, rec.sensor_size, rec.camera) == (fmt, size, camera)
        ev = rec.events
        assert len(ev) > 5000 and ev["x"].max() < size[0] and ev["y"].max() < size[1]
        assert 0.2 < ev["on"].mean() < 0.8
        assert not np.any(np.diff(ev["t"].astype(np.int64)) < 0)  # these recordings are time-ordered


def test_evt2_matches_faery():
    ev = read_recording(EVT2).events
    ref = _faery_events(EVT2, (640, 480))
    for f in ("t", "x", "y", "on"):
        np.testing.assert_array_equal(ev[f], ref[f])


def test_evt3_matches_faery():
    """Same events; times equal except where the file's TIME_LOW steps back (0x32B then 0x320 before
    the next events): evrt takes the last TIME_LOW as the format says, faery keeps time monotonic and
    holds the larger value, so faery's times there are up to 11 µs later."""
    ev = read_recording(EVT3).events
    ref = _faery_events(EVT3, (1280, 720))
    for f in ("x", "y", "on"):
        np.testing.assert_array_equal(ev[f], ref[f])
    d = ref["t"].astype(np.int64) - ev["t"].astype(np.int64)
    assert d.min() >= 0 and d.max() < 4096 and np.mean(d == 0) > 0.9


def test_dat_written_by_faery_holds_the_evt2_events():
    """The DAT file is faery's conversion of the start of the EVT 2.0 recording: same events."""
    dat = read_recording(DAT).events
    evt2 = read_recording(EVT2).events[:len(dat)]
    for f in ("t", "x", "y", "on"):
        np.testing.assert_array_equal(dat[f], evt2[f])
    ref = _faery_events(DAT, (640, 480))
    for f in ("t", "x", "y", "on"):
        np.testing.assert_array_equal(dat[f], ref[f])


def test_kernels_equal_twins_on_real_and_random_bytes():
    rng = np.random.default_rng(0)
    for path, word in ((EVT2, 4), (EVT3, 2), (DAT, 8)):
        data = open(path, "rb").read()
        h = parse_header(data)
        start = h["start"] + (2 if word == 8 else 0)
        tail = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
        for blob in (data, data[:start] + tail):
            buf = np.frombuffer(blob, np.uint8)
            n = (len(buf) - start) // word
            cap = count_evt3(buf, start) if word == 2 else n
            for size in ((0, 0), h["size"]):
                a, b = np.zeros(cap, EVENT_DTYPE), np.zeros(cap, EVENT_DTYPE)
                if word == 4:
                    ra, rb = decode_evt2(buf, start, *size, a), decode_evt2_np(buf, start, *size, b)
                elif word == 2:
                    ra, rb = decode_evt3(buf, start, *size, a), decode_evt3_py(buf, start, *size, b)
                else:
                    ra, rb = decode_dat(buf, start, 2, *size, a), decode_dat_np(buf, start, 2, *size, b)
                assert ra == rb, (path, size)
                np.testing.assert_array_equal(a[:ra[0]], b[:rb[0]])


def test_time_wraps_and_missing_time_base():
    # EVT 2.0: events before the first TIME_HIGH are skipped; a TIME_HIGH far below the last is a wrap
    th = lambda v: (0x8 << 28) | v  # noqa: E731
    cd = lambda on, t6, x, y: (on << 28) | (t6 << 22) | (x << 11) | y  # noqa: E731
    words = [cd(1, 1, 2, 3), th(0x0FFFFFFF), cd(1, 5, 4, 5), th(2), cd(0, 7, 6, 7)]
    data = b"% evt 2.0\n% geometry 8x8\n" + np.array(words, "<u4").tobytes()
    ev, size, _, kind = decode_prophesee(data)
    assert kind == "evt2" and size == (8, 8)
    assert ev["t"].tolist() == [(0x0FFFFFFF << 6) + 5, (1 << 34) + (2 << 6) + 7]
    assert ev["on"].tolist() == [True, False]
    # EVT 3.0: vectors, and the 24-bit wrap
    w3 = [0x8FFF, 0x6005, 0x0003, 0x3804, 0x4005, 0x5001, 0x8000, 0x6001, 0x2002]
    data = b"% format EVT3;height=10;width=20\n% end\n" + np.array(w3, "<u2").tobytes()
    ev, size, _, kind = decode_prophesee(data)
    assert kind == "evt3" and size == (20, 10)
    assert ev["x"].tolist() == [4, 6, 16, 2] and ev["y"].tolist() == [3] * 4
    assert ev["on"].tolist() == [True, True, True, False]
    assert ev["t"].tolist() == [(0xFFF << 12) + 5] * 3 + [(1 << 24) + 1]


@pytest.mark.parametrize("data, msg", [
    (b"% evt 2.0\n% geometry 4x4\n" + np.array([0x80000001, 0x10000000 | (9 << 11)], "<u4").tobytes(),
     r"byte 29: event outside the 4 x 4 sensor"),
    (b"% evt 3.0\n" + b"\x00", r"byte 10: incomplete last 16-bit word"),
    (b"% evt 2.1\n", r"encoding 'evt2.1' is not supported"),
    (b"% Date today\n", r"names no event encoding"),
    (b"% Data file containing CD events.\n% Version 2\n\x0c\x07", r"DAT event size 7"),
    (b"% Data file containing CD events.\n% Version 2\n\x99\x08", r"DAT event type 0x99"),
    (b"% Data file containing CD events.\n% Version 7\n\x0c\x08", r"DAT header version '7'"),
    (b"% evt 3.0", r"header line without an end of line"),
])
def test_hostile_files_one_line_errors(tmp_path, data, msg):
    p = tmp_path / "bad.raw"
    p.write_bytes(data)
    with pytest.raises(FormatError, match=msg) as e:
        read_recording(p)
    assert "\n" not in str(e.value) and "bad.raw" in str(e.value)


@FUZZ
@given(st.sampled_from([b"% evt 2.0\n", b"% evt 3.0\n% geometry 64x32\n", b"% format EVT3\n% end\n",
                        b"% Version 2\n% Width 64\n% Height 48\n", b"% evt 2.0\n% geometry 640x480\n"]),
       st.binary(max_size=400))
def test_prophesee_fuzz(head, body):
    try:
        ev, size, _, _ = decode_prophesee(head + body, source="f")
    except FormatError as e:
        assert "\n" not in str(e) and str(e).startswith("f: byte ")
        return
    assert len(ev) <= 6 * len(body)  # EVT 3.0 vectors: at most 12 events per 2 bytes, sized by count
    if size is not None and len(ev):
        assert ev["x"].max() < size[0] and ev["y"].max() < size[1]


def test_header_geometry_sources():
    modern = (b"% camera_integrator_name Prophesee\n% date 2023-03-29 16:37:46\n% format EVT3;height=720;width=1280\n"
              b"% generation 4.2\n% plugin_name hal_plugin_imx636_evk4\n% serial_number 00050423\n% end\n")
    h = parse_header(modern)
    assert (h["kind"], h["size"]) == ("evt3", (1280, 720))
    assert h["camera"] == "Prophesee hal_plugin_imx636_evk4 (serial 00050423)"
    assert h["start"] == len(modern)
    legacy = b"% evt 2.0\n% geometry 304x240\n% sensor_generation 3.1\n"
    assert parse_header(legacy)["size"] == (304, 240)  # an explicit geometry wins over the generation
    assert parse_header(b"% evt 3.0\n% sensor_generation 4.1\n")["size"] == (1280, 720)
    assert parse_header(b"% evt 3.0\n% plugin_name hal_plugin_unknown\n")["size"] is None
    dat = b"% Data file containing CD events.\n% Version 2\n% Height 480\n% Width 640\n"
    assert (parse_header(dat)["kind"], parse_header(dat)["size"]) == ("dat", (640, 480))
