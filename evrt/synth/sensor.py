"""DVS pixel model: render each frame (anti-aliased capsules over a shifted background) and turn the
change of per-pixel log intensity into events.

Model (in the spirit of v2e, simplified):
* ``L = log(illuminance * reflectance + eps)`` per pixel; each pixel remembers the level ``ref`` of its
  last event.
* ON / OFF thresholds per pixel: nominal ``theta`` with Gaussian mismatch (``sigma`` in log units,
  e.g. 0.03), clipped at 0.05.
* Between two render frames L is taken as linear in time; every crossing of ``ref ± k·theta`` is an
  event whose µs timestamp is interpolated inside the frame interval.
* Refractory period: an event closer than ``refractory_us`` to the pixel's previous event is dropped
  (the reference level still moves, as in a real pixel that was reset during that time).
* Background activity: Poisson noise per pixel (mostly ON, like leak events), plus a few hot pixels.

Only the pixels inside the boxes of primitives that moved since the previous frame are rendered,
except when the camera shakes or the light changes; that keeps ~1000 samples well under 10 minutes.
"""
from __future__ import annotations

import numba
import numpy as np

MAX_PER_PIXEL = 16  # events one pixel may emit in one frame interval (bounds the buffer check)


@numba.njit(cache=True)
def _shift_bg(bg, pad, dx, dy, out):
    H, W = out.shape
    for y in range(H):
        sy = y + pad + dy
        iy = int(np.floor(sy))
        fy = sy - iy
        for x in range(W):
            sx = x + pad + dx
            ix = int(np.floor(sx))
            fx = sx - ix
            top = bg[iy, ix] * (1 - fx) + bg[iy, ix + 1] * fx
            bot = bg[iy + 1, ix] * (1 - fx) + bg[iy + 1, ix + 1] * fx
            out[y, x] = top * (1 - fy) + bot * fy


@numba.njit(cache=True)
def _pixel(px, py, pr, bb, refl, tex, v):
    """Composite the capsules over background reflectance v at pixel centre (px, py). ``tex[p]`` =
    (amplitude, wavelength px): stripes across the segment (clothing), moving with it."""
    for p in range(pr.shape[0]):
        if px < bb[p, 0] or px > bb[p, 2] or py < bb[p, 1] or py > bb[p, 3]:
            continue
        ax, ay, bx, by, r = pr[p, 0], pr[p, 1], pr[p, 2], pr[p, 3], pr[p, 4]
        dx = bx - ax
        dy = by - ay
        l2 = dx * dx + dy * dy
        u = 0.0
        if l2 > 0:
            u = ((px - ax) * dx + (py - ay) * dy) / l2
            u = min(max(u, 0.0), 1.0)
        qx = ax + u * dx - px
        qy = ay + u * dy - py
        a = r + 0.5 - np.sqrt(qx * qx + qy * qy)  # area coverage of a pixel by a straight edge, approx.
        if a <= 0:
            continue
        if a > 1:
            a = 1.0
        c = refl[p]
        if tex[p, 0] != 0.0:
            c *= 1.0 + tex[p, 0] * np.sin(2 * np.pi * u * np.sqrt(l2) / tex[p, 1])
        v = v + (c - v) * a
    return v


@numba.njit(cache=True)
def _bbox(pr, bb, H, W):
    x0, y0, x1, y1 = W, H, -1, -1
    for p in range(pr.shape[0]):
        r = pr[p, 4] + 1.0
        bb[p, 0] = min(pr[p, 0], pr[p, 2]) - r
        bb[p, 1] = min(pr[p, 1], pr[p, 3]) - r
        bb[p, 2] = max(pr[p, 0], pr[p, 2]) + r
        bb[p, 3] = max(pr[p, 1], pr[p, 3]) + r
        x0 = min(x0, int(np.floor(bb[p, 0])))
        y0 = min(y0, int(np.floor(bb[p, 1])))
        x1 = max(x1, int(np.ceil(bb[p, 2])))
        y1 = max(y1, int(np.ceil(bb[p, 3])))
    return max(x0, 0), max(y0, 0), min(x1, W - 1), min(y1, H - 1)


@numba.njit(cache=True)
def _simulate(prims, refl, tex, bg, pad, shake, light, eps, dt_us, t0_us, th_on, th_off, refr_us,
              state_ref, state_L, last_t, bgcur, k_start, out_t, out_x, out_y, out_p, n):
    """Run frames k_start.. until done or the buffer might overflow; return (next frame, n events)."""
    F = prims.shape[0]
    H, W = th_on.shape
    bb = np.empty((prims.shape[1], 4))
    bbp = np.empty((prims.shape[1], 4))
    P = prims.shape[1]
    boxes = np.empty((P + 1, 4), np.int64)
    for k in range(k_start, F):
        full = k == 0 or shake[k, 0] != shake[k - 1, 0] or shake[k, 1] != shake[k - 1, 1] \
            or light[k] != light[k - 1]
        _bbox(prims[k], bb, H, W)
        nb = 0
        if full:
            boxes[0, 0], boxes[0, 1], boxes[0, 2], boxes[0, 3] = 0, 0, W - 1, H - 1
            nb = 1
        else:
            # only primitives that moved can change pixels: their boxes at k-1 and k (overlaps are
            # harmless: a pixel visited twice sees no further change the second time)
            _bbox(prims[k - 1], bbp, H, W)
            for p in range(P):
                moved = False
                for c in range(5):
                    if prims[k, p, c] != prims[k - 1, p, c]:
                        moved = True
                if moved:
                    boxes[nb, 0] = max(int(np.floor(min(bb[p, 0], bbp[p, 0]))), 0)
                    boxes[nb, 1] = max(int(np.floor(min(bb[p, 1], bbp[p, 1]))), 0)
                    boxes[nb, 2] = min(int(np.ceil(max(bb[p, 2], bbp[p, 2]))), W - 1)
                    boxes[nb, 3] = min(int(np.ceil(max(bb[p, 3], bbp[p, 3]))), H - 1)
                    nb += 1
        need = 0
        for i in range(nb):
            need += max(boxes[i, 2] - boxes[i, 0] + 1, 0) * max(boxes[i, 3] - boxes[i, 1] + 1, 0)
        if n + need * MAX_PER_PIXEL > out_t.shape[0]:
            return k, n
        if full:
            _shift_bg(bg, pad, shake[k, 0], shake[k, 1], bgcur)
        tprev = t0_us + (k - 1) * dt_us
        g = light[k]
        for i in range(nb):
            for y in range(boxes[i, 1], boxes[i, 3] + 1):
                for x in range(boxes[i, 0], boxes[i, 2] + 1):
                    L = np.log(g * _pixel(float(x), float(y), prims[k], bb, refl, tex, bgcur[y, x]) + eps)
                    if k == 0:
                        state_ref[y, x] = L
                        state_L[y, x] = L
                        continue
                    L0 = state_L[y, x]
                    state_L[y, x] = L
                    r = state_ref[y, x]
                    up = L - r >= th_on[y, x]
                    if not up and r - L < th_off[y, x]:
                        continue
                    th = th_on[y, x] if up else -th_off[y, x]
                    m = int((L - r) / th)
                    dL = L - L0
                    for j in range(1, min(m, MAX_PER_PIXEL) + 1):
                        frac = (r + j * th - L0) / dL if dL != 0 else 1.0
                        frac = min(max(frac, 0.0), 1.0)
                        te = tprev + int(frac * dt_us)
                        if te - last_t[y, x] >= refr_us:
                            out_t[n] = te
                            out_x[n] = x
                            out_y[n] = y
                            out_p[n] = up
                            n += 1
                            last_t[y, x] = te
                    state_ref[y, x] = r + m * th
    return F, n


def simulate(prims, refl, tex, bg, pad, shake, light, *, frame_rate, t0_us, rng, theta=0.25, sigma=0.03,
             refractory_us=300, eps=0.03, size=(128, 128)):
    """Events (t, x, y, on) of the rendered frame sequence; frame k is at ``t0_us + k*dt``.

    Returns unsorted-in-time arrays grouped by frame (sort before use)."""
    H, W = size
    th_on = np.maximum(theta + sigma * rng.standard_normal((H, W)), 0.05)
    th_off = np.maximum(theta + sigma * rng.standard_normal((H, W)), 0.05)
    dt_us = int(round(1e6 / frame_rate))
    ref = np.zeros((H, W))
    Ls = np.zeros((H, W))
    last = np.full((H, W), -(1 << 40), np.int64)
    bgcur = np.zeros((H, W))
    cap = 1 << 20
    out = [np.empty(cap, np.int64), np.empty(cap, np.int16), np.empty(cap, np.int16), np.empty(cap, np.bool_)]
    n, k = 0, 0
    F = len(prims)
    parts = []
    while k < F:
        k, n = _simulate(prims, refl, tex, bg, pad, shake, light, eps, dt_us, t0_us, th_on, th_off,
                         refractory_us, ref, Ls, last, bgcur, k, *out, n)
        if k < F:  # buffer nearly full: keep what we have, start a fresh buffer
            parts.append([a[:n].copy() for a in out])
            n = 0
    parts.append([a[:n].copy() for a in out])
    return [np.concatenate([p[i] for p in parts]) for i in range(4)]


def background_activity(rng, t_start, t_end, *, rate_hz, hot_pixels=0, hot_rate_hz=(5.0, 30.0),
                        on_fraction=0.7, size=(128, 128)):
    """Poisson noise events: ``rate_hz`` per pixel everywhere, plus ``hot_pixels`` fast pixels."""
    H, W = size
    dur = (t_end - t_start) * 1e-6
    n = rng.poisson(rate_hz * H * W * dur)
    t = rng.integers(t_start, t_end, n)
    x = rng.integers(0, W, n)
    y = rng.integers(0, H, n)
    p = rng.random(n) < on_fraction
    ts, xs, ys, ps = [t], [x], [y], [p]
    for _ in range(hot_pixels):
        m = rng.poisson(rng.uniform(*hot_rate_hz) * dur)
        ts.append(rng.integers(t_start, t_end, m))
        xs.append(np.full(m, rng.integers(0, W)))
        ys.append(np.full(m, rng.integers(0, H)))
        ps.append(rng.random(m) < 0.5)
    return (np.concatenate(ts).astype(np.int64), np.concatenate(xs).astype(np.int16),
            np.concatenate(ys).astype(np.int16), np.concatenate(ps))
