"""Synthetic DVS128-Gesture-like recordings: an articulated upper body performing the 11 gestures,
seen by a simulated DVS pixel array, written in the original DvsGesture layout.

Targets (what the real data looks like; approximate): DVS128 Gesture has 29 subjects x up to 5
lighting conditions (122 recordings, 1342 gesture instances; the reference split gives 1176 train /
288 test samples), 128x128 pixels, samples of approx. 6 s, event rates approx. tens to a
few hundred k events/s during a gesture.

What this generator gives: the default config (``SynthConfig``: 1.8 s gestures, threshold 0.2) gives
a median of approx. 20 k events/s during gestures (measured: 21.7 k ev/s over 330 samples at
``--duration 1.5``), below the real data; ``--theta`` lower raises it. The shipped example set
(examples/data/) is smaller still: 1.5 s samples, threshold 0.4, 3-19 k events/s, 7.1 MB. Speed:
approx. 0.2 s of one core per 1.5 s sample (330 samples: 72 s CPU), so 1000 samples take ~4 min.

Not a trivial task: the subject, position, size, tempo, lighting and background vary per user and
sample, and clockwise / counter-clockwise circles cover the same pixels, so a linear classifier on
polarity-summed event-count maps cannot tell them apart (measured on 24 train / 6 test users:
59 % overall, CW/CCW pairs at chance), while features that keep time order do better.

Modules: ``kinematics`` (body and gesture trajectories), ``scene`` (background, lighting, shake),
``sensor`` (rendering + DVS pixel model, numba), ``dataset`` (recordings and the folder layout).
"""
from .dataset import SynthConfig, make_recording, write_dataset

__all__ = ["SynthConfig", "make_recording", "write_dataset"]
