"""AEDAT 2.0 (and 1.0): the files jAER writes (``#!AER-DAT2.0``; CIFAR10-DVS, older DVS128 and DAVIS data).

Layout: header lines that start with ``#`` (the first is ``#!AER-DATx.y``; jAER adds ``# AEChip:
<java class>``), then records of a big-endian address and a big-endian u32 µs timestamp: 8 bytes in
2.0 (i32 address), 6 in 1.0 (i16 address). The header ends at the first line that does not start
with ``#``, as in jAER's own reader.

Address layouts (selected from the AEChip line; without one, from the addresses: any bit of 16-30
set means the DAVIS layout, otherwise DVS128):

* DVS128: x = bits 1-7, y = bits 8-14, bit 0 = polarity with 0 meaning ON (jAER's ``fliptype``);
  bit 15 (sync) or bit 31 set marks a special event, skipped as jAER does.
* DAVIS (240, 346, 640, ...): y = bits 22-30, x = bits 12-21, bit 11 = polarity (1 = ON); bit 31 set
  marks APS/IMU samples and bit 10 external-input (trigger) events: both are skipped.

Orientation (``orientation=``), in the output's x/y:

* ``"image"`` (default): what jAER displays, with rows counted from the top as in evrt's other
  formats: ``x = W-1-x_raw`` (jAER flips x), ``y = H-1-y_raw`` (jAER draws y_raw = 0 at the bottom).
  Same as tonic's ``read_davis_346``.
* ``"jaer"``: jAER's own event coordinates: ``x = W-1-x_raw``, ``y = y_raw`` (origin bottom-left).
* ``"spikingjelly"`` (DVS128 only): exactly what spikingjelly's ``CIFAR10DVS.load_origin_data``
  returns (``x = 127-y_raw``, ``y = 127-x_raw``: the image transposed; every record kept), which is
  what Spikformer's CIFAR10-DVS checkpoints were trained on.
* ``"raw"``: the address bits as they are, ``on`` = the polarity bit set.

Polarity is jAER's in every orientation but ``"raw"``. See docs/FORMATS.md.
"""
from __future__ import annotations

import re

import numpy as np

from ..errors import FormatError
from ..events import EVENT_DTYPE
from .recording import Recording, read_file_bytes

__all__ = ["read_aedat2", "decode_aedat2", "parse_header", "MAGIC", "ORIENTATIONS", "LAYOUTS"]

MAGIC = b"#!AER-DAT"
ORIENTATIONS = ("image", "jaer", "spikingjelly", "raw")
LAYOUTS = ("dvs128", "davis")

# (lower-case piece of the AEChip class name, layout, (width, height)); first match wins
_CHIPS = (
    ("dvs128", "dvs128", (128, 128)), ("tmpdiff128", "dvs128", (128, 128)),
    ("davis346", "davis", (346, 260)), ("davis240", "davis", (240, 180)),
    ("davis640", "davis", (640, 480)), ("davisrgbw640", "davis", (640, 480)),
    ("davis128", "davis", (128, 128)), ("davis208", "davis", (208, 192)),
    ("davis", "davis", None),
)
# bit fields: xmask, xshift, ymask, yshift, pmask, ON when the polarity bit is set, keep_mask, keep_value
_FIELDS = {
    "dvs128": (0xFE, 1, 0x7F00, 8, 0x1, False, 0x80008000, 0),
    "davis": (0x003FF000, 12, 0x7FC00000, 22, 0x800, True, 0x80000400, 0),
}


def _err(path, msg):
    return FormatError(f"{path}: {msg}")


def parse_header(buf, path="<bytes>"):
    """``(version, data_start, chip)``: the AEDAT version string ('2.0'), the byte offset of the first
    record and the AEChip class name (None when the header has none)."""
    if not bytes(buf[:9]) == MAGIC:
        raise _err(path, f"byte 0: not an AEDAT file (expected {MAGIC.decode()!r}, found {bytes(buf[:12])!r})")
    first = bytes(buf[:64]).split(b"\n")[0].strip()
    version = first[9:].decode("ascii", "replace")
    chip = None
    off, n = 0, len(buf)
    while off < n and buf[off] == 0x23:  # '#'
        nl = buf.find(b"\n", off)
        if nl < 0:
            raise _err(path, f"byte {off}: header line without an end of line before the end of the file")
        line = bytes(buf[off:nl]).decode("latin-1").strip()
        m = re.match(r"#\s*AEChip:\s*(\S+)", line)
        if m and chip is None:
            chip = m.group(1)
        off = nl + 1
    return version, off, chip


def _chip_geometry(chip):
    """(layout, (W, H) or None, model name) for an AEChip class name; (None, None, None) if unknown."""
    if not chip:
        return None, None, None
    name = chip.rsplit(".", 1)[-1]
    low = name.lower()
    for piece, layout, size in _CHIPS:
        if piece in low:
            return layout, size, name
    return None, None, name


def _params(layout, size, orientation, path):
    xmask, xshift, ymask, yshift, pmask, on_if_set, kmask, kval = _FIELDS[layout]
    xflip = yflip = -1
    swap = False
    if orientation == "spikingjelly" and layout != "dvs128":
        raise _err(path, "byte 0: the 'spikingjelly' orientation is its CIFAR10-DVS (DVS128) reader; this file "
                         "has the DAVIS layout: use 'image', 'jaer' or 'raw'")
    if orientation == "spikingjelly":
        kmask = kval = 0  # its loader keeps every record
    if orientation == "raw":
        on_if_set = True
    else:
        if size is None:
            raise _err(path, f"byte 0: the header names no chip of known size, so the '{orientation}' "
                             f"orientation (which mirrors x) cannot be applied; pass sensor_size=(W, H) (v2e "
                             f"writes 346 x 260 unless told otherwise) or orientation='raw'")
        xflip = size[0] - 1
        if orientation == "image":
            yflip = size[1] - 1
        elif orientation == "spikingjelly":
            yflip, swap = size[1] - 1, True
    return (xmask, xshift, ymask, yshift, pmask, on_if_set, xflip, yflip, swap, kmask, kval)


def decode_aedat2(data, *, layout=None, sensor_size=None, orientation="image", source="<bytes>"):
    """Decode a whole AEDAT 1.0/2.0 file's bytes: ``(events, sensor_size, camera)``.

    ``layout`` ('dvs128' or 'davis') and ``sensor_size`` (W, H) override what the header says.
    Raises ``FormatError`` (with the byte offset) on a bad header, an unknown version, an incomplete
    last record, or an address outside the sensor.
    """
    from ..kernels.decode import decode_aer_be

    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {orientation!r}")
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    buf = np.frombuffer(data, np.uint8)
    version, start, chip = parse_header(data, source)
    if version.startswith("2."):
        rec = 8
    elif version.startswith("1."):
        rec = 6
    else:
        raise _err(source, f"byte 0: AEDAT {version!r} is not a jAER AEDAT 1.x/2.x file")
    n, rest = divmod(len(buf) - start, rec)
    if rest:
        raise _err(source, f"byte {start + n * rec}: incomplete last event record ({rest} of {rec} bytes)")
    chip_layout, chip_size, camera = _chip_geometry(chip)
    if layout is None:
        layout = chip_layout
    if layout is None:
        layout = _guess_layout(buf, start, rec, n)
    size = tuple(sensor_size) if sensor_size is not None else chip_size
    if size is None and layout == "dvs128":
        size = (128, 128)  # 7-bit x and y: the layout is the geometry
    if rec == 6 and layout == "davis":
        raise _err(source, "byte 0: AEDAT 1.0 has 16-bit addresses, too narrow for the DAVIS layout")
    out = np.empty(n, EVENT_DTYPE)
    k, bad = decode_aer_be(buf, start, rec, *_params(layout, size, orientation, source), out)
    if bad >= 0:
        b = start + bad * rec
        raise _err(source, f"byte {b}: address 0x{int.from_bytes(bytes(buf[b:b + rec - 4]), 'big'):08x} lies "
                           f"outside the {size[0]} x {size[1]} sensor ({camera or layout})")
    if orientation == "spikingjelly" and size is not None and layout == "dvs128":
        size = (size[1], size[0])
    return out[:k], size, camera


def _guess_layout(buf, start, rec, n):
    """No AEChip line: 'davis' when some address has a bit of 16-30 set (DAVIS y and x live there; DVS128
    addresses use bits 0-15 and 31 only), else 'dvs128'."""
    if rec == 6 or not n:
        return "dvs128"
    r = buf[start:start + rec * n].reshape(n, rec)
    return "davis" if bool(((r[:, 0] & 0x7F) | r[:, 1]).any()) else "dvs128"


def read_aedat2(path, *, layout=None, sensor_size=None, orientation="image") -> Recording:
    """Read a jAER AEDAT 1.0/2.0 file (see the module docstring for layouts and orientations)."""
    path, data = read_file_bytes(path)
    ev, size, camera = decode_aedat2(data, layout=layout, sensor_size=sensor_size, orientation=orientation,
                                     source=path)
    return Recording(ev, size, path, "aedat2", None, camera)
