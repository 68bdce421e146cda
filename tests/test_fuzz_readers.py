"""Property-based fuzzing of every reader and the wire decoder with one guarantee (issue 14): given
damaged bytes, a reader returns a result or raises its own one-line error class (an ``EvrtError``) —
never another exception, never a hang, never an allocation out of proportion to the input.

Each reader starts from a small valid file and gets byte flips, truncations, insertions and splices.
New readers join by adding a (name, writer, reader) row to ``READERS``."""
from __future__ import annotations

import json
import struct
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from evrt.errors import EvrtError
from evrt.events import make_events

EV = make_events(np.arange(0, 400, 7), np.arange(58) % 32, np.arange(58) % 17, np.arange(58) % 2)
BUDGET = 64 << 20    # bytes a damaged file of a few KB may make a reader allocate (tracemalloc peak)
SECONDS = 10.0


def _aedat31(p):
    from evrt.formats.aedat31 import write_aedat31
    write_aedat31(p, EV)


def _npz(p):
    from evrt.formats.npz import write_npz
    write_npz(p, EV, sensor_size=(32, 32), labels=np.array([[1, 0, 100], [2, 100, 300]]), compressed=False)


def _npy(p):
    from evrt.formats.npz import write_npy
    write_npy(p, EV)


def _labels(p):
    from evrt.formats.aedat31 import write_labels_csv
    write_labels_csv(p, [(1, 0, 100), (11, 100, 5000)])


def _safetensors(p):
    w = np.arange(12, dtype="<f4")
    header = json.dumps({"w": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]},
                         "__metadata__": {"args": json.dumps({"T": 4})}}).encode()
    p.write_bytes(struct.pack("<Q", len(header)) + header + w.tobytes())


def _pth(p):
    from test_checkpoint import _dict, _i, _pkl, _tensor, _write_zip
    body = _dict(model=_dict(w=_tensor("0", 12, (3, 4), (4, 1)), v=_tensor("0", 12, (4,), (3,), offset=1)),
                 epoch=_i(3))
    _write_zip(p, _pkl(body), {"0": np.arange(12, dtype="<f4").tobytes()})


def _npz_checkpoint(p):
    with open(p, "wb") as f:
        np.savez(f, w=np.arange(6.0).reshape(2, 3), __args__=np.array(json.dumps({"T": 4})))


def _read_recording(p):
    from evrt.formats import read_recording
    return read_recording(p)


def _read_labels(p):
    from evrt.formats.aedat31 import read_labels_csv
    return read_labels_csv(p)


def _read_checkpoint(p):
    from evrt.checkpoint import load_checkpoint
    return load_checkpoint(p)


READERS = {
    "aedat3.1": ("x.aedat", _aedat31, _read_recording),
    "npz": ("x.npz", _npz, _read_recording),
    "npy": ("x.npy", _npy, _read_recording),
    "labels_csv": ("x_labels.csv", _labels, _read_labels),
    "safetensors": ("x.safetensors", _safetensors, _read_checkpoint),
    "pth": ("x.pth", _pth, _read_checkpoint),
    "npz_checkpoint": ("x.npz", _npz_checkpoint, _read_checkpoint),
}


def damaged(data, base: bytes) -> bytes:
    b = bytearray(base)
    mode = data.draw(st.sampled_from(["flip", "truncate", "insert", "splice", "random"]))
    if mode == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            b[data.draw(st.integers(0, len(b) - 1))] = data.draw(st.integers(0, 255))
    elif mode == "truncate":
        del b[data.draw(st.integers(0, len(b))):]
    elif mode == "insert":
        i = data.draw(st.integers(0, len(b)))
        b[i:i] = data.draw(st.binary(min_size=1, max_size=64))
    elif mode == "splice":   # a valid head, then anything
        del b[data.draw(st.integers(0, min(len(b), 96))):]
        b += data.draw(st.binary(max_size=200))
    else:
        b = bytearray(data.draw(st.binary(max_size=300)))
    return bytes(b)


def check_guarantee(fn, *args):
    """fn(*args) returns or raises an EvrtError, within the time and memory budget."""
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        fn(*args)
    except EvrtError as exc:
        assert str(exc) and "\n" not in str(exc).strip(), repr(exc)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.monotonic() - t0 < SECONDS
    assert peak < BUDGET, f"{peak / 2**20:.0f} MiB allocated"


@pytest.mark.parametrize("name", sorted(READERS))
def test_fuzz_reader(name, tmp_path_factory):
    fname, write, read = READERS[name]
    d = tmp_path_factory.mktemp(f"fuzz_{name}")
    seed = d / fname
    write(seed)
    base = seed.read_bytes()
    read(seed)   # the undamaged file is valid

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        p = d / ("f_" + fname)
        p.write_bytes(damaged(data, base))
        check_guarantee(read, p)

    run()


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from([1, 2, 3, 4, 9]), code=st.sampled_from([0, 1, 2, 7]), count=st.integers(0, 2**64 - 1),
       body=st.binary(max_size=260), sid=st.integers(0, 2**32 - 1), seq=st.integers(0, 2**64 - 1))
def test_fuzz_wire_decoder_structured(kind, code, count, body, sid, seq):
    """Well-formed headers with hostile fields (huge counts, tonic payloads of any bytes: negative t/x)."""
    from evrt.pipeline import protocol as P
    head = P.HEADER.pack(P.MAGIC, P.VERSION, kind, sid, seq, 0, 0, count, code, 32, 32, 0)
    if count < 32 and code in P.DTYPES:   # make the size right half of the time, so payloads get decoded
        body = (body * (1 + P.DTYPES[code].itemsize * count))[:P.DTYPES[code].itemsize * count]
    check_guarantee(P.decode, [head, body])


@settings(max_examples=150, deadline=None)
@given(topic=st.sampled_from([b"pred", b"eos", b"x"]),
       body=st.one_of(st.binary(max_size=200),
                      st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                                   lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                       max_size=12),
                                   max_leaves=30).map(lambda o: json.dumps(o).encode())))
def test_fuzz_prediction_json(topic, body):
    from evrt.pipeline import protocol as P
    from evrt.streaming import Prediction
    try:
        t, obj = P.decode_json([topic, body])
    except P.ProtocolError:
        return
    if t == P.TOPIC_PRED:   # whatever passes the decoder is a prediction a consumer can use
        Prediction.from_dict(obj)
