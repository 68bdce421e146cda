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

__all__ = ["decode_atis40", "decode_atis40_np", "decode_aer_be", "decode_aer_be_np",
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
