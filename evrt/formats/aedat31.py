"""AEDAT 3.1 (the DVS128 Gesture recordings) and its ``_labels.csv`` files.

File layout: ASCII header lines starting with ``#``, the first one ``#!AER-DAT3.1``, the last one
``#!END-HEADER\\r\\n``; then packets, each a 28-byte little-endian header

    eventType i16, eventSource i16, eventSize i32, eventTSOffset i32,
    eventTSOverflow i32, eventCapacity i32, eventNumber i32, eventValid i32

followed by ``eventCapacity * eventSize`` payload bytes. Only polarity packets (eventType 1) are
decoded; every other packet is skipped by its size. A polarity event is ``u32 data, i32 timestamp``:
``x = (data >> 17) & 0x7FFF``, ``y = (data >> 2) & 0x7FFF``, ``on = (data >> 1) & 1``,
``t = timestamp | (eventTSOverflow << 31)`` (µs).

Decoding follows spikingjelly's ``DVS128Gesture.load_origin_data`` (docs/SEMANTICS.md), which is what every
reference checkpoint was trained on: all ``eventCapacity`` slots of a packet are decoded and the
validity bit (bit 0) is not checked. Decoding: one Python pass over the packet headers (there are
few of them), then one numba pass over the polarity payloads straight from the file buffer (NumPy
field-by-field assignment into the packed 13-byte records was ~8x slower).
"""
from __future__ import annotations

import os
import struct

import numba
import numpy as np

from ..errors import FormatError
from ..events import EVENT_DTYPE

__all__ = [
    "read_aedat31", "write_aedat31", "read_labels_csv", "write_labels_csv", "cut_samples",
    "LABEL_DTYPE", "POLARITY_EVENT",
]

MAGIC = b"#!AER-DAT3.1"
END_HEADER = b"#!END-HEADER\r\n"
PACKET_HEADER = struct.Struct("<hhiiiiii")  # 28 bytes
POLARITY_EVENT = 1
POLARITY_SIZE = 8
_RAW = np.dtype([("data", "<u4"), ("ts", "<u4")])  # u32 ts: spikingjelly unpacks it as 'I'

LABEL_DTYPE = np.dtype([("class", "<i4"), ("start", "<u8"), ("end", "<u8")])
LABELS_HEADER = "class,startTime_usec,endTime_usec"
N_CLASSES = 11


def _err(path, msg):
    return FormatError(f"{path}: {msg}")


def _header_end(buf: bytes, path) -> int:
    """Byte offset just past ``#!END-HEADER\\r\\n``; every header line must start with '#'."""
    if not buf.startswith(MAGIC):
        found = buf[:16].split(b"\n")[0]
        raise _err(path, f"byte 0: not an AEDAT 3.1 file (expected {MAGIC.decode()!r}, found {found!r})")
    off = 0
    n = len(buf)
    while off < n:
        if buf[off:off + 1] != b"#":
            raise _err(path, f"byte {off}: header line does not start with '#' before {END_HEADER!r}")
        nl = buf.find(b"\n", off)
        if nl < 0:
            break
        if buf[off:nl + 1] == END_HEADER:
            return nl + 1
        off = nl + 1
    raise _err(path, f"byte {n}: end of file before the header end line {END_HEADER!r}")


def _scan_packets(buf: bytes, start: int, path):
    """Walk the packet headers; return offsets, capacities and overflows of the polarity packets."""
    offs, caps, ovfs = [], [], []
    n = len(buf)
    off = start
    unpack = PACKET_HEADER.unpack_from
    while off < n:
        if n - off < PACKET_HEADER.size:
            raise _err(path, f"byte {off}: truncated packet header ({n - off} of 28 bytes)")
        etype, _src, esize, _tsoff, tsovf, cap, _num, _valid = unpack(buf, off)
        if esize < 0 or cap < 0:
            raise _err(path, f"byte {off}: negative eventSize ({esize}) or eventCapacity ({cap})")
        end = off + PACKET_HEADER.size + esize * cap
        if end > n:
            raise _err(path, f"byte {off}: packet of {cap} x {esize} bytes runs past the end of the "
                             f"file ({end} > {n} bytes)")
        if etype == POLARITY_EVENT:
            if esize != POLARITY_SIZE:
                raise _err(path, f"byte {off}: polarity packet with eventSize {esize} (expected 8)")
            if tsovf < 0:
                raise _err(path, f"byte {off}: negative eventTSOverflow {tsovf}")
            if cap:
                offs.append(off + PACKET_HEADER.size)
                caps.append(cap)
                ovfs.append(tsovf)
        off = end
    return offs, caps, ovfs


@numba.njit(cache=True, nogil=True)
def _decode(buf, offs, caps, ovfs, out):
    """Decode the polarity payloads into ``out`` in one pass (bytes assembled little-endian, so the
    payload needs no alignment); return the index of the first backwards timestamp, or -1."""
    k = 0
    prev = np.uint64(0)
    back = -1
    for p in range(offs.shape[0]):
        hi = np.uint64(ovfs[p]) << np.uint64(31)
        b = offs[p]
        for _ in range(caps[p]):
            d = (np.uint32(buf[b]) | (np.uint32(buf[b + 1]) << 8) | (np.uint32(buf[b + 2]) << 16)
                 | (np.uint32(buf[b + 3]) << 24))
            t = hi | (np.uint64(buf[b + 4]) | (np.uint64(buf[b + 5]) << 8)
                      | (np.uint64(buf[b + 6]) << 16) | (np.uint64(buf[b + 7]) << 24))
            e = out[k]
            e.t = t
            e.x = (d >> 17) & 0x7FFF
            e.y = (d >> 2) & 0x7FFF
            e.on = (d >> 1) & 1
            if t < prev and back < 0:
                back = k
            prev = t
            k += 1
            b += 8
    return back


def read_aedat31(path, *, check_monotonic: bool = True) -> np.ndarray:
    """Read the polarity events of an AEDAT 3.1 file as an ``EVENT_DTYPE`` array (µs timestamps).

    Raises ``FormatError`` naming the file and byte offset on a bad header, a truncated packet, a
    packet that runs past the end of the file, a polarity packet whose eventSize is not 8, and (unless
    ``check_monotonic=False``) on a timestamp smaller than the one before it.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        buf = f.read()
    start = _header_end(buf, path)
    offs, caps, ovfs = _scan_packets(buf, start, path)
    if not offs:
        return np.zeros(0, EVENT_DTYPE)
    ev = np.empty(int(sum(caps)), EVENT_DTYPE)
    back = _decode(np.frombuffer(buf, np.uint8), np.asarray(offs, np.int64),
                   np.asarray(caps, np.int64), np.asarray(ovfs, np.int64), ev)
    if check_monotonic and back >= 0:
        first = np.concatenate(([0], np.cumsum(caps)))
        p = int(np.searchsorted(first, back, side="right")) - 1
        byte = offs[p] + (back - int(first[p])) * POLARITY_SIZE
        raise _err(path, f"byte {byte}: timestamp goes backwards at polarity event {back} "
                         f"(t={int(ev['t'][back])} after t={int(ev['t'][back - 1])})")
    return ev


def write_aedat31(path, events, *, packet_events: int = 4096, source: str = "DVS128",
                  header_lines=()) -> int:
    """Write ``events`` (``EVENT_DTYPE``, t non-decreasing) as AEDAT 3.1 polarity packets.

    Packets hold at most ``packet_events`` events and never straddle a change of ``t >> 31`` (the
    timestamp overflow). eventCapacity = eventNumber = eventValid (spikingjelly reads capacity slots),
    the validity bit is set. ``header_lines`` are extra ``#`` comment lines (without the ``#``). The
    output depends only on the arguments (no wall-clock start time), so it is reproducible.
    Returns the number of bytes written.
    """
    ev = np.asarray(events)
    if ev.dtype.names is None or not {"t", "x", "y", "on"} <= set(ev.dtype.names):
        raise ValueError("write_aedat31 needs an EVENT_DTYPE array (fields t, x, y, on)")
    t = ev["t"].astype(np.uint64)
    if len(t) > 1 and np.any(t[1:] < t[:-1]):
        raise ValueError("write_aedat31: timestamps must be non-decreasing")
    if len(ev) and (int(ev["x"].max()) > 0x7FFF or int(ev["y"].max()) > 0x7FFF):
        raise ValueError("write_aedat31: x and y must fit in 15 bits")
    if packet_events < 1:
        raise ValueError("packet_events must be >= 1")
    lines = [MAGIC.decode(), "#Format: RAW", f"#Source 1: {source}"]
    lines += ["#" + str(s).replace("\r", " ").replace("\n", " ") for s in header_lines]
    head = ("\r\n".join(lines) + "\r\n").encode("ascii") + END_HEADER

    raw = np.empty(len(ev), _RAW)
    raw["data"] = ((ev["x"].astype(np.uint32) << 17) | (ev["y"].astype(np.uint32) << 2)
                   | (ev["on"].astype(np.uint32) << 1) | np.uint32(1))
    raw["ts"] = (t & np.uint64(0x7FFFFFFF)).astype(np.uint32)
    ovf = t >> np.uint64(31)
    # packet boundaries: every packet_events events and wherever the overflow counter changes
    cuts = set(range(0, len(ev), packet_events))
    cuts.update((np.flatnonzero(ovf[1:] != ovf[:-1]) + 1).tolist())
    bounds = sorted(cuts) + [len(ev)]
    parts = [head]
    for a, b in zip(bounds[:-1], bounds[1:]):
        n = b - a
        parts.append(PACKET_HEADER.pack(POLARITY_EVENT, 1, POLARITY_SIZE, 4, int(ovf[a]), n, n, n))
        parts.append(raw[a:b].tobytes())
    blob = b"".join(parts)
    with open(os.fspath(path), "wb") as f:
        f.write(blob)
    return len(blob)


def read_labels_csv(path) -> np.ndarray:
    """Read ``userNN_lighting_labels.csv`` (``class,startTime_usec,endTime_usec``; class 1..11).

    Returns a ``LABEL_DTYPE`` array (class kept 1-based as in the file). A bad row raises
    ``FormatError`` naming the file and the 1-based line number.
    """
    path = os.fspath(path)
    with open(path, "r", encoding="ascii", errors="replace", newline="") as f:
        lines = f.read().splitlines()
    if not lines or lines[0].strip().replace(" ", "").lower() != LABELS_HEADER.lower():
        got = lines[0].strip() if lines else ""
        raise _err(path, f"line 1: expected header {LABELS_HEADER!r}, found {got!r}")
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        s = line.strip()
        if not s:
            continue
        fields = [f.strip() for f in s.split(",")]
        try:
            if len(fields) != 3:
                raise ValueError
            c, a, b = (int(x) for x in fields)
        except ValueError:
            raise _err(path, f"line {lineno}: expected three integers 'class,start,end', found {s!r}") from None
        if not 1 <= c <= N_CLASSES:
            raise _err(path, f"line {lineno}: class {c} outside 1..{N_CLASSES}")
        if a < 0 or b <= a or b >= 1 << 64:
            raise _err(path, f"line {lineno}: bad interval start={a} end={b} (need 0 <= start < end < 2^64 µs)")
        rows.append((c, a, b))
    return np.array(rows, LABEL_DTYPE)


def write_labels_csv(path, labels) -> None:
    """Write a ``LABEL_DTYPE`` array (or (class, start, end) tuples, class 1..11) as a labels CSV."""
    lab = np.asarray(labels if isinstance(labels, np.ndarray) else np.array(
        [tuple(r) for r in labels], LABEL_DTYPE))
    out = [LABELS_HEADER] + [f"{int(r['class'])},{int(r['start'])},{int(r['end'])}" for r in lab]
    with open(os.fspath(path), "w", encoding="ascii", newline="") as f:
        f.write("\r\n".join(out) + "\r\n")


def cut_samples(events, labels, *, source: str = "<events>") -> list:
    """Cut a recording into labelled samples: events with ``start <= t < end`` for each label row.

    Returns one event array per label row, in row order (views when ``events`` is time-sorted). A label
    that does not overlap the recording at all raises ``FormatError`` naming ``source`` and the csv
    line (row i is line i + 2: the header is line 1).
    """
    ev = np.asarray(events)
    lab = np.asarray(labels)
    t = ev["t"]
    if len(t):
        t0, t1 = int(t.min()), int(t.max())
    for i, r in enumerate(lab):
        a, b = int(r["start"]), int(r["end"])
        if b <= a:
            raise _err(source, f"label row {i} (csv line {i + 2}): empty interval [{a}, {b})")
        if not len(t) or a > t1 or b <= t0:
            rec = f"[{t0}, {t1}]" if len(t) else "(no events)"
            raise _err(source, f"label row {i} (csv line {i + 2}): interval [{a}, {b}) lies outside "
                               f"the recording {rec}")
    sorted_t = len(t) < 2 or not np.any(t[1:] < t[:-1])
    out = []
    for r in lab:
        a, b = np.uint64(r["start"]), np.uint64(r["end"])
        if sorted_t:
            i, j = np.searchsorted(t, a, "left"), np.searchsorted(t, b, "left")
            out.append(ev[i:j])
        else:
            out.append(ev[(t >= a) & (t < b)])
    return out
