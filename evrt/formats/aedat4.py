"""AEDAT 4 (iniVation DV) recordings, read through the ``aedat`` package (Rust decoder).

``aedat.Decoder(path)`` exposes ``id_to_stream()`` (stream id -> ``{'type', 'width', 'height'}``) and
iterates packets (``{'stream_id', 'events'|'frame'|'imus'|'triggers'}``); event packets are already
``t:<u8, x:<u2, y:<u2, on:?`` arrays, our ``EVENT_DTYPE``, so they are concatenated without conversion.
The camera model is the stream's ``source`` attribute in the file's XML description (e.g.
``DVXplorer_DXB00010``). Writing: ``evrt.formats.aedat4_writer``.
"""
from __future__ import annotations

import os
import re

import numpy as np

from ..errors import FormatError
from ..events import EVENT_DTYPE
from .recording import Recording

__all__ = ["read_aedat4", "MAGIC"]

MAGIC = b"#!AER-DAT4.0"


def _decoder(path):
    try:
        import aedat
    except ImportError:
        raise FormatError(f"{path}: reading AEDAT 4 needs the 'aedat' package (pip install aedat)") from None
    try:
        return aedat.Decoder(path)
    except Exception as e:  # the Rust side raises plain exceptions with a message
        raise FormatError(f"{path}: not a readable AEDAT 4 file ({e})") from None


def _stream_sources(path) -> dict:
    """Stream id -> ``source`` attribute, from the XML description near the start of the file
    (a regular expression, not an XML parser: the text comes from an untrusted file)."""
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    a, b = head.find(b"<dv"), head.find(b"</dv>")
    if a < 0 or b < a:
        return {}
    text = head[a:b].decode("utf-8", "replace")
    starts = [(m.start(), int(m.group(1))) for m in re.finditer(r'<node name="(\d+)" path="[^"]*outInfo/\1/"', text)]
    out = {}
    for i, (pos, sid) in enumerate(starts):
        seg = text[pos:starts[i + 1][0] if i + 1 < len(starts) else len(text)]
        m = re.search(r'<attr key="source" type="string">([^<]{1,200})</attr>', seg)
        if m:
            out[sid] = m.group(1).strip()
    return out


def read_aedat4(path, stream_id: int | None = None) -> Recording:
    """Events of one event stream (the lowest-numbered one unless ``stream_id`` is given); the sensor
    size is that stream's width and height. A file without event streams raises ``FormatError``."""
    path = os.fspath(path)
    dec = _decoder(path)
    streams = dec.id_to_stream()
    event_ids = sorted(i for i, s in streams.items() if s.get("type") == "events")
    if not event_ids:
        kinds = ", ".join(f"{i}: {s.get('type')}" for i, s in sorted(streams.items())) or "none"
        raise FormatError(f"{path}: no event stream in this AEDAT 4 file (streams: {kinds})")
    if stream_id is None:
        stream_id = event_ids[0]
    elif stream_id not in event_ids:
        raise FormatError(f"{path}: stream {stream_id} is not an event stream (event streams: {event_ids})")
    parts = []
    try:
        for packet in dec:
            if packet["stream_id"] == stream_id and "events" in packet:
                parts.append(packet["events"])
    except Exception as e:
        raise FormatError(f"{path}: corrupt AEDAT 4 packet after {sum(map(len, parts))} events ({e})") from None
    ev = np.concatenate(parts) if parts else np.zeros(0, EVENT_DTYPE)
    if ev.dtype != EVENT_DTYPE:  # future aedat versions may widen fields; keep our layout
        ev = ev.astype(EVENT_DTYPE)
    s = streams[stream_id]
    size = (int(s["width"]), int(s["height"])) if s.get("width") and s.get("height") else None
    return Recording(ev, size, path, "aedat4", None, _stream_sources(path).get(stream_id))
