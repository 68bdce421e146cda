"""Errors a user can act on. The CLI prints these as one line, without a traceback."""


class EvrtError(Exception):
    """Base class for every error evrt raises on bad input."""


class EventError(EvrtError, ValueError):
    """Events that are malformed: wrong dtype, out of the sensor, timestamps going backwards."""


class FormatError(EvrtError, ValueError):
    """A recording file that cannot be decoded; the message names the file and the byte offset or row."""


class CheckpointError(EvrtError, ValueError):
    """A checkpoint that cannot be loaded safely or does not match the architecture."""


class GraphError(EvrtError, ValueError):
    """A folded model file that is malformed or of an unsupported version."""
