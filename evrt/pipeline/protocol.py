"""The wire format: two-frame ZeroMQ messages, a fixed binary header and the raw event bytes.

Frame 1 is a little-endian header (``HEADER``, 54 bytes); frame 2 the event array's bytes exactly as
they sit in memory, so a sender hands ZeroMQ a memoryview (no copy) and a receiver wraps the frame
with ``np.frombuffer`` (no copy). Nothing is pickled: a peer can only make us read numbers.

``decode`` is strict — every way a message can be wrong raises a ``ProtocolError`` subclass whose
``reason`` is a short stable key, so receivers can drop the message and count drops by reason.

Predictions are not events: they travel on their own socket as ``[b"pred", <JSON>]`` (and the end of a
stream as ``[b"eos", <JSON>]``), small and readable by any language.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import numpy as np

from ..errors import EventError, EvrtError
from ..events import EVENT_DTYPE, TONIC_DTYPE, as_events

__all__ = ["MAGIC", "VERSION", "HEADER", "EVENTS", "END_OF_STREAM", "RESET", "PREDICTION", "KIND_NAMES",
           "DTYPE_EVRT", "DTYPE_TONIC", "DTYPES", "Message", "encode", "decode", "ProtocolError",
           "REASONS", "BadEventsError", "TOPIC_PRED", "TOPIC_EOS", "encode_json", "decode_json"]

MAGIC = b"EVRT"
VERSION = 1
# magic, version u16, kind u16, stream id u32, sequence u64, window start µs u64, window end µs u64,
# event count u64, dtype code u16, sensor width u16, sensor height u16, flags u32
HEADER = struct.Struct("<4sHHIQQQQHHHI")

EVENTS, END_OF_STREAM, RESET, PREDICTION = 1, 2, 3, 4
KIND_NAMES = {EVENTS: "events", END_OF_STREAM: "end_of_stream", RESET: "reset", PREDICTION: "prediction"}

DTYPE_NONE, DTYPE_EVRT, DTYPE_TONIC = 0, 1, 2  # 0: control messages carry no events
DTYPES = {DTYPE_EVRT: EVENT_DTYPE, DTYPE_TONIC: TONIC_DTYPE}
_CODE_OF = {EVENT_DTYPE: DTYPE_EVRT, TONIC_DTYPE: DTYPE_TONIC}

TOPIC_PRED, TOPIC_EOS = b"pred", b"eos"


class ProtocolError(EvrtError, ValueError):
    """A message that does not follow the wire format. ``reason`` is a stable key for drop counters."""
    reason = "malformed"

    def __init__(self, detail: str):
        super().__init__(f"{self.reason}: {detail}")
        self.detail = detail


class FrameCountError(ProtocolError):
    reason = "frame_count"


class HeaderSizeError(ProtocolError):
    reason = "header_size"


class MagicError(ProtocolError):
    reason = "magic"


class VersionError(ProtocolError):
    reason = "version"


class KindError(ProtocolError):
    reason = "kind"


class DtypeError(ProtocolError):
    reason = "dtype"


class PayloadSizeError(ProtocolError):
    reason = "payload_size"


class JsonMessageError(ProtocolError):
    reason = "json"


class BadEventsError(ProtocolError):
    """A well-formed message whose events do not fit the event type (a tonic payload with t < 0 ...)."""
    reason = "bad_events"


REASONS = tuple(c.reason for c in (FrameCountError, HeaderSizeError, MagicError, VersionError, KindError,
                                   DtypeError, PayloadSizeError, JsonMessageError, BadEventsError))


@dataclass
class Message:
    kind: int
    stream_id: int
    seq: int
    start_us: int = 0
    end_us: int = 0
    events: np.ndarray | None = None   # EVENT_DTYPE (tonic payloads are converted on receipt)
    sensor_size: tuple = (0, 0)        # (width, height); (0, 0) = unknown
    flags: int = 0

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, str(self.kind))


def encode(kind: int, stream_id: int, seq: int, events=None, start_us: int = 0, end_us: int = 0,
           sensor_size=(0, 0), flags: int = 0) -> list:
    """The two frames of one message: ``[header bytes, memoryview of the events]``. The events array
    must stay alive and unmodified until ZeroMQ has sent it (send with ``copy=False``)."""
    if kind not in KIND_NAMES:
        raise ValueError(f"unknown message kind {kind}")
    if events is None:
        payload, count, code = b"", 0, DTYPE_NONE
    else:
        ev = np.ascontiguousarray(events)
        code = _CODE_OF.get(ev.dtype)
        if code is None:
            ev, code = np.ascontiguousarray(as_events(ev)), DTYPE_EVRT
        payload, count = memoryview(ev.view(np.uint8)), len(ev)
    w, h = (int(v) for v in sensor_size)
    header = HEADER.pack(MAGIC, VERSION, kind, stream_id & 0xFFFFFFFF, seq, start_us, end_us, count, code,
                         w, h, flags)
    return [header, payload]


def _frame_bytes(frame):
    """bytes-like view of a received frame (zmq.Frame when received with copy=False, else bytes)."""
    return frame.buffer if hasattr(frame, "buffer") else frame


def decode(frames) -> Message:
    """Parse a received multipart message; raise a ``ProtocolError`` subclass when anything is off."""
    if len(frames) != 2:
        raise FrameCountError(f"expected 2 frames, got {len(frames)}")
    head, body = (_frame_bytes(f) for f in frames)
    if len(head) != HEADER.size:
        raise HeaderSizeError(f"header is {len(head)} bytes, expected {HEADER.size}")
    magic, version, kind, sid, seq, start, end, count, code, w, h, flags = HEADER.unpack(head)
    if magic != MAGIC:
        raise MagicError(f"magic {magic!r} is not {MAGIC!r}")
    if version != VERSION:
        raise VersionError(f"version {version} is not supported (this evrt speaks {VERSION})")
    if kind not in KIND_NAMES:
        raise KindError(f"unknown message kind {kind}")
    nbytes = len(body)
    if kind == EVENTS:
        dtype = DTYPES.get(code)
        if dtype is None:
            raise DtypeError(f"unknown dtype code {code}")
        if nbytes != count * dtype.itemsize:
            raise PayloadSizeError(f"payload is {nbytes} bytes, header says {count} x {dtype.itemsize}")
        ev = np.frombuffer(body, dtype=dtype, count=count) if count else np.zeros(0, dtype)
        if code != DTYPE_EVRT:
            try:
                ev = as_events(ev)  # convert at the edge; the hot path only sees EVENT_DTYPE
            except EventError as exc:  # negative t / x in a tonic payload: the peer's fault, not ours
                raise BadEventsError(str(exc)) from None
        return Message(kind, sid, seq, start, end, ev, (w, h), flags)
    # control messages carry no events
    if code != DTYPE_NONE and code not in DTYPES:
        raise DtypeError(f"unknown dtype code {code}")
    if count or nbytes:
        raise PayloadSizeError(f"{KIND_NAMES[kind]} message carries {nbytes} payload bytes / count {count}")
    return Message(kind, sid, seq, start, end, None, (w, h), flags)


def encode_json(topic: bytes, obj) -> list:
    return [topic, json.dumps(obj, separators=(",", ":")).encode()]


def decode_json(frames) -> tuple:
    """``(topic, object)`` of a prediction-socket message; ``JsonMessageError`` when malformed."""
    if len(frames) != 2:
        raise FrameCountError(f"expected 2 frames, got {len(frames)}")
    topic, body = (bytes(_frame_bytes(f)) for f in frames)
    if topic not in (TOPIC_PRED, TOPIC_EOS):
        raise JsonMessageError(f"unknown topic {topic[:16]!r}")
    if len(body) > MAX_JSON_BYTES:
        raise JsonMessageError(f"{len(body)} bytes of JSON (limit {MAX_JSON_BYTES})")
    try:
        obj = json.loads(body.decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise JsonMessageError(str(exc)[:120]) from None
    if not isinstance(obj, dict):
        raise JsonMessageError(f"expected a JSON object, got {type(obj).__name__}")
    if topic == TOPIC_PRED:
        _check_prediction(obj)
    return topic, obj


MAX_JSON_BYTES = 1 << 20
# what a prediction must carry, and the JSON types each field may have
_PRED_FIELDS = {"step": (int,), "start_us": (int,), "end_us": (int,), "n_events": (int,), "class_index": (int,),
                "class_name": (str,), "confidence": (int, float), "logits": (list,), "latency_ms": (int, float),
                "acs": (int,), "macs": (int,)}
_PRED_OPTIONAL = {"segment_step": (int,), "stream_id": (int,), "extra": (dict,)}


def _check_prediction(obj: dict) -> None:
    """A prediction object has every field a consumer reads, each of the right JSON type."""
    missing = [k for k in _PRED_FIELDS if k not in obj]
    if missing:
        raise JsonMessageError(f"prediction lacks {', '.join(missing)}")
    for table in (_PRED_FIELDS, _PRED_OPTIONAL):
        for k, types in table.items():
            if k in obj and (not isinstance(obj[k], types) or isinstance(obj[k], bool)):
                raise JsonMessageError(f"prediction field {k!r} is a {type(obj[k]).__name__}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in obj["logits"]):
        raise JsonMessageError("prediction logits must be numbers")
