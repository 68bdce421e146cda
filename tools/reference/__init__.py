"""PyTorch reference models for evrt's parity tests (torch + spikingjelly; never imported by evrt/)."""
from .spikformer import Spikformer
from .sdt import SDT
from .spikingresformer import SpikingResformer
from .rtformer import RTFormer

# family name (as in evrt/archs) -> constructor
MODELS = {"spikformer": Spikformer, "sdt": SDT, "spikingresformer": SpikingResformer, "rtformer": RTFormer}

__all__ = ["Spikformer", "SDT", "SpikingResformer", "RTFormer", "MODELS"]
