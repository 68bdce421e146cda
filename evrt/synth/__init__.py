"""Synthetic DVS128-Gesture-like recordings: an articulated upper body performing the 11 gestures,
seen by a simulated DVS pixel array, written in the original DvsGesture layout.

Targets (what the real data looks like; approximate): DVS128 Gesture has 29 subjects x up to 5
lighting conditions (122 recordings, 1342 gesture instances; the reference split gives 1176 train /
288 test samples, spec §2.1), 128x128 pixels, samples of approx. 6 s, event rates approx. tens to a
few hundred k events/s during a gesture. The shipped example set (examples/data/) is deliberately
smaller: ~1.8 s samples and moderate rates (tens of k events/s) to stay under ~8 MB; the generator
(``tools/make_synth_gestures.py``) makes larger / longer sets on demand.

Modules: ``kinematics`` (body and gesture trajectories), ``scene`` (background, lighting, shake),
``sensor`` (rendering + DVS pixel model, numba), ``dataset`` (recordings and the folder layout).
"""
from .dataset import SynthConfig, make_recording, write_dataset

__all__ = ["SynthConfig", "make_recording", "write_dataset"]
