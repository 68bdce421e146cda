"""Prophesee recordings: RAW files in EVT 2.0 / EVT 3.0 (``.raw``) and DAT files with CD events (``.dat``).

Both start with an ASCII header of lines that begin with ``%`` (ending at the first other byte, or
after a ``% end`` line). Geometry comes from the header: ``% geometry WxH``, ``% format
EVT3;height=H;width=W`` or ``% Width`` / ``% Height`` lines; RAW files from older Metavision versions
state none of these, and then the plugin name gives the sensor (``hal_plugin_gen3*``: the Gen3 VGA
sensor, 640 x 480; ``gen41`` / ``imx636``: 1280 x 720; ``genx320``: 320 x 320). With a known geometry
an event outside it is an error naming its byte offset.

After a DAT header come one byte of event type (0x00 2D events, 0x0C CD events) and one of event
size (8), then 8-byte records. The word layouts and the time rules are in ``evrt.kernels.decode``.
Polarity: ON is the CD_ON type (EVT 2.0), polarity bit 1 (EVT 3.0, DAT). Coordinates are the
sensor's own, rows from the top, as Metavision reports them.
"""
from __future__ import annotations

import re

import numpy as np

from ..errors import FormatError
from ..events import EVENT_DTYPE
from .recording import Recording, read_file_bytes

__all__ = ["read_prophesee", "read_evt", "read_dat", "decode_prophesee", "parse_header", "sniff"]

# (piece of the plugin name or sensor generation, (width, height))
_PLUGIN_GEOMETRY = (("genx320", (320, 320)), ("gen41", (1280, 720)), ("imx636", (1280, 720)),
                    ("gen4", (1280, 720)), ("gen31", (640, 480)), ("gen3", (640, 480)))
_DAT_TYPES = {0x00: "2D", 0x0C: "CD"}


def _err(path, msg):
    return FormatError(f"{path}: {msg}")


def parse_header(data, path="<bytes>") -> dict:
    """The ``%`` header as a dict: ``start`` (first data byte), ``fields`` (lower-case key -> value,
    first occurrence), ``kind`` ('evt2', 'evt3', 'evt2.1', 'dat' or None), ``size`` ((W, H) or None)
    and ``camera`` (str or None)."""
    fields, lines = {}, []
    off, n = 0, len(data)
    while off < n and data[off] == 0x25:  # '%'
        nl = data.find(b"\n", off)
        if nl < 0:
            raise _err(path, f"byte {off}: header line without an end of line before the end of the file")
        line = bytes(data[off + 1:nl]).decode("latin-1").strip()
        off = nl + 1
        lines.append(line)
        if line.lower() == "end":
            break
        parts = line.split(None, 1)
        if parts:
            fields.setdefault(parts[0].lower(), parts[1].strip() if len(parts) > 1 else "")
    kind = None
    fmt = fields.get("format", "")
    evt = fields.get("evt", "")
    if fmt:
        head = fmt.split(";")[0].strip().lower()
        kind = {"evt2": "evt2", "evt3": "evt3", "evt21": "evt2.1", "evt2.1": "evt2.1"}.get(head, head)
    elif evt:
        kind = {"2.0": "evt2", "2": "evt2", "3.0": "evt3", "3": "evt3", "2.1": "evt2.1"}.get(evt, "evt " + evt)
    elif lines and (lines[0].lower().startswith("data file containing") or "version" in fields):
        kind = "dat"
    size = None
    m = re.fullmatch(r"(\d+)\s*x\s*(\d+)", fields.get("geometry", ""))
    if m:
        size = (int(m.group(1)), int(m.group(2)))
    if size is None and fmt:
        kv = dict(p.split("=", 1) for p in fmt.split(";")[1:] if "=" in p)
        if kv.get("width", "").strip().isdigit() and kv.get("height", "").strip().isdigit():
            size = (int(kv["width"]), int(kv["height"]))
    if size is None and fields.get("width", "").isdigit() and fields.get("height", "").isdigit():
        size = (int(fields["width"]), int(fields["height"]))
    plugin = fields.get("plugin_name")
    gen = fields.get("sensor_generation", "")
    if size is None and (plugin or gen):
        probe = (plugin or "").lower() + " gen" + gen.replace(".", "")
        for piece, s in _PLUGIN_GEOMETRY:
            if piece in probe:
                size = s
                break
    maker = fields.get("integrator_name") or fields.get("camera_integrator_name")
    model = plugin or (f"system {fields['system_id']}" if fields.get("system_id") else None)
    camera = " ".join(v for v in (maker, model) if v)
    if camera and fields.get("serial_number"):
        camera += f" (serial {fields['serial_number']})"
    return {"start": off, "fields": fields, "kind": kind, "size": size, "camera": camera or None,
            "version": fields.get("version")}


def sniff(data) -> str | None:
    """'evt2', 'evt3', 'evt2.1', 'dat' or None for the first bytes of a file that starts with '%'."""
    try:
        return parse_header(data)["kind"]
    except FormatError:
        return None


def decode_prophesee(data, *, sensor_size=None, source="<bytes>"):
    """Decode a whole RAW (EVT 2.0 / 3.0) or DAT file's bytes: ``(events, sensor_size, camera, kind)``.
    ``sensor_size`` (W, H) overrides the header. Raises ``FormatError`` with the byte offset on a
    bad header, an unsupported encoding, a partial last word or an event outside the sensor."""
    from ..kernels.decode import count_evt3, decode_dat, decode_evt2, decode_evt3

    if not data or data[0] != 0x25:
        raise _err(source, "byte 0: not a Prophesee file (no '%' header)")
    h = parse_header(data, source)
    kind, start = h["kind"], h["start"]
    size = tuple(int(v) for v in sensor_size) if sensor_size is not None else h["size"]
    w, hgt = (size if size is not None else (0, 0))
    buf = np.frombuffer(data, np.uint8)
    if kind in ("evt2", "evt3"):
        word = 4 if kind == "evt2" else 2
        n, rest = divmod(len(buf) - start, word)
        if rest:
            raise _err(source, f"byte {start + n * word}: incomplete last {8 * word}-bit word ({rest} bytes)")
        cap = n if kind == "evt2" else count_evt3(buf, start)
        out = np.empty(cap, EVENT_DTYPE)
        dec = decode_evt2 if kind == "evt2" else decode_evt3
        k, _skipped, bad = dec(buf, start, w, hgt, out)
        what = "event"
    elif kind == "dat":
        if len(buf) - start < 2:
            raise _err(source, f"byte {start}: end of file before the DAT event type and size bytes")
        etype, esize = int(buf[start]), int(buf[start + 1])
        if etype not in _DAT_TYPES:
            raise _err(source, f"byte {start}: DAT event type 0x{etype:02x} is not a CD/2D event type "
                               f"(0x00, 0x0c)")
        if esize != 8:
            raise _err(source, f"byte {start + 1}: DAT event size {esize} (expected 8)")
        version = (h["version"] or "").strip()
        if version not in ("1", "2"):
            raise _err(source, f"byte 0: DAT header version {version or 'missing'!r} (supported: 1, 2)")
        start += 2
        n, rest = divmod(len(buf) - start, 8)
        if rest:
            raise _err(source, f"byte {start + n * 8}: incomplete last DAT record ({rest} of 8 bytes)")
        out = np.empty(n, EVENT_DTYPE)
        k, bad = decode_dat(buf, start, int(version), w, hgt, out)
        what = "DAT record"
    elif kind is None:
        raise _err(source, "byte 0: '%' header names no event encoding (no '% evt', '% format' or DAT "
                           "'% Version' line)")
    else:
        raise _err(source, f"byte 0: Prophesee encoding {kind!r} is not supported (EVT 2.0, EVT 3.0 and "
                           f"DAT are)")
    if bad >= 0:
        raise _err(source, f"byte {bad}: {what} outside the {w} x {hgt} sensor")
    return out[:k], size, h["camera"], kind


def read_prophesee(path, *, sensor_size=None) -> Recording:
    """Read a Prophesee RAW (EVT 2.0 / 3.0) or DAT file; ``format`` is 'evt2', 'evt3' or 'dat'."""
    path, data = read_file_bytes(path)
    ev, size, camera, kind = decode_prophesee(data, sensor_size=sensor_size, source=path)
    return Recording(ev, size, path, kind, None, camera)


read_evt = read_dat = read_prophesee
