"""Static scene around the subject: background reflectance texture, lighting level, camera shake."""
from __future__ import annotations

import numpy as np

PAD = 6  # background margin (px) so camera shake never samples outside the texture

# lighting conditions of the real recordings (file name suffixes) -> relative illuminance
LIGHTINGS = {"fluorescent": 1.0, "fluorescent_led": 1.15, "lab": 0.8, "led": 1.3, "natural": 0.55}


def background(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """Reflectance texture (size + 2*PAD)^2 in [0.08, 0.95]: smooth blotches plus a few hard-edged
    rectangles (furniture, door frames) whose edges fire under camera shake."""
    n = size + 2 * PAD
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.fftfreq(n)[None, :]
    tex = np.zeros((n, n))
    for scale, amp in ((0.03, 0.18), (0.12, 0.06)):
        noise = rng.standard_normal((n, n))
        filt = np.exp(-(fx ** 2 + fy ** 2) / (2 * scale ** 2))
        field = np.real(np.fft.ifft2(np.fft.fft2(noise) * filt))
        tex += amp * field / (field.std() + 1e-12)
    tex += rng.uniform(0.3, 0.6)
    yy, xx = np.mgrid[0:n, 0:n]
    for _ in range(rng.integers(1, 5)):
        x0, y0 = rng.uniform(-20, n, 2)
        w, h = rng.uniform(8, 50, 2)
        inside = (xx >= x0) & (xx < x0 + w) & (yy >= y0) & (yy < y0 + h)
        tex[inside] = tex[inside] * 0.5 + rng.uniform(0.1, 0.9) * 0.5
    return np.clip(tex, 0.08, 0.95)


def shake_path(rng: np.random.Generator, n_frames: int, frame_rate: float, px: float,
               update_hz: float = 125.0) -> np.ndarray:
    """Camera shake offsets (n_frames, 2) in px: a slow, smoothed random walk of std ~``px``, held
    constant between updates (``update_hz``) so the full-frame background is resampled rarely."""
    if px <= 0:
        return np.zeros((n_frames, 2))
    hold = max(1, int(round(frame_rate / update_hz)))
    m = n_frames // hold + 2
    steps = rng.standard_normal((m, 2))
    a = np.exp(-1.0 / (0.4 * update_hz))  # ~0.4 s correlation time
    path = np.zeros((m, 2))
    for i in range(1, m):  # AR(1): stays bounded, unlike a plain random walk
        path[i] = a * path[i - 1] + np.sqrt(1 - a * a) * steps[i]
    path *= px
    np.clip(path, -(PAD - 2), PAD - 2, out=path)
    return np.repeat(path, hold, axis=0)[:n_frames]
