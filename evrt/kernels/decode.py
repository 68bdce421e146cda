"""Decoders for the fixed-width event-file formats, straight from the file's bytes into ``EVENT_DTYPE``.

Each numba kernel has a pure-NumPy twin (``*_np``) with the same arguments and result; the tests
hold them equal on real files and on random bytes. The kernels never allocate: the caller sizes
``out`` from the byte count (so the output can never be larger than the file allows) and the kernel
returns how many events it wrote. They read bytes one at a time and assemble words by hand, so the
payload needs no alignment and the byte order is explicit.

Timestamps are unsigned and widened to 64 bits; where a format's counter wraps, the kernel unwraps it
(rules in each docstring and in docs/FORMATS.md).
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = ["decode_atis40", "decode_atis40_np", "decode_aer_be", "decode_aer_be_np", "decode_evt2", "decode_evt2_np",
           "count_evt3", "decode_evt3", "decode_evt3_py", "decode_dat", "decode_dat_np",
           "ATIS_OVERFLOW_Y", "ATIS_OVERFLOW_US"]

# N-MNIST / N-Caltech101: a record with y == 240 is not an event but a timestamp-overflow marker; every
# later event gets 2**13 µs more per marker. That is the rule of the datasets' own reader (Orchard's
# Read_Ndataset.m) and of tonic's read_mnist_file, followed exactly, although the 23-bit counter
# itself would wrap at 2**23.
ATIS_OVERFLOW_Y = 240
ATIS_OVERFLOW_US = 1 << 13


@numba.njit(cache=True, nogil=True)
def decode_atis40(buf, out):
    """40-bit ATIS records (x u8, y u8, p:1 + t:23 big-endian in the last three bytes) from ``buf``
    (uint8, length a multiple of 5) into ``out``; overflow markers are dropped. Returns the count."""
    n = buf.shape[0] // 5
    k = 0
    extra = np.uint64(0)
    for i in range(n):
        if k == out.shape[0]:  # never write past ``out``, whatever the caller passed
            break
        b = 5 * i
        y = buf[b + 1]
        if y == ATIS_OVERFLOW_Y:
            extra += np.uint64(ATIS_OVERFLOW_US)
            continue
        b2 = np.uint64(buf[b + 2])
        e = out[k]
        e.t = (((b2 & np.uint64(0x7F)) << np.uint64(16)) | (np.uint64(buf[b + 3]) << np.uint64(8))
               | np.uint64(buf[b + 4])) + extra
        e.x = buf[b]
        e.y = y
        e.on = (b2 >> np.uint64(7)) != 0
        k += 1
    return k


def decode_atis40_np(buf, out):
    """NumPy twin of ``decode_atis40``."""
    r = np.asarray(buf, np.uint8)[: len(buf) // 5 * 5].reshape(-1, 5).astype(np.uint64)
    marker = r[:, 1] == ATIS_OVERFLOW_Y
    extra = np.cumsum(marker, dtype=np.uint64) * np.uint64(ATIS_OVERFLOW_US)
    t = ((r[:, 2] & 0x7F) << np.uint64(16)) | (r[:, 3] << np.uint64(8)) | r[:, 4]
    keep = ~marker
    k = int(keep.sum())
    out["t"][:k] = (t + extra)[keep]
    out["x"][:k] = r[keep, 0]
    out["y"][:k] = r[keep, 1]
    out["on"][:k] = (r[keep, 2] >> np.uint64(7)) != 0
    return k


@numba.njit(cache=True, nogil=True)
def decode_aer_be(buf, start, rec, xmask, xshift, ymask, yshift, pmask, on_if_set, xflip, yflip, swap,
                  keep_mask, keep_value, out):
    """jAER AER records (AEDAT 1.0/2.0): a big-endian address (2 bytes if ``rec`` is 6, 4 if 8) and a
    big-endian u32 µs timestamp, from byte ``start`` of ``buf`` (whole records only) into ``out``.

    Only records with ``addr & keep_mask == keep_value`` are kept. ``x = (addr & xmask) >> xshift``
    (then ``xflip - x`` when ``xflip >= 0``), same for y; ``swap`` exchanges x and y after that;
    ``on = bool(addr & pmask) == on_if_set``. The u32 timestamp is unwrapped: a step back of more
    than 2**31 is a wrap and adds 2**32 (smaller steps back are kept as they are: jAER resets).
    Returns ``(count written, -1)``, or ``(count, i)`` when record ``i`` flips to a negative
    coordinate (an address wider than the sensor: the caller reports it and its byte offset).
    """
    n = (buf.shape[0] - start) // rec
    k = 0
    wrap = np.uint64(0)
    prev = np.uint64(0)
    half = np.uint64(1) << np.uint64(31)
    for i in range(n):
        if k == out.shape[0]:  # never write past ``out``, whatever the caller passed
            break
        b = start + rec * i
        if rec == 8:
            a = ((np.uint32(buf[b]) << 24) | (np.uint32(buf[b + 1]) << 16) | (np.uint32(buf[b + 2]) << 8)
                 | np.uint32(buf[b + 3]))
            b += 4
        else:
            a = (np.uint32(buf[b]) << 8) | np.uint32(buf[b + 1])
            b += 2
        ts = ((np.uint64(buf[b]) << np.uint64(24)) | (np.uint64(buf[b + 1]) << np.uint64(16))
              | (np.uint64(buf[b + 2]) << np.uint64(8)) | np.uint64(buf[b + 3]))
        if i > 0 and ts < prev and prev - ts > half:
            wrap += np.uint64(1) << np.uint64(32)
        prev = ts
        if (a & keep_mask) != keep_value:
            continue
        x = np.int64((a & xmask) >> xshift)
        y = np.int64((a & ymask) >> yshift)
        if xflip >= 0:
            x = xflip - x
        if yflip >= 0:
            y = yflip - y
        if x < 0 or y < 0:
            return k, i
        if swap:
            x, y = y, x
        e = out[k]
        e.t = ts + wrap
        e.x = np.uint16(x)
        e.y = np.uint16(y)
        e.on = ((a & pmask) != 0) == on_if_set
        k += 1
    return k, -1


def decode_aer_be_np(buf, start, rec, xmask, xshift, ymask, yshift, pmask, on_if_set, xflip, yflip, swap,
                     keep_mask, keep_value, out):
    """NumPy twin of ``decode_aer_be``."""
    buf = np.asarray(buf, np.uint8)
    n = (len(buf) - start) // rec
    r = buf[start:start + rec * n].reshape(n, rec).astype(np.uint64)
    if rec == 8:
        a = (r[:, 0] << np.uint64(24)) | (r[:, 1] << np.uint64(16)) | (r[:, 2] << np.uint64(8)) | r[:, 3]
    else:
        a = (r[:, 0] << np.uint64(8)) | r[:, 1]
    c = rec - 4
    ts = (r[:, c] << np.uint64(24)) | (r[:, c + 1] << np.uint64(16)) | (r[:, c + 2] << np.uint64(8)) | r[:, c + 3]
    back = np.zeros(n, np.uint64)
    if n > 1:
        back[1:] = (ts[1:] < ts[:-1]) & ((ts[:-1] - ts[1:]) > np.uint64(1 << 31))
    t = ts + (np.cumsum(back, dtype=np.uint64) << np.uint64(32))
    keep = (a & np.uint64(keep_mask)) == np.uint64(keep_value)
    a = a[keep].astype(np.int64)
    x = (a & xmask) >> xshift
    y = (a & ymask) >> yshift
    if xflip >= 0:
        x = xflip - x
    if yflip >= 0:
        y = yflip - y
    neg = (x < 0) | (y < 0)
    k, bad = len(a), -1
    if neg.any():
        k = int(np.argmax(neg))
        bad = int(np.flatnonzero(keep)[k])
    if swap:
        x, y = y, x
    out["t"][:k] = t[keep][:k]
    out["x"][:k] = x[:k].astype(np.uint16)
    out["y"][:k] = y[:k].astype(np.uint16)
    out["on"][:k] = (((a & pmask) != 0) == bool(on_if_set))[:k]
    return k, bad


# ---------------------------------------------------------------------------------------- Prophesee
# EVT 2.0: 32-bit little-endian words, type in the top 4 bits.
EVT2_CD_OFF, EVT2_CD_ON, EVT2_TIME_HIGH = 0x0, 0x1, 0x8
# EVT 3.0: 16-bit little-endian words, type in the top 4 bits.
EVT3_ADDR_Y, EVT3_ADDR_X, EVT3_VECT_BASE_X, EVT3_VECT_12, EVT3_VECT_8 = 0x0, 0x2, 0x3, 0x4, 0x5
EVT3_TIME_LOW, EVT3_TIME_HIGH = 0x6, 0x8


@numba.njit(cache=True, nogil=True)
def decode_evt2(buf, start, width, height, out):
    """EVT 2.0 words from byte ``start`` (whole words only) into ``out``.

    CD_OFF/CD_ON (type 0/1): t low 6 bits = bits 22-27, x = bits 11-21, y = bits 0-10; TIME_HIGH
    (type 8): bits 0-27 are t >> 6. A TIME_HIGH more than 2**33 µs below the previous one is the
    34-bit counter wrapping (+2**34). CD events before the first TIME_HIGH have no time base and are
    skipped, as Prophesee's decoder does; every other type (triggers, padding) is skipped.
    ``width``/``height`` > 0 bound x and y. Returns ``(count, skipped, bad_byte)``: ``bad_byte`` is
    the offset of the first event outside the sensor (decoding stops there) or -1.
    """
    n = (buf.shape[0] - start) // 4
    k = 0
    skipped = 0
    have_base = False
    base = np.uint64(0)
    wrap = np.uint64(0)
    half = np.uint64(1) << np.uint64(33)
    for i in range(n):
        b = start + 4 * i
        w = (np.uint32(buf[b]) | (np.uint32(buf[b + 1]) << 8) | (np.uint32(buf[b + 2]) << 16)
             | (np.uint32(buf[b + 3]) << 24))
        kind = w >> 28
        if kind == EVT2_TIME_HIGH:
            th = np.uint64(w & 0x0FFFFFFF) << np.uint64(6)
            if have_base and th + half < base - wrap:
                wrap += np.uint64(1) << np.uint64(34)
            base = th + wrap
            have_base = True
        elif kind == EVT2_CD_OFF or kind == EVT2_CD_ON:
            if not have_base:
                skipped += 1
                continue
            x = (w >> 11) & 0x7FF
            y = w & 0x7FF
            if (width > 0 and x >= width) or (height > 0 and y >= height):
                return k, skipped, b
            if k == out.shape[0]:
                break
            e = out[k]
            e.t = base + np.uint64((w >> 22) & 0x3F)
            e.x = x
            e.y = y
            e.on = kind == EVT2_CD_ON
            k += 1
    return k, skipped, -1


def decode_evt2_np(buf, start, width, height, out):
    """NumPy twin of ``decode_evt2``."""
    buf = np.asarray(buf, np.uint8)
    n = (len(buf) - start) // 4
    w = buf[start:start + 4 * n].view("<u4") if start % 4 == 0 else \
        np.frombuffer(buf[start:start + 4 * n].tobytes(), "<u4")
    w = w.astype(np.uint64)
    kind = w >> np.uint64(28)
    is_th = kind == EVT2_TIME_HIGH
    th = (w & np.uint64(0x0FFFFFFF)) << np.uint64(6)
    # running time base: the last TIME_HIGH at or before each word, unwrapped
    idx = np.where(is_th, np.arange(n), -1)
    idx = np.maximum.accumulate(idx) if n else idx
    ths = th[is_th]
    wraps = np.zeros(len(ths), np.uint64)
    if len(ths) > 1:
        wraps[1:] = np.cumsum(ths[1:] + np.uint64(1 << 33) < ths[:-1], dtype=np.uint64) << np.uint64(34)
    # the wrap count of the previous base is in unwrapped terms in the kernel; in raw terms it is the
    # same comparison because the raw values carry no wraps
    base_all = np.zeros(n, np.uint64)
    order = np.cumsum(is_th) - 1
    have = idx >= 0
    base_all[have] = (ths + wraps)[order[have]]
    cd = (kind == EVT2_CD_OFF) | (kind == EVT2_CD_ON)
    skipped = int(np.count_nonzero(cd & ~have))
    sel = np.flatnonzero(cd & have)
    x = (w[sel] >> np.uint64(11)) & np.uint64(0x7FF)
    y = w[sel] & np.uint64(0x7FF)
    bad = np.zeros(len(sel), bool)
    if width > 0:
        bad |= x >= width
    if height > 0:
        bad |= y >= height
    k, bad_byte = len(sel), -1
    if bad.any():
        k = int(np.argmax(bad))
        bad_byte = start + 4 * int(sel[k])
    k = min(k, len(out))
    out["t"][:k] = base_all[sel[:k]] + ((w[sel[:k]] >> np.uint64(22)) & np.uint64(0x3F))
    out["x"][:k] = x[:k]
    out["y"][:k] = y[:k]
    out["on"][:k] = kind[sel[:k]] == EVT2_CD_ON
    return k, skipped, bad_byte


@numba.njit(cache=True, nogil=True)
def count_evt3(buf, start):
    """Upper bound of the events in an EVT 3.0 stream: one per ADDR_X word plus the set bits of the
    VECT_12 / VECT_8 masks (so the output is sized exactly, never from a worst case)."""
    n = (buf.shape[0] - start) // 2
    c = 0
    for i in range(n):
        b = start + 2 * i
        w = np.uint32(buf[b]) | (np.uint32(buf[b + 1]) << 8)
        kind = w >> 12
        if kind == EVT3_ADDR_X:
            c += 1
        elif kind == EVT3_VECT_12 or kind == EVT3_VECT_8:
            m = w & (0xFFF if kind == EVT3_VECT_12 else 0xFF)
            while m:
                m &= m - 1
                c += 1
    return c


@numba.njit(cache=True, nogil=True)
def decode_evt3(buf, start, width, height, out):
    """EVT 3.0 words from byte ``start`` into ``out``.

    State words: ADDR_Y (type 0, y = bits 0-10), VECT_BASE_X (3: base x = bits 0-10, polarity bit 11),
    TIME_LOW (6: t bits 0-11), TIME_HIGH (8: t bits 12-23; a new value resets the low bits). Event
    words: ADDR_X (2: one event at x = bits 0-10, polarity bit 11), VECT_12 / VECT_8 (4 / 5: one event
    at base + i for each set bit i of the 12 / 8 bit mask, then base += 12 / 8). The 24-bit time wraps:
    a TIME_HIGH more than 2048 below the previous one adds 2**24 µs. Events before the first
    TIME_HIGH are skipped (no time base), as are triggers and the other types. ``width``/``height``
    > 0 bound x and y. Returns ``(count, skipped, bad_byte)`` as ``decode_evt2``.
    """
    n = (buf.shape[0] - start) // 2
    k = 0
    skipped = 0
    have_base = False
    high = np.int64(-1)
    low = np.uint64(0)
    wrap = np.uint64(0)
    y = np.int64(0)
    base_x = np.int64(0)
    pol = False
    for i in range(n):
        b = start + 2 * i
        w = np.int64(buf[b]) | (np.int64(buf[b + 1]) << 8)
        kind = w >> 12
        if kind == EVT3_TIME_HIGH:
            h = np.int64(w & 0xFFF)
            if have_base and h < high - 2048:
                wrap += np.uint64(1) << np.uint64(24)
            if h != high:
                low = np.uint64(0)
            high = h
            have_base = True
        elif kind == EVT3_TIME_LOW:
            low = np.uint64(w & 0xFFF)
        elif kind == EVT3_ADDR_Y:
            y = w & 0x7FF
            if height > 0 and y >= height:
                return k, skipped, b
        elif kind == EVT3_VECT_BASE_X:
            base_x = w & 0x7FF
            pol = (w >> 11) & 1 == 1
        elif kind == EVT3_ADDR_X or kind == EVT3_VECT_12 or kind == EVT3_VECT_8:
            if kind == EVT3_ADDR_X:
                m = np.int64(1)
                x0 = w & 0x7FF
                p = (w >> 11) & 1 == 1
            else:
                m = w & (0xFFF if kind == EVT3_VECT_12 else 0xFF)
                x0 = base_x
                p = pol
                base_x += 12 if kind == EVT3_VECT_12 else 8
            if not have_base:
                while m:
                    m &= m - 1
                    skipped += 1
                continue
            t = wrap + (np.uint64(high) << np.uint64(12)) + low
            j = np.int64(0)
            while m:
                if m & 1:
                    x = x0 + j
                    if width > 0 and x >= width:
                        return k, skipped, b
                    if k == out.shape[0]:
                        return k, skipped, -1
                    e = out[k]
                    e.t = t
                    e.x = x
                    e.y = y
                    e.on = p
                    k += 1
                m >>= 1
                j += 1
    return k, skipped, -1


def decode_evt3_py(buf, start, width, height, out):
    """Plain-Python twin of ``decode_evt3`` (a stateful stream has no vector form; small inputs only)."""
    w16 = np.frombuffer(bytes(np.asarray(buf, np.uint8)[start:start + (len(buf) - start) // 2 * 2]), "<u2")
    k = skipped = 0
    high, low, wrap, y, base_x, pol, have = -1, 0, 0, 0, 0, False, False
    for i, w in enumerate(w16.tolist()):
        kind, b = w >> 12, start + 2 * i
        if kind == EVT3_TIME_HIGH:
            h = w & 0xFFF
            if have and h < high - 2048:
                wrap += 1 << 24
            if h != high:
                low = 0
            high, have = h, True
        elif kind == EVT3_TIME_LOW:
            low = w & 0xFFF
        elif kind == EVT3_ADDR_Y:
            y = w & 0x7FF
            if height > 0 and y >= height:
                return k, skipped, b
        elif kind == EVT3_VECT_BASE_X:
            base_x, pol = w & 0x7FF, bool((w >> 11) & 1)
        elif kind in (EVT3_ADDR_X, EVT3_VECT_12, EVT3_VECT_8):
            if kind == EVT3_ADDR_X:
                xs, p = [w & 0x7FF], bool((w >> 11) & 1)
            else:
                nbits = 12 if kind == EVT3_VECT_12 else 8
                xs, p = [base_x + j for j in range(nbits) if (w >> j) & 1], pol
                base_x += nbits
            if not have:
                skipped += len(xs)
                continue
            for x in xs:
                if width > 0 and x >= width:
                    return k, skipped, b
                if k == len(out):
                    return k, skipped, -1
                out[k] = (wrap + (high << 12) + low, x, y, p)
                k += 1
    return k, skipped, -1


@numba.njit(cache=True, nogil=True)
def decode_dat(buf, start, layout, width, height, out):
    """Prophesee DAT CD records (8 bytes: u32 µs timestamp, u32 data, little-endian) from byte
    ``start``. ``layout`` 2: x = data bits 0-13, y = bits 14-27, polarity bit 28; ``layout`` 1 (old
    ATIS files): x = bits 0-8, y = bits 9-16, polarity bit 17. A timestamp more than 2**31 below
    the previous one is the u32 wrapping (+2**32). Returns ``(count, bad_byte)``."""
    n = (buf.shape[0] - start) // 8
    k = 0
    wrap = np.uint64(0)
    prev = np.uint64(0)
    half = np.uint64(1) << np.uint64(31)
    for i in range(n):
        if k == out.shape[0]:
            break
        b = start + 8 * i
        ts = (np.uint64(buf[b]) | (np.uint64(buf[b + 1]) << np.uint64(8)) | (np.uint64(buf[b + 2]) << np.uint64(16))
              | (np.uint64(buf[b + 3]) << np.uint64(24)))
        d = (np.uint32(buf[b + 4]) | (np.uint32(buf[b + 5]) << 8) | (np.uint32(buf[b + 6]) << 16)
             | (np.uint32(buf[b + 7]) << 24))
        if i > 0 and ts < prev and prev - ts > half:
            wrap += np.uint64(1) << np.uint64(32)
        prev = ts
        if layout == 2:
            x, y, p = d & 0x3FFF, (d >> 14) & 0x3FFF, (d >> 28) & 1
        else:
            x, y, p = d & 0x1FF, (d >> 9) & 0xFF, (d >> 17) & 1
        if (width > 0 and x >= width) or (height > 0 and y >= height):
            return k, b
        e = out[k]
        e.t = ts + wrap
        e.x = x
        e.y = y
        e.on = p == 1
        k += 1
    return k, -1


def decode_dat_np(buf, start, layout, width, height, out):
    """NumPy twin of ``decode_dat``."""
    buf = np.asarray(buf, np.uint8)
    n = (len(buf) - start) // 8
    r = np.frombuffer(buf[start:start + 8 * n].tobytes(), [("t", "<u4"), ("d", "<u4")])
    ts = r["t"].astype(np.uint64)
    d = r["d"]
    back = np.zeros(n, np.uint64)
    if n > 1:
        back[1:] = (ts[1:] < ts[:-1]) & ((ts[:-1] - ts[1:]) > np.uint64(1 << 31))
    t = ts + (np.cumsum(back, dtype=np.uint64) << np.uint64(32))
    if layout == 2:
        x, y, p = d & 0x3FFF, (d >> 14) & 0x3FFF, (d >> 28) & 1
    else:
        x, y, p = d & 0x1FF, (d >> 9) & 0xFF, (d >> 17) & 1
    bad = np.zeros(n, bool)
    if width > 0:
        bad |= x >= width
    if height > 0:
        bad |= y >= height
    k, bad_byte = n, -1
    if bad.any():
        k = int(np.argmax(bad))
        bad_byte = start + 8 * k
    k = min(k, len(out))
    out["t"][:k], out["x"][:k], out["y"][:k], out["on"][:k] = t[:k], x[:k], y[:k], p[:k] == 1
    return k, bad_byte
