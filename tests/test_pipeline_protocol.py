"""Wire protocol: round trips, zero copy, and every malformation raising its own ProtocolError."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from evrt.events import EVENT_DTYPE, to_tonic
from evrt.pipeline import protocol as P
from evrt.pipeline.testing import synthetic_events


def _bytes(frames):
    return [bytes(f) for f in frames]


def test_round_trip_events():
    ev = synthetic_events(1000)
    frames = P.encode(P.EVENTS, 0xDEADBEEF, 42, ev, 10, 20, (32, 24), flags=3)
    assert len(frames[0]) == P.HEADER.size == 54
    msg = P.decode(_bytes(frames))
    assert (msg.kind, msg.stream_id, msg.seq, msg.start_us, msg.end_us, msg.sensor_size, msg.flags) == \
        (P.EVENTS, 0xDEADBEEF, 42, 10, 20, (32, 24), 3)
    assert msg.events.dtype == EVENT_DTYPE and np.array_equal(msg.events, ev)


def test_zero_copy_both_ways():
    ev = synthetic_events(100)
    frames = P.encode(P.EVENTS, 1, 0, ev)
    assert isinstance(frames[1], memoryview) and np.shares_memory(np.asarray(frames[1]), ev.view(np.uint8))
    buf = bytearray(frames[1])
    msg = P.decode([frames[0], buf])
    assert np.shares_memory(msg.events, np.frombuffer(buf, np.uint8))


def test_tonic_payload_is_converted_at_the_edge():
    ev = synthetic_events(50)
    msg = P.decode(_bytes(P.encode(P.EVENTS, 1, 0, to_tonic(ev))))
    assert msg.events.dtype == EVENT_DTYPE and np.array_equal(msg.events, ev)


def test_control_messages_and_empty_events():
    for kind in (P.RESET, P.END_OF_STREAM):
        m = P.decode(_bytes(P.encode(kind, 5, 9)))
        assert m.kind == kind and m.events is None and m.seq == 9
    m = P.decode(_bytes(P.encode(P.EVENTS, 5, 9, np.zeros(0, EVENT_DTYPE))))
    assert len(m.events) == 0


def malformed(ev=None):
    """One bad message per reason: (reason, frames)."""
    ev = synthetic_events(10) if ev is None else ev
    good = _bytes(P.encode(P.EVENTS, 7, 3, ev))
    h = bytearray(good[0])

    def patched(offset, fmt, value):
        b = bytearray(h)
        import struct
        struct.pack_into(fmt, b, offset, value)
        return [bytes(b), good[1]]
    return [
        ("frame_count", good[:1]),
        ("frame_count", good + [b"x"]),
        ("header_size", [good[0][:-1], good[1]]),
        ("header_size", [good[0] + b"\0", good[1]]),
        ("magic", [b"XVRT" + good[0][4:], good[1]]),
        ("version", patched(4, "<H", P.VERSION + 1)),
        ("kind", patched(6, "<H", 99)),
        ("dtype", patched(44, "<H", 77)),
        ("payload_size", [good[0], good[1][:-1]]),
        ("payload_size", patched(36, "<Q", len(ev) + 1)),
        ("payload_size", [_bytes(P.encode(P.RESET, 7, 3))[0], b"junk"]),
    ]


@pytest.mark.parametrize("reason,frames", malformed(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_malformation_has_its_reason(reason, frames):
    with pytest.raises(P.ProtocolError) as info:
        P.decode(frames)
    assert info.value.reason == reason and reason in P.REASONS


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=120), min_size=0, max_size=4))
def test_fuzz_never_raises_anything_else(frames):
    try:
        P.decode(frames)
    except P.ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=P.HEADER.size - 4, max_size=P.HEADER.size - 4), st.binary(max_size=200))
def test_fuzz_valid_magic_random_header(rest, body):
    try:
        m = P.decode([b"EVRT" + rest, body])
    except P.ProtocolError:
        return
    if m.events is not None:
        assert m.events.dtype == EVENT_DTYPE


def test_json_messages():
    from evrt.streaming import Prediction
    pred = Prediction(3, 0, 10, 5, 1, "b", 0.5, [0.1, 0.9], 1.0, 7, 0).to_dict()
    topic, obj = P.decode_json(P.encode_json(P.TOPIC_PRED, pred))
    assert topic == P.TOPIC_PRED and obj == pred
    assert P.decode_json(P.encode_json(P.TOPIC_EOS, {"a": 1.5})) == (P.TOPIC_EOS, {"a": 1.5})
    # issue 14: `evrt watch` crashed on [b'pred', b'{}'] and on a JSON list; every such message is a
    # ProtocolError now (the receivers drop and count those)
    wrong = [dict(pred, logits="x"), dict(pred, step=True), dict(pred, class_name=3), {k: v for k, v in pred.items()
             if k != "confidence"}]
    bad_messages = [[b"pred"], [b"nope", b"{}"], [b"pred", b"{"], [b"pred", b"\xff"], [b"pred", b"{}"],
                    [b"pred", b"[1]"], [b"eos", b"[1]"], [b"pred", b"[" * 100_000]]
    for bad in bad_messages + [P.encode_json(P.TOPIC_PRED, w) for w in wrong]:
        with pytest.raises(P.ProtocolError):
            P.decode_json(bad)
