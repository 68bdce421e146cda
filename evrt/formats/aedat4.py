"""AEDAT 4 (iniVation DV) recordings.

Layout: ``#!AER-DAT4.0\\r\\n``; a size-prefixed FlatBuffer IOHeader (compression, data-table
position, XML description of the streams); then packets of ``i32 stream id, i32 size`` and a
FlatBuffer, compressed as the IOHeader says. Event packets (``EVTS``) hold 16-byte ``i64 t, i16 x,
i16 y, bool on`` structs.

Uncompressed and LZ4 files (DV's default) are decoded here: a Python walk over the packet headers,
numba for LZ4 and the event copy (``evrt.kernels.decode``). ZSTD files go through the ``aedat``
package (Rust), a core dependency. Stream ids, sizes and the camera (the stream's ``source``
attribute, e.g. ``DVXplorer_DXB00010``) come from the XML description, read with regular
expressions, not an XML parser: the text comes from an untrusted file. Writing:
``evrt.formats.aedat4_writer``.
"""
from __future__ import annotations

import re
import struct

import numpy as np

from ..errors import FormatError
from ..events import EVENT_DTYPE
from .recording import Recording, read_file_bytes

__all__ = ["read_aedat4", "decode_aedat4", "parse_io_header", "MAGIC"]

MAGIC = b"#!AER-DAT4.0"
_COMPRESSION = {0: "none", 1: "LZ4", 2: "LZ4 high", 3: "ZSTD", 4: "ZSTD high"}
_KINDS = {"EVTS": "events", "FRME": "frame", "IMUS": "imus", "TRIG": "triggers"}  # the aedat package's names
_LZ4_MAX_RATIO = 255  # an LZ4 byte can stand for at most ~255 output bytes: caps a packet's output


def _err(path, msg):
    return FormatError(f"{path}: {msg}")


def parse_io_header(data, path="<bytes>"):
    """``(compression code, XML description, first packet byte, end of the packets)`` of an AEDAT 4
    file's bytes; the packets end where the data table starts (if the IOHeader gives its position)."""
    if not bytes(data[:12]) == MAGIC:
        raise _err(path, f"byte 0: not an AEDAT 4 file (expected {MAGIC.decode()!r})")
    base = data.find(b"\n", 0, 16) + 1
    if base <= 0 or len(data) < base + 16:
        raise _err(path, f"byte {len(data)}: not a readable AEDAT 4 file (end of file inside the IOHeader)")
    size = struct.unpack_from("<I", data, base)[0]
    fb, end = base + 4, base + 4 + size
    if end > len(data) or size < 12:
        raise _err(path, f"byte {base}: not a readable AEDAT 4 file (IOHeader of {size} bytes runs past the end)")

    def u32(i):
        if not fb <= i <= end - 4:
            raise _err(path, f"byte {base}: IOHeader offset {i - fb} outside its {size} bytes")
        return struct.unpack_from("<I", data, i)[0]

    table = fb + u32(fb)
    vt = table - struct.unpack("<i", struct.pack("<I", u32(table)))[0]
    vt_size = u32(vt) & 0xFFFF if vt + 4 <= end else 0
    fields = [struct.unpack_from("<H", data, vt + 4 + 2 * i)[0] if vt + 6 + 2 * i <= min(end, vt + vt_size)
              else 0 for i in range(3)]
    compression = struct.unpack("<i", struct.pack("<I", u32(table + fields[0])))[0] if fields[0] else 0
    stop = len(data)
    if fields[1]:
        pos = struct.unpack("<q", bytes(data[table + fields[1]:table + fields[1] + 8]))[0] \
            if table + fields[1] + 8 <= end else -1
        if end <= pos <= len(data):
            stop = pos
    description = ""
    if fields[2]:
        s = table + fields[2] + u32(table + fields[2])
        n = u32(s)
        if s + 4 + n > end:
            raise _err(path, f"byte {s}: IOHeader description runs past the IOHeader")
        description = bytes(data[s + 4:s + 4 + n]).decode("utf-8", "replace")
    return compression, description, end, stop


def parse_streams(description: str) -> dict:
    """Stream id -> ``{'type': typeIdentifier, 'width', 'height', 'source'}`` from the XML description."""
    starts = [(m.start(), int(m.group(1)))
              for m in re.finditer(r'<node name="(\d{1,9})" path="[^"]{0,300}/\1/"', description)]
    out = {}
    for i, (pos, sid) in enumerate(starts):
        seg = description[pos:starts[i + 1][0] if i + 1 < len(starts) else len(description)]

        def attr(key, pattern=r"[^<]{1,200}"):
            m = re.search(rf'<attr key="{key}" type="\w+">({pattern})</attr>', seg)
            return m.group(1).strip() if m else None
        w, h = attr("sizeX", r"\d{1,5}"), attr("sizeY", r"\d{1,5}")
        out[sid] = {"type": attr("typeIdentifier"), "width": int(w) if w else None,
                    "height": int(h) if h else None, "source": attr("source")}
    return out


def decode_aedat4(data, *, stream_id=None, source="<bytes>"):
    """Decode an uncompressed or LZ4 AEDAT 4 file's bytes: ``(events, (W, H) or None, camera)`` of one
    event stream (the lowest-numbered unless ``stream_id``). ZSTD raises ``FormatError`` (use
    ``read_aedat4``, which hands those to the ``aedat`` package)."""
    from ..kernels import decode as kd

    compression, description, off, n = parse_io_header(data, source)
    if compression not in (0, 1, 2):
        raise _err(source, f"byte 0: {_COMPRESSION.get(compression, compression)} compression is read "
                           f"through the aedat package (read_aedat4)")
    streams = parse_streams(description)
    event_ids = sorted(i for i, s in streams.items() if s["type"] == "EVTS")
    if not event_ids:
        kinds = ", ".join(f"{i}: {_KINDS.get(s['type'], s['type'])}" for i, s in sorted(streams.items())) or "none"
        raise _err(source, f"byte 0: no event stream in this AEDAT 4 file (streams: {kinds})")
    if stream_id is None:
        stream_id = event_ids[0]
    elif stream_id not in event_ids:
        raise _err(source, f"byte 0: stream {stream_id} is not an event stream (event streams: {event_ids})")
    info = streams[stream_id]
    size = (info["width"], info["height"]) if info["width"] and info["height"] else None
    w, h = size if size else (0, 0)
    buf = np.frombuffer(data, np.uint8)
    out = np.empty(max(16, (n - off) // 16), EVENT_DTYPE)  # grown by doubling: LZ4 packets hold more
    scratch = np.empty(1 << 16, np.uint8)
    k = 0
    while True:  # one numba call walks the file; it returns only to have a buffer grown, or on an error
        status, off, k, detail = kd.decode_aedat4_packets(buf, off, n, stream_id, compression, w, h, scratch,
                                                          out.view(np.uint8), k)
        if status == kd.A4_DONE:
            break
        if status == kd.A4_OUT_FULL:
            grown = np.empty(max(2 * len(out), k + detail), EVENT_DTYPE)
            grown.view(np.uint8)[:13 * k] = out.view(np.uint8)[:13 * k]  # bytes: a structured copy is ~10x slower
            out = grown
            continue
        psize = struct.unpack_from("<I", data, off + 4)[0] if off + 8 <= n else 0
        if status == kd.A4_SCRATCH_SMALL and len(scratch) < _LZ4_MAX_RATIO * psize + 64:
            scratch = np.empty(min(4 * len(scratch), _LZ4_MAX_RATIO * psize + 64), np.uint8)
            continue
        raise _err(source, _a4_message(status, off, detail, psize, stream_id, n, size))
    return out[:k], size, info["source"]


def _a4_message(status, off, detail, psize, stream_id, end, size):
    from ..kernels import decode as kd

    if status == kd.A4_TRUNCATED_HEADER:
        return f"byte {off}: truncated packet header ({detail} of 8 bytes)"
    if status == kd.A4_PAST_END:
        return f"byte {off}: packet of {detail} bytes runs past the end of the packets (byte {end})"
    if status in (kd.A4_BAD_LZ4, kd.A4_SCRATCH_SMALL):
        return f"byte {off + 8}: corrupt LZ4 frame in the packet of stream {stream_id}"
    if status == kd.A4_NOT_EVTS:
        return f"byte {off + 8}: packet of event stream {stream_id} is not an EVTS FlatBuffer"
    if status == kd.A4_BAD_OFFSETS:
        return f"byte {off + 8}: EVTS FlatBuffer offsets point outside the packet"
    where = f"packet at byte {off}, event {detail}"
    return (f"{where}: negative time or outside the {size[0]} x {size[1]} sensor" if size
            else f"{where}: negative time or coordinate")


def _aedat_package(path, stream_id):
    """ZSTD-compressed files: the ``aedat`` package decodes them."""
    try:
        import aedat
    except ImportError:
        raise _err(path, "reading a ZSTD AEDAT 4 file needs the 'aedat' package (pip install aedat)") from None
    try:
        dec = aedat.Decoder(path)
        streams = dec.id_to_stream()
        event_ids = sorted(i for i, s in streams.items() if s.get("type") == "events")
        if not event_ids:
            raise _err(path, "no event stream in this AEDAT 4 file")
        sid = event_ids[0] if stream_id is None else stream_id
        parts = [p["events"] for p in dec if p["stream_id"] == sid and "events" in p]
    except FormatError:
        raise
    except Exception as e:  # the Rust side raises plain exceptions with a message
        raise _err(path, f"not a readable AEDAT 4 file ({e})") from None
    ev = np.concatenate([p.astype(EVENT_DTYPE) for p in parts]) if parts else np.zeros(0, EVENT_DTYPE)
    s = streams[sid]
    return ev, ((int(s["width"]), int(s["height"])) if s.get("width") and s.get("height") else None), sid


def read_aedat4(path, stream_id: int | None = None) -> Recording:
    """Events of one event stream (the lowest-numbered one unless ``stream_id`` is given); the sensor
    size is that stream's width and height, the camera its source. Errors name the byte offset."""
    path, data = read_file_bytes(path)
    compression, description, _, _ = parse_io_header(data, path)
    if compression in (0, 1, 2):
        ev, size, camera = decode_aedat4(data, stream_id=stream_id, source=path)
    else:
        ev, size, sid = _aedat_package(path, stream_id)
        camera = parse_streams(description).get(sid, {}).get("source")
    return Recording(ev, size, path, "aedat4", None, camera)
