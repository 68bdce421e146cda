"""AEDAT 4 writing: a recording iniVation's DV, dv-processing and the ``aedat`` package open.

File layout (all little-endian): the line ``#!AER-DAT4.0\\r\\n``; a size-prefixed FlatBuffer
``IOHeader`` (identifier ``IOHE``: compression, data-table position, and the XML description of the
streams); then packets, each ``i32 stream id, i32 byte size`` and a size-prefixed FlatBuffer
``EventPacket`` (identifier ``EVTS``) whose ``elements`` vector holds 16-byte ``Event`` structs
(``i64 t, i16 x, i16 y, bool on``, 3 pad bytes). One event stream (id 0), no compression, and no
data table (position -1), so a recording that is cut off is still readable up to its last packet.

The FlatBuffers are laid out by hand, front to back, with every offset pointing forward and every
field aligned from the start of the buffer, which is what the readers verify.
"""
from __future__ import annotations

import os
import struct
from xml.sax.saxutils import escape

import numpy as np

from ..events import as_events

__all__ = ["AEDAT4Writer", "write_aedat4", "MAGIC", "PACKET_EVENTS"]

MAGIC = b"#!AER-DAT4.0\r\n"
PACKET_EVENTS = 4096  # events per packet (DV itself writes packets of a few thousand)
_EVENT = np.dtype({"names": ["t", "x", "y", "on"], "formats": ["<i8", "<i2", "<i2", "u1"],
                   "offsets": [0, 8, 10, 12], "itemsize": 16})
_STREAM = 0


def _description(sensor_size, source) -> bytes:
    w, h = sensor_size
    path = f"/mainloop/Recorder/outInfo/{_STREAM}/"
    return (f'<dv version="2.0">\n'
            f'    <node name="outInfo" path="/mainloop/Recorder/outInfo/">\n'
            f'        <node name="{_STREAM}" path="{path}">\n'
            f'            <attr key="compression" type="string">NONE</attr>\n'
            f'            <attr key="originalModuleName" type="string">evrt</attr>\n'
            f'            <attr key="originalOutputName" type="string">events</attr>\n'
            f'            <attr key="typeDescription" type="string">Array of events (polarity ON/OFF).</attr>\n'
            f'            <attr key="typeIdentifier" type="string">EVTS</attr>\n'
            f'            <node name="info" path="{path}info/">\n'
            f'                <attr key="sizeX" type="int">{int(w)}</attr>\n'
            f'                <attr key="sizeY" type="int">{int(h)}</attr>\n'
            f'                <attr key="source" type="string">{escape(str(source))}</attr>\n'
            f'                <attr key="tsOffset" type="long">0</attr>\n'
            f'            </node>\n'
            f'        </node>\n'
            f'    </node>\n'
            f'</dv>\n').encode("utf-8")


def _io_header(description: bytes) -> bytes:
    """Size-prefixed IOHeader: vtable at 12, table at 24 (8-aligned for the i64), string after it."""
    table, string = 24, 44
    vtable = struct.pack("<5H", 10, 20, 4, 8, 16)  # sizes, then field offsets: compression, position, description
    head = struct.pack("<II4s", 0, table - 4, b"IOHE") + vtable + b"\0\0"
    body = struct.pack("<iiqI", table - 12, 0, -1, string - (table + 16))
    s = struct.pack("<I", len(description)) + description + b"\0"
    s += b"\0" * (-len(s) % 4)
    buf = bytearray(head + body + s)
    struct.pack_into("<I", buf, 0, len(buf) - 4)
    return bytes(buf)


def _event_packet(rec: np.ndarray) -> bytes:
    """Size-prefixed EventPacket of ``_EVENT`` structs: vtable at 12, table at 20, vector length at
    28, structs from 32."""
    n = len(rec)
    head = struct.pack("<II4s3H2xiII", 28 + 16 * n, 20 - 4, b"EVTS", 6, 8, 4, 20 - 12, 28 - 24, n)
    return head + rec.tobytes()


class AEDAT4Writer:
    """Stream events into an AEDAT 4 file: ``write(events)`` as often as needed (timestamps must not
    go backwards, within or across calls), then ``close()`` (or use it as a context manager).

    ``sensor_size`` is (width, height); events outside it are refused. An existing ``path`` is
    refused unless ``overwrite=True`` (so a recording never replaces its own input).
    """

    def __init__(self, path, sensor_size, *, source: str = "evrt", packet_events: int = PACKET_EVENTS,
                 overwrite: bool = False):
        self.path = os.fspath(path)
        w, h = (int(v) for v in sensor_size)
        if not (0 < w <= 0x7FFF and 0 < h <= 0x7FFF):
            raise ValueError(f"sensor_size must be two sizes in 1..32767, got {sensor_size!r}")
        if packet_events < 1:
            raise ValueError("packet_events must be >= 1")
        self.sensor_size, self.packet_events = (w, h), int(packet_events)
        self.events_written = 0
        self._last_t = 0
        self._f = open(self.path, "wb" if overwrite else "xb")
        self._f.write(MAGIC + _io_header(_description((w, h), source)))

    def write(self, events) -> None:
        ev = as_events(events)
        if self._f is None:
            raise ValueError(f"{self.path}: writer is closed")
        if not len(ev):
            return
        t = ev["t"]
        if int(t[0]) < self._last_t or (len(t) > 1 and np.any(t[1:] < t[:-1])):
            raise ValueError(f"{self.path}: timestamps must not go backwards (AEDAT 4 packets are time-ordered)")
        if int(t[-1]) > np.iinfo(np.int64).max:
            raise ValueError(f"{self.path}: timestamp {int(t[-1])} does not fit AEDAT 4's signed 64-bit field")
        w, h = self.sensor_size
        if int(ev["x"].max()) >= w or int(ev["y"].max()) >= h:
            raise ValueError(f"{self.path}: events reach x={int(ev['x'].max())}, y={int(ev['y'].max())}, "
                             f"outside the {w} x {h} sensor")
        rec = np.zeros(len(ev), _EVENT)  # the 16-byte file layout, converted once for all packets
        rec["t"], rec["x"], rec["y"], rec["on"] = ev["t"], ev["x"], ev["y"], ev["on"]
        for a in range(0, len(ev), self.packet_events):
            blob = _event_packet(rec[a:a + self.packet_events])
            self._f.write(struct.pack("<iI", _STREAM, len(blob)) + blob)
        self.events_written += len(ev)
        self._last_t = int(t[-1])

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_aedat4(path, events, sensor_size, *, source: str = "evrt", packet_events: int = PACKET_EVENTS,
                 overwrite: bool = False) -> int:
    """Write ``events`` (``EVENT_DTYPE`` or anything ``as_events`` takes; time-ordered) as an AEDAT 4
    file with one event stream of ``sensor_size`` (width, height). Returns the number of bytes."""
    with AEDAT4Writer(path, sensor_size, source=source, packet_events=packet_events, overwrite=overwrite) as w:
        w.write(events)
    return os.path.getsize(os.fspath(path))
