"""evrt: event-driven streaming inference for spiking vision transformers.

numpy + numba (+ pyzmq for the pipeline). Never imports torch or tonic.
"""
from .errors import EvrtError, EventError, FormatError, CheckpointError, GraphError

__version__ = "0.1.0"

__all__ = ["EvrtError", "EventError", "FormatError", "CheckpointError", "GraphError", "__version__"]
