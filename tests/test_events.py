import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from evrt.errors import EventError
from evrt.events import EVENT_DTYPE, TONIC_DTYPE, as_events, make_events, to_tonic, validate


def test_dtype_is_packed_13_bytes():
    assert EVENT_DTYPE.itemsize == 13
    assert EVENT_DTYPE.names == ("t", "x", "y", "on")


def test_make_events_and_polarity_conventions():
    ev = make_events([1, 2, 3], [0, 1, 2], [3, 4, 5], [0, 1, -1])
    assert ev.dtype == EVENT_DTYPE
    assert ev["on"].tolist() == [False, True, False]
    with pytest.raises(EventError, match="event 1: x=70000"):
        make_events([1, 2], [0, 70000], [0, 0], [1, 1])
    with pytest.raises(EventError, match="event 0: t=-5"):
        make_events([-5], [0], [0], [1])
    with pytest.raises(EventError, match="whole number"):
        make_events([1.5], [0], [0], [1])


def test_as_events_passthrough_tonic_and_mapping():
    ev = make_events([1, 2], [3, 4], [5, 6], [True, False])
    assert as_events(ev) is ev
    # tonic arrays in any field order and width, p bool or int
    for dt in (TONIC_DTYPE, [("t", "<i8"), ("p", "<i4"), ("y", "<u2"), ("x", "<i8")],
               [("x", "<f8"), ("y", "<f8"), ("p", "<i1"), ("t", "<f8")]):
        tn = np.zeros(2, dt)
        tn["x"], tn["y"], tn["p"], tn["t"] = [3, 4], [5, 6], [1, 0], [1, 2]
        np.testing.assert_array_equal(as_events(tn), ev)
    np.testing.assert_array_equal(as_events({"t": [1, 2], "x": [3, 4], "y": [5, 6], "p": [1, 0]}), ev)
    np.testing.assert_array_equal(as_events({"t": [1, 2], "x": [3, 4], "y": [5, 6], "on": [True, False]}), ev)
    back = to_tonic(ev)
    assert back.dtype == TONIC_DTYPE
    np.testing.assert_array_equal(as_events(back), ev)
    with pytest.raises(EventError, match="not an event"):
        as_events(np.zeros(3, [("a", "<i4")]))
    with pytest.raises(EventError, match="plain"):
        as_events(np.zeros((3, 4)))
    with pytest.raises(EventError):
        as_events({"t": [1], "x": [1]})


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**40), st.integers(0, 65535), st.integers(0, 65535), st.booleans()),
                max_size=30))
def test_tonic_roundtrip(rows):
    ev = make_events(*(np.array(c, dtype=np.int64 if i < 3 else bool) for i, c in enumerate(zip(*rows)))) \
        if rows else np.zeros(0, EVENT_DTYPE)
    np.testing.assert_array_equal(as_events(to_tonic(ev, [("x", "<i4"), ("y", "<i4"), ("p", "?"), ("t", "<i8")])), ev)


# --------------------------------------------------------------------------------------- validation
def test_validate_clean_stream_is_unchanged():
    ev = make_events([0, 0, 5, 9], [0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 0, 1])
    out, rep = validate(ev, (4, 4))
    assert out is ev and rep.kept == 4 and rep.dropped == 0 and rep.ok
    out, rep = validate(ev, (4, 4), policy="drop")
    assert out is ev and rep.to_dict()["dropped"] == 0


def test_validate_raise_names_first_bad_index_value_and_rule():
    ev = make_events([0, 1, 2, 1, 3], [0, 1, 9, 0, 0], [0, 0, 0, 0, 7], [1, 1, 1, 1, 1])
    with pytest.raises(EventError, match=r"event 2: x=9 is outside the sensor width 4"):
        validate(ev, (4, 8))
    with pytest.raises(EventError, match=r"event 3: t=1 is smaller than the previous timestamp 2"):
        validate(ev, (16, 16))
    with pytest.raises(EventError, match=r"event 4: y=7 is outside the sensor height 5"):
        validate(make_events([0, 1, 2, 3, 4], [0] * 5, [0, 1, 2, 3, 7], [1] * 5), (4, 5))
    tn = np.zeros(2, TONIC_DTYPE)
    tn["x"], tn["t"] = [-1, 0], [0, 1]
    with pytest.raises(EventError, match=r"event 0: x=-1"):
        validate(tn, (4, 4))
    tn["x"], tn["t"] = [0, 0], [0, -3]
    with pytest.raises(EventError, match=r"event 1: t=-3 is negative"):
        validate(tn, None)


def test_validate_dtype_and_shape_always_raise():
    for bad in (np.zeros(3), np.zeros((2, 2), EVENT_DTYPE), np.zeros(2, [("t", "<u8"), ("x", "<u2")]), [1, 2]):
        for policy in ("raise", "drop"):
            with pytest.raises(EventError):
                validate(bad, (4, 4), policy=policy)
    with pytest.raises(ValueError):
        validate(np.zeros(0, EVENT_DTYPE), policy="ignore")


def test_validate_drop_counts_by_reason():
    # t:   0  5  3  6  4  7  2(oos)  8
    ev = make_events([0, 5, 3, 6, 4, 7, 2, 8], [0, 1, 1, 1, 1, 1, 50, 1], [0] * 8, [1] * 8)
    out, rep = validate(ev, (4, 4), policy="drop")
    assert out["t"].tolist() == [0, 5, 6, 7, 8]
    assert (rep.total, rep.kept, rep.dropped_out_of_sensor, rep.dropped_time_backwards) == (8, 5, 1, 2)
    assert out.dtype == EVENT_DTYPE
    tn = np.zeros(3, TONIC_DTYPE)
    tn["t"], tn["x"] = [-1, 2, 3], [0, 0, 5]
    out, rep = validate(tn, (4, 4), policy="drop")
    assert out["t"].tolist() == [2] and rep.dropped_negative_time == 1 and rep.dropped_out_of_sensor == 1
    assert "1/3 events kept" in str(rep)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 100), st.integers(-2, 9), st.integers(-2, 9)), max_size=60))
def test_validate_drop_properties(rows):
    a = np.zeros(len(rows), [("x", "<i4"), ("y", "<i4"), ("p", "?"), ("t", "<i8")])
    if rows:
        a["t"], a["x"], a["y"] = np.array(rows).T
    out, rep = validate(a, (8, 8), policy="drop")
    t = out["t"].astype(np.int64)
    assert np.all(np.diff(t) >= 0)
    assert np.all(out["x"] < 8) and np.all(out["y"] < 8)
    assert rep.kept == len(out) and rep.kept + rep.dropped == len(rows)
    inside = (a["x"] >= 0) & (a["x"] < 8) & (a["y"] >= 0) & (a["y"] < 8)
    assert rep.dropped_out_of_sensor == int((~inside).sum())
    # greedy: a coordinate-valid event is kept iff no earlier kept event is later in time
    kept, hi = [], -1
    for r, ok in zip(a, inside):
        if ok and r["t"] >= hi:
            kept.append(int(r["t"]))
            hi = int(r["t"])
    assert t.tolist() == kept
    if rep.dropped == 0:
        validate(a, (8, 8))  # raise policy agrees: nothing to complain about
    else:
        with pytest.raises(EventError):
            validate(a, (8, 8))
