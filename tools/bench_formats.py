"""Decode rate of every recording format evrt reads, in M events/s (and the AEDAT 4 write rate).

Inputs are the real recordings in tests/data and examples/data/nmnist, repeated to about --events
events (each format's payload repeated after its header, so the bytes stay a valid stream; AEDAT 3.1
and uncompressed AEDAT 4 are the DVXplorer events written by evrt's writers). The decoders run on
bytes already in memory (no disk I/O), except AEDAT 3.1, whose reader takes a file (a fresh
temporary file, so read from the page cache). The first call of each decoder (numba
compile or cache load) is timed separately and reported as warm-up; the rate is the best of --repeat
timed calls, in process CPU time (the decoders are single-threaded, so on a shared, loaded machine
this is the rate the decoder itself reaches) and in wall-clock time.

    python tools/bench_formats.py [--events 10000000] [--repeat 3] [--json]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "tests" / "data"


def _repeat_body(data: bytes, start: int, target_bytes: int) -> bytes:
    body = data[start:]
    return data[:start] + body * max(1, -(-target_bytes // len(body)))


def _cases(n_events: int, tmp: str):
    """(name, callable returning the event count, events in the input)."""
    from evrt.events import EVENT_DTYPE
    from evrt.formats import read_recording, write_aedat4
    from evrt.formats.aedat2 import decode_aedat2, parse_header as aedat2_header
    from evrt.formats.aedat31 import read_aedat31, write_aedat31
    from evrt.formats.aedat4 import decode_aedat4, parse_io_header
    from evrt.formats.atis_bin import decode_atis_bin
    from evrt.formats.prophesee import decode_prophesee, parse_header

    out = []
    nm = b"".join(open(f, "rb").read() for f in sorted(glob.glob(str(ROOT / "examples/data/nmnist/Test/*/*.bin"))))
    big = nm * max(1, -(-n_events * 5 // len(nm)))
    out.append(("N-MNIST .bin (40-bit ATIS)", lambda b=big: len(decode_atis_bin(b)), len(big) // 5))

    v2e = (DATA / "dvxplorer_v2e_davis346.aedat").read_bytes()
    big = _repeat_body(v2e, aedat2_header(v2e)[1], n_events * 8)
    out.append(("AEDAT 2.0 (jAER, DAVIS layout)",
                lambda b=big: len(decode_aedat2(b, sensor_size=(346, 260))[0]), None))

    for name, fname, word in (("Prophesee EVT 2.0", "prophesee_gen3_evt2.raw", 4),
                              ("Prophesee EVT 3.0", "prophesee_gen41_evt3.raw", 2),
                              ("Prophesee DAT", "prophesee_gen3_cd.dat", 8)):
        data = (DATA / fname).read_bytes()
        start = parse_header(data)["start"] + (2 if fname.endswith(".dat") else 0)
        per_byte = len(decode_prophesee(data)[0]) / (len(data) - start)
        big = _repeat_body(data, start, int(n_events / per_byte))
        out.append((name, lambda b=big: len(decode_prophesee(b)[0]), None))

    ev = read_recording(DATA / "dvxplorer_cut.aedat4").events
    reps = max(1, -(-n_events // len(ev)))
    tiled = np.empty(len(ev) * reps, EVENT_DTYPE)
    span = int(ev["t"][-1] - ev["t"][0]) + 1
    for i in range(reps):
        part = tiled[i * len(ev):(i + 1) * len(ev)]
        part[:] = ev
        part["t"] = ev["t"] + np.uint64(i * span)
    p31 = os.path.join(tmp, "big.aedat")
    write_aedat31(p31, tiled)
    out.append(("AEDAT 3.1 (file)", lambda p=p31: len(read_aedat31(p)), None))
    p4 = os.path.join(tmp, "big.aedat4")
    write_aedat4(p4, tiled, (320, 240))
    plain = open(p4, "rb").read()
    out.append(("AEDAT 4, uncompressed (evrt's writer)", lambda b=plain: len(decode_aedat4(b)[0]), None))
    dv = (DATA / "dvxplorer_cut.aedat4").read_bytes()  # DV's own LZ4 packets, repeated
    _, _, first, end = parse_io_header(dv)
    lz4 = dv[:first] + dv[first:end] * max(1, -(-n_events // len(ev)))
    out.append(("AEDAT 4, LZ4 (DV's packets)", lambda b=lz4: len(decode_aedat4(b)[0]), None))

    def write4(ev=tiled):
        p = os.path.join(tmp, "w.aedat4")
        if os.path.exists(p):
            os.remove(p)
        write_aedat4(p, ev, (320, 240))
        return len(ev)
    out.append(("AEDAT 4 write (evrt writer, file)", write4, None))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="decode rate per recording format")
    ap.add_argument("--events", type=int, default=10_000_000, help="approximate events per input")
    ap.add_argument("--repeat", type=int, default=3, help="timed calls per format (best is kept)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    a = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = _cases(a.events, tmp)
        for i, (name, fn, _) in enumerate(cases, 1):
            print(f"[{i}/{len(cases)}] {name} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            fn()
            warm = time.perf_counter() - t0
            best, best_cpu, n = float("inf"), float("inf"), 0
            for _ in range(a.repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                n = fn()
                best_cpu = min(best_cpu, time.process_time() - c0)
                best = min(best, time.perf_counter() - t0)
            rows.append({"format": name, "events": n, "seconds": best, "cpu_seconds": best_cpu,
                         "mev_per_s": n / best / 1e6, "mev_per_cpu_s": n / max(best_cpu, 1e-9) / 1e6,
                         "first_call_s": warm})
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    info = {"machine": platform.machine(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "load_average_1min": load, "events_target": a.events, "repeat": a.repeat, "rows": rows}
    if a.json:
        print(json.dumps(info))
        return 0
    print("| format | events | M events/s (CPU time) | M events/s (wall) | first call (s) |\n"
          "| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['format']} | {r['events']:,} | {r['mev_per_cpu_s']:.1f} | {r['mev_per_s']:.1f} | "
              f"{r['first_call_s']:.2f} |")
    print(f"\n{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, 1-min load average "
          f"{load:.1f}; best of {a.repeat}; first call = the untimed warm-up (numba compile or cache load, plus one "
          f"decode).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
