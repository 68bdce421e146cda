"""Synthetic DVS128-Gesture-like recordings: an articulated upper body performing the 11 gestures,
seen by a simulated DVS pixel array, written in the original DvsGesture layout.

Calibration against the real set (each figure says where it comes from; "approx." = not measured here):

* Real DVS128 Gesture (Amir et al., CVPR 2017; IBM's dataset page): 29 subjects, 11 gestures, 3
  lighting conditions, a DVS128 (128x128 pixels), AEDAT 3.1 files, one recording per subject and
  lighting with the gestures in class order. Samples last approx. 6 s. The extracted set is approx. 5 GB
  (the BrainChip mirror's README), i.e. at most ~0.6 G events of 8 bytes over 122 recordings of
  ~11 x 6 s: roughly 50-70 k events/s (an estimate).
* Pixel: contrast-threshold mismatch 2.1 % (Lichtsteiner, Posch, Delbruck, IEEE JSSC 2008, the DVS128
  paper) -> ``sigma = 0.021``; background activity ~0.1 Hz per pixel at the reference illuminance, more
  in dim light (the order of the ~0.2 Hz/pixel leak rate Guo & Delbruck report for a DAVIS sensor:
  approx., another sensor); 0-2 hot pixels of 5-30 Hz per recording (a guess: no published figure found).
* Defaults (``SynthConfig``): 6 s +- 10 % per gesture, contrast threshold 0.15 -> measured 17.8 k
  events/s over all gesture time of 20 users (220 samples; per user 5-27 k), below the real
  estimate: the cartoon body has no fingers or clothing folds. A higher ``theta`` lowers the rate
  (0.15 / 0.2 / 0.25 mixed by user: 16.5 k over 124 users; 0.25 alone: ~9-15 k).
* The shipped example set (examples/data/) uses ``theta = 0.25`` and 0.3 s gaps to fit the repository
  budget: 3 recordings, 33 samples of ~6 s, ~12.6 k events/s in gestures, 19.9 MB.

Speed: approx. 6-8 s of one core per recording of 11 six-second gestures (numba), so 150 recordings
take ~1 minute on 16 cores (``tools/train.py --generate ... --workers 16``).

Not a trivial task: the subject, position, size, tempo, lighting and background vary per user and
sample, and clockwise / counter-clockwise circles cover the same pixels, so a linear classifier on
event-count maps cannot tell them apart (a sample holds whole turns; measured with the older 1.5 s
samples on 24 train / 6 test users: 59 % overall, CW/CCW pairs at chance), while features that keep time
order do better. Arm circles turn at most ~1.2 turns/s, so T = 16 frames over a 6 s sample (~0.375 s each)
see less than half a turn per frame and the direction does not alias.

Modules: ``kinematics`` (body and gesture trajectories), ``scene`` (background, lighting, shake),
``sensor`` (rendering + DVS pixel model, numba), ``dataset`` (recordings and the folder layout).
"""
from .dataset import SynthConfig, make_recording, write_dataset

__all__ = ["SynthConfig", "make_recording", "write_dataset"]
