"""Make the small real-recording cuts in tests/data/ (see tests/data/README.md for origins and licences).

Each output is a prefix of a public recording made by a real camera, or those real events written
by an independent library (faery for DAT, v2e's AEDAT-2.0 writer for jAER files). Nothing here is
written by evrt's own writers. Run once; the outputs are committed.

    python tools/make_format_test_data.py --faery-evt2 EVT2.raw --expelliarmus-evt3 EVT3.raw \\
        --tonic-aedat4 sample.aedat4 --v2e-src V2E_CHECKOUT [--out tests/data]

Needs faery (pip install faery) for the DAT file and a v2e source checkout for the AEDAT 2.0 file
(its ``AEDat2Output`` class is loaded from ``v2ecore/output/aedat2_output.py`` without importing
v2e's heavy dependencies).
"""
from __future__ import annotations

import argparse
import ast
import os
import struct
import sys

import numpy as np

AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"


def header_end(data: bytes, marker: int) -> int:
    off = 0
    while off < len(data) and data[off] == marker:
        off = data.index(b"\n", off) + 1
    return off


def cut_words(src, dst, word: int, n_words: int) -> None:
    """Header plus the first ``n_words`` words of a Prophesee RAW file (EVT words are self-contained,
    so a prefix is a valid recording)."""
    data = open(src, "rb").read()
    h = header_end(data, ord("%"))
    open(dst, "wb").write(data[:h + word * n_words])


def cut_aedat4(src, dst, n_event_packets: int) -> None:
    """The IOHeader and the packets up to the ``n_event_packets``-th event packet of an AEDAT 4 file,
    bytes unchanged except the IOHeader's data-table position, set to -1 (no table: the table of
    the full file would point past the cut)."""
    data = bytearray(open(src, "rb").read())
    assert data.startswith(AEDAT4_MAGIC)
    base = len(AEDAT4_MAGIC)
    size = struct.unpack_from("<I", data, base)[0]
    fb = base + 4
    table = fb + struct.unpack_from("<I", data, fb)[0]
    vtable = table - struct.unpack_from("<i", data, table)[0]
    field = struct.unpack_from("<H", data, vtable + 4 + 2 * 1)[0]  # IOHeader field 1: file data position
    assert field, "IOHeader has no file data position"
    struct.pack_into("<q", data, table + field, -1)
    off, seen = fb + size, 0
    xml = bytes(data[fb:fb + size])
    event_ids = {int(m) for m in __import__("re").findall(rb'<node name="(\d+)"[^>]*>\s*<attr key="compression"[^<]*</attr>\s*'
                                                         rb'<attr key="originalModuleName"[^<]*</attr>\s*<attr key="originalOutputName" type="string">events', xml)}
    while off < len(data) and seen < n_event_packets:
        sid, sz = struct.unpack_from("<iI", data, off)
        off += 8 + sz
        seen += sid in event_ids
    open(dst, "wb").write(bytes(data[:off]))


def write_dat_with_faery(src_raw, dst, size) -> None:
    import faery
    faery.events_stream_from_file(src_raw, dimensions_fallback=size).to_file(dst, zero_t0=False)


def load_v2e_writer(v2e_src):
    """v2e's AEDat2Output class, compiled from its source file alone (no torch, no v2e install)."""
    path = os.path.join(v2e_src, "v2ecore", "output", "aedat2_output.py")
    tree = ast.parse(open(path).read())
    cls = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "AEDat2Output"]
    import atexit
    import logging

    ns = {"np": np, "logging": logging, "logger": logging.getLogger("v2e"), "atexit": atexit, "struct": struct,
          "EngNumber": lambda v: v, "v2e_quit": sys.exit}
    exec(compile(ast.Module(body=cls, type_ignores=[]), path, "exec"), ns)
    return ns["AEDat2Output"]


def write_aedat2_with_v2e(aedat4_cut, dst, v2e_src) -> None:
    """The DVXplorer cut's events, rebased to t = 0, through v2e's writer in its 346 x 260 DAVIS mode
    (v2e takes [t seconds, x, y, +1/-1] rows with the top-left origin)."""
    import aedat

    ev = np.concatenate([p["events"] for p in aedat.Decoder(aedat4_cut) if "events" in p])
    t = (ev["t"] - ev["t"][0]).astype(np.float64) / 1e6
    rows = np.stack([t, ev["x"], ev["y"], np.where(ev["on"], 1.0, -1.0)], axis=1)
    w = load_v2e_writer(v2e_src)(dst, output_width=346, output_height=260)
    w.appendEvents(rows)
    w.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faery-evt2", required=True)
    ap.add_argument("--expelliarmus-evt3", required=True)
    ap.add_argument("--tonic-aedat4", required=True)
    ap.add_argument("--v2e-src", required=True)
    ap.add_argument("--out", default="tests/data")
    a = ap.parse_args(argv)
    o = lambda name: os.path.join(a.out, name)  # noqa: E731
    cut_words(a.faery_evt2, o("prophesee_gen3_evt2.raw"), 4, 24_000)
    cut_words(a.expelliarmus_evt3, o("prophesee_gen41_evt3.raw"), 2, 40_000)
    dat_src = o("_evt2_for_dat.raw")
    cut_words(a.faery_evt2, dat_src, 4, 8_000)
    write_dat_with_faery(dat_src, o("prophesee_gen3_cd.dat"), (640, 480))
    os.remove(dat_src)
    cut_aedat4(a.tonic_aedat4, o("dvxplorer_cut.aedat4"), 6)
    write_aedat2_with_v2e(o("dvxplorer_cut.aedat4"), o("dvxplorer_v2e_davis346.aedat"), a.v2e_src)
    for name in sorted(os.listdir(a.out)):
        print(f"{name:36s} {os.path.getsize(o(name)):>9,d} bytes")


if __name__ == "__main__":
    main()
