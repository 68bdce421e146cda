"""Labelled event data sets (readers only; nothing is downloaded)."""
from .dvsgesture import CLASS_NAMES, SPIKINGJELLY_ORDER, DVSGesture, Sample, class_names, read_tonic_npy

__all__ = ["CLASS_NAMES", "SPIKINGJELLY_ORDER", "DVSGesture", "Sample", "class_names", "read_tonic_npy"]
