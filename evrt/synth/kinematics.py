"""Upper-body kinematics for the 11 DVS128 Gesture classes.

Coordinates are image pixels, x to the right, y *down* (row index), z towards the camera; the body is
projected orthographically onto (x, y). The subject faces the camera, so the subject's RIGHT arm is on
the image's LEFT (smaller x). "Clockwise" means clockwise as drawn in the image (y down).

Each gesture is a pair of 3-D wrist trajectories (one per arm); elbows follow from two-link inverse
kinematics with a fixed pole direction (elbows out, down and back), which keeps the elbow continuous
through full arm circles. All classes share the same body; they differ only in how the arms move.
Left/right classes differ by position, clockwise/counter-clockwise classes only by temporal order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_PRIMS = 8  # torso, head, (upper arm, forearm, hand) x 2


@dataclass
class Subject:
    """Per-user body: shoulder half-width ``sw`` (px) sets the scale of everything else."""
    sw: float
    cx: float            # shoulder-line centre
    cy: float
    upper: float         # segment lengths in units of sw
    fore: float
    speed: float         # personal tempo factor
    shirt: float         # reflectances in (0, 1)
    skin: float
    sleeves: bool        # long sleeves: forearms have the shirt's reflectance
    stripes: float       # shirt stripe contrast (0 = plain) and wavelength (px)
    stripe_px: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Subject":
        return cls(sw=rng.uniform(14.5, 19.0), cx=64 + rng.uniform(-8, 8), cy=rng.uniform(48, 58),
                   upper=rng.uniform(1.15, 1.3), fore=rng.uniform(1.05, 1.2),
                   speed=rng.uniform(0.8, 1.25), shirt=rng.choice([rng.uniform(0.06, 0.2), rng.uniform(0.7, 0.95)]),
                   skin=rng.uniform(0.35, 0.75), sleeves=bool(rng.random() < 0.5),
                   stripes=rng.choice([0.0, rng.uniform(0.15, 0.4)], p=[0.3, 0.7]),
                   stripe_px=rng.uniform(3.0, 7.0))

    def reflectances(self) -> np.ndarray:
        arm = [self.shirt, self.shirt if self.sleeves else self.skin, self.skin]
        return np.array([self.shirt, self.skin] + arm + arm, np.float64)

    def textures(self) -> np.ndarray:
        """(8, 2) stripe (amplitude, wavelength) per primitive: shirt parts only."""
        s = (self.stripes, self.stripe_px)
        arm = [s, s if self.sleeves else (0.0, 1.0), (0.0, 1.0)]
        return np.array([s, (0.0, 1.0)] + arm + arm, np.float64)


def _smoothstep(a):
    a = np.clip(a, 0.0, 1.0)
    return a * a * (3 - 2 * a)


# base frequency (Hz) of each gesture, before the subject's tempo and per-sample jitter. Arm circles
# (3-6) stay below ~1.2 Hz even for the fastest subject: a 6 s sample framed into T = 16 frames gives
# ~0.375 s per frame, and above 0.5 turns per frame clockwise and counter-clockwise would alias.
BASE_FREQ = (2.0, 2.5, 2.5, 0.8, 0.8, 0.8, 0.8, 1.8, 2.4, 3.2, 0.0)


def gesture_targets(g: int, t: np.ndarray, subj: Subject, rng: np.random.Generator):
    """Wrist targets (F, 3) of the right and left arm for gesture ``g`` (0..10) at times ``t`` (s).

    ``rng`` draws this instance's tempo, amplitude, phase and (for 'other') its random motion.
    """
    sw = subj.sw
    f = BASE_FREQ[g] * subj.speed * rng.uniform(0.85, 1.15)
    amp = rng.uniform(0.8, 1.15)
    ph = rng.uniform(0, 2 * np.pi)
    w = 2 * np.pi * f * t
    z0 = np.zeros_like(t)

    def rel(s, u, v, z):  # outward / down / forward offsets (units of sw) from the shoulder of side s
        return np.stack([subj.cx + s * sw + s * u * sw + z0, subj.cy + v * sw + z0, z * sw + z0], 1)

    rest = {s: rel(s, 0.35, 2.15, 0.35) for s in (-1, 1)}
    R, L = rest[-1].copy(), rest[1].copy()
    if g == 0:    # hand clap: both hands meet at the midline in front of the chest
        u = -0.8 + amp * 0.9 * (1 - np.cos(w + ph)) / 2
        R, L = rel(-1, u, 1.35, 1.2), rel(1, u, 1.35, 1.2)
    elif g in (1, 2):  # hand wave: forearm up, swinging side to side
        s = -1 if g == 1 else 1
        W = rel(s, 1.1 + 0.7 * amp * np.sin(w + ph), -1.05 + 0.15 * np.abs(np.sin(w + ph)), 0.25)
        if s < 0:
            R = W
        else:
            L = W
    elif 3 <= g <= 6:  # big arm circle; direction as drawn in the image
        s = -1 if g in (3, 4) else 1
        sign = 1.0 if g in (3, 5) else -1.0      # +psi is clockwise on screen (y down)
        psi = ph + sign * w
        c = rel(s, 0.6, -0.3, 0.3)
        r = 1.35 * amp * sw
        W = c + np.stack([r * np.cos(psi), r * np.sin(psi), z0], 1)
        if s < 0:
            R = W
        else:
            L = W
    elif g == 7:  # arm roll: forearms circle around each other in front of the chest
        d = rng.choice([-1.0, 1.0])
        psi = ph + d * w
        r = 0.38 * amp * sw
        c = np.stack([subj.cx + z0, subj.cy + 1.25 * sw + z0, 1.3 * sw + z0], 1)
        for s, psi_s in ((-1, psi), (1, psi + np.pi)):
            W = c + np.stack([s * 0.25 * sw + 0.25 * r * np.cos(psi_s), r * np.sin(psi_s), r * np.cos(psi_s)], 1)
            if s < 0:
                R = W
            else:
                L = W
    elif g == 8:  # air drums: alternating strikes, fast down-stroke, slow lift, drifting between drums
        drift = rng.uniform(0, 2 * np.pi, 2)
        for i, s in enumerate((-1, 1)):
            p = ((w + ph + (np.pi if s > 0 else 0)) / (2 * np.pi)) % 1.0
            h = np.where(p < 0.2, 1 - _smoothstep(p / 0.2), _smoothstep((p - 0.2) / 0.8))
            W = rel(s, 0.35 + 0.3 * np.sin(2 * np.pi * 0.35 * t + drift[i]), 1.55 - 0.6 * amp * h, 1.1)
            if s < 0:
                R = W
            else:
                L = W
    elif g == 9:  # air guitar: right hand strums at the hip, left hand frets up and out
        R = np.stack([subj.cx - 0.2 * sw + z0, subj.cy + (1.9 + 0.35 * amp * np.sin(w + ph)) * sw,
                      0.9 * sw + z0], 1)
        L = rel(1, 1.6 + 0.15 * np.sin(2 * np.pi * 0.6 * t + ph), 0.35 + 0.12 * np.sin(2 * np.pi * 0.9 * t), 0.8)
    else:         # other: smooth, non-periodic motion (incommensurate random sinusoids per axis)
        for s in (-1, 1):
            base = np.array([rng.uniform(-0.4, 1.4), rng.uniform(-0.8, 1.9), rng.uniform(0.3, 1.2)])
            still = rng.random() < 0.25
            off = np.zeros((len(t), 3))
            for axis in range(3):
                for _ in range(3):
                    a = rng.uniform(0.15, 0.55) * (0.3 if still else 1.0)
                    off[:, axis] += a * np.sin(2 * np.pi * rng.uniform(0.15, 1.3) * t + rng.uniform(0, 2 * np.pi))
            W = rel(s, base[0] + off[:, 0], base[1] + off[:, 1], base[2] + off[:, 2])
            if s < 0:
                R = W
            else:
                L = W
    return R, L, rest[-1], rest[1]


def ik_elbow(S, W, upper, fore, s):
    """Two-link IK: elbow (F, 3) for shoulders S and wrist targets W; the wrist is clamped to reach."""
    d = W - S
    dist = np.linalg.norm(d, axis=1, keepdims=True)
    n = d / np.maximum(dist, 1e-9)
    dist = np.clip(dist, abs(upper - fore) + 1e-3, 0.985 * (upper + fore))
    a = (upper ** 2 - fore ** 2 + dist ** 2) / (2 * dist)
    h = np.sqrt(np.maximum(upper ** 2 - a ** 2, 0.0))
    pole = np.array([0.55 * s, 0.45, -0.7])
    m = pole - (n @ pole)[:, None] * n
    m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-9)
    return S + a * n + h * m, S + dist * n


def body_primitives(subj: Subject, WR, WL, cx, cy):
    """Capsules (F, 8, 5) = (ax, ay, bx, by, radius) in draw order, for wrists WR/WL and body centre."""
    sw = subj.sw
    F = len(WR)
    prims = np.zeros((F, N_PRIMS, 5))
    prims[:, 0] = np.stack([cx, cy - 0.1 * sw, cx, cy + 2.7 * sw, np.full(F, 0.95 * sw)], 1)
    prims[:, 1] = np.stack([cx, cy - 1.5 * sw, cx, cy - 1.35 * sw, np.full(F, 0.62 * sw)], 1)
    arms = []
    for s, W in ((-1, WR), (1, WL)):
        S = np.stack([cx + s * sw, cy, np.zeros(F)], 1)
        W = W + np.stack([cx - subj.cx, cy - subj.cy, np.zeros(F)], 1)  # wrists follow body sway
        E, W = ik_elbow(S, W, subj.upper * sw, subj.fore * sw, s)
        hand_dir = (W - E) / np.maximum(np.linalg.norm(W - E, axis=1, keepdims=True), 1e-9)
        H = W + 0.35 * sw * hand_dir
        arms.append((W[:, 2], [np.concatenate([S[:, :2], E[:, :2]], 1),
                               np.concatenate([E[:, :2], W[:, :2]], 1),
                               np.concatenate([W[:, :2], H[:, :2]], 1)], (0.34, 0.28, 0.3)))
    # the arm nearer the camera is drawn last; decided per frame
    right_front = arms[0][0] >= arms[1][0]
    for j in range(3):
        for slot in range(2):
            # slot 0 is drawn first: the far arm (both arms share reflectances, so only geometry moves)
            use_right = ~right_front if slot == 0 else right_front
            seg = np.where(use_right[:, None], arms[0][1][j], arms[1][1][j])
            prims[:, 2 + 3 * slot + j, :4] = seg
            prims[:, 2 + 3 * slot + j, 4] = arms[0][2][j] * sw
    return prims
