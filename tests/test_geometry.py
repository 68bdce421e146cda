"""evrt.geometry: property tests (nothing lands outside the target, counts add up, identities) and
the sensor/model mismatch cases the CLI relies on."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from evrt import geometry as geo
from evrt.errors import EvrtError
from evrt.events import EVENT_DTYPE, make_events

sizes = st.tuples(st.integers(1, 400), st.integers(1, 300))


def events_in(size, n, seed):
    rng = np.random.default_rng(seed)
    return make_events(np.sort(rng.integers(0, 10**6, n)), rng.integers(0, size[0], n),
                       rng.integers(0, size[1], n), rng.integers(0, 2, n))


def count_frame(ev, size):
    """(H, W) event counts, independent of the code under test."""
    f = np.zeros((size[1], size[0]), np.int64)
    np.add.at(f, (ev["y"].astype(np.int64), ev["x"].astype(np.int64)), 1)
    return f


@settings(max_examples=60, deadline=None)
@given(sensor=sizes, target=sizes, mode=st.sampled_from(geo.FIT_MODES), n=st.integers(0, 300),
       seed=st.integers(0, 2**16))
def test_fit_lands_inside_and_counts_add_up(sensor, target, mode, n, seed):
    ev = events_in(sensor, n, seed)
    out, dropped = geo.fit_to_sensor(ev, sensor, target, mode)
    assert out.dtype == EVENT_DTYPE
    assert len(out) + dropped == len(ev)
    assert geo.count_outside(out, target) == 0
    assert np.all(np.diff(out["t"].astype(np.int64)) >= 0)  # order (and times) kept
    if mode == "downsample":
        assert dropped == 0  # the whole scene always fits
    if sensor[0] <= target[0] and sensor[1] <= target[1]:
        assert out is ev and dropped == 0


@settings(max_examples=40, deadline=None)
@given(sensor=sizes, n=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_downsample_is_sum_pooling(sensor, n, seed):
    ev = events_in(sensor, 200, seed)
    out = geo.downsample(ev, n)
    small = (-(-sensor[0] // n), -(-sensor[1] // n))
    f = count_frame(ev, sensor)
    pad = np.zeros((small[1] * n, small[0] * n), np.int64)
    pad[:sensor[1], :sensor[0]] = f
    pooled = pad.reshape(small[1], n, small[0], n).sum(axis=(1, 3))
    np.testing.assert_array_equal(count_frame(out, small), pooled)


@settings(max_examples=40, deadline=None)
@given(sensor=sizes, x0=st.integers(-50, 50), y0=st.integers(-50, 50), w=st.integers(1, 100),
       h=st.integers(1, 100), seed=st.integers(0, 2**16))
def test_crop_keeps_exactly_the_box(sensor, x0, y0, w, h, seed):
    ev = events_in(sensor, 150, seed)
    out, dropped = geo.crop(ev, (x0, y0, w, h))
    inside = ((ev["x"].astype(int) >= x0) & (ev["x"].astype(int) < x0 + w)
              & (ev["y"].astype(int) >= y0) & (ev["y"].astype(int) < y0 + h))
    assert dropped == int((~inside).sum()) and len(out) == int(inside.sum())
    np.testing.assert_array_equal(out["x"].astype(int), ev["x"][inside].astype(int) - x0)
    np.testing.assert_array_equal(out["y"].astype(int), ev["y"][inside].astype(int) - y0)
    np.testing.assert_array_equal(out["t"], ev["t"][inside])
    np.testing.assert_array_equal(out["on"], ev["on"][inside])


@settings(max_examples=30, deadline=None)
@given(sensor=sizes, seed=st.integers(0, 2**16), fx=st.booleans(), fy=st.booleans())
def test_flip_twice_is_identity(sensor, seed, fx, fy):
    ev = events_in(sensor, 100, seed)
    once = geo.flip(ev, sensor, fx, fy)
    assert geo.count_outside(once, sensor) == 0
    back = geo.flip(once, sensor, fx, fy)
    np.testing.assert_array_equal(back, ev)
    if fx:
        np.testing.assert_array_equal(once["x"].astype(int), sensor[0] - 1 - ev["x"].astype(int))


def test_identities_return_the_input():
    ev = events_in((64, 48), 50, 1)
    assert geo.downsample(ev, 1) is ev
    assert geo.flip(ev, (64, 48)) is ev
    assert geo.crop(ev, (0, 0, 64, 48)) == (ev, 0)
    assert geo.drop_outside(ev, (64, 48)) == (ev, 0)
    assert geo.plan_fit((64, 48), (64, 48), "crop").identity


def test_drop_outside_counts():
    ev = make_events([0, 1, 2, 3], [0, 5, 9, 10], [0, 5, 9, 0], [1, 0, 1, 0])
    out, n = geo.drop_outside(ev, (10, 10))
    assert n == 1 and list(out["x"]) == [0, 5, 9]
    assert geo.count_outside(ev, (5, 5)) == 3
    assert geo.outside_mask(np.array([-1, 0]), np.array([0, 0]), (1, 1)).tolist() == [True, False]


@pytest.mark.parametrize("sensor", [(320, 240), (346, 260), (640, 480), (1280, 720)])
def test_downsample_default_keeps_the_scene(sensor):
    plan = geo.plan_fit(sensor, (128, 128))
    assert plan.mode == geo.DEFAULT_FIT == "downsample"
    n = plan.factor
    assert -(-sensor[0] // n) <= 128 and -(-sensor[1] // n) <= 128
    assert n == 1 or -(-sensor[0] // (n - 1)) > 128 or -(-sensor[1] // (n - 1)) > 128  # smallest such n
    ev = events_in(sensor, 5000, 3)
    out, dropped = plan.apply(ev)
    assert dropped == 0
    # the scene is centred: its corners map symmetrically inside 128 x 128
    corners = make_events([0, 1], [0, sensor[0] - 1], [0, sensor[1] - 1], [1, 1])
    c, _ = plan.apply(corners)
    assert abs(int(c["x"][0]) - (127 - int(c["x"][1]))) <= 1
    assert abs(int(c["y"][0]) - (127 - int(c["y"][1]))) <= 1


def test_crop_and_none_modes_on_a_big_sensor():
    ev = events_in((320, 240), 4000, 5)
    out, dropped = geo.fit_to_sensor(ev, (320, 240), (128, 128), "crop")
    keep = ((ev["x"] >= 96) & (ev["x"] < 224) & (ev["y"] >= 56) & (ev["y"] < 184))
    assert len(out) == keep.sum() and dropped == (~keep).sum()
    out, dropped = geo.fit_to_sensor(ev, (320, 240), (128, 128), "none")
    assert dropped == geo.count_outside(ev, (128, 128))
    np.testing.assert_array_equal(out, ev[(ev["x"] < 128) & (ev["y"] < 128)])


def test_a_smaller_sensor_is_used_as_is():
    ev = make_events([0, 1], [0, 33], [0, 33], [1, 0])
    for mode in geo.FIT_MODES:
        assert geo.plan_fit((34, 34), (128, 128), mode).identity
        out, dropped = geo.fit_to_sensor(ev, (34, 34), (128, 128), mode)
        assert out is ev and dropped == 0
    # larger in one dimension only: mapped, and still nothing of the scene lost with the default
    ev = make_events([0, 1], [0, 239], [0, 99], [1, 0])
    out, dropped = geo.fit_to_sensor(ev, (240, 100), (128, 128))
    assert dropped == 0 and list(out["x"]) == [4, 123] and list(out["y"]) == [39, 88]


def test_describe_fit_says_what_happens():
    ev = events_in((320, 240), 2000, 9)
    plan = geo.plan_fit((320, 240), (128, 128), "downsample")
    msg = geo.describe_fit(plan, ev)
    outside = 100 * geo.count_outside(ev, (128, 128)) / len(ev)
    assert f"{outside:.1f} % of the events would fall outside" in msg
    assert "divided by 3" in msg and msg.endswith("0.0 % dropped")
    area = geo.describe_fit(geo.plan_fit((320, 240), (128, 128), "crop"))
    assert f"{100 * (1 - 128 * 128 / (320 * 240)):.1f} % of the sensor area" in area
    assert area.endswith(f"{100 * (1 - 128 * 128 / (320 * 240)):.1f} % dropped")


def test_bad_arguments_are_one_line_errors():
    ev = events_in((8, 8), 5, 0)
    with pytest.raises(EvrtError, match="--fit must be one of"):
        geo.plan_fit((8, 8), (4, 4), "stretch")
    with pytest.raises(EvrtError, match="downsample factor"):
        geo.downsample(ev, 0)
    with pytest.raises(EvrtError, match="outside the 4x4 sensor"):
        geo.flip(ev[ev["x"] >= 4][:1] if (ev["x"] >= 4).any() else make_events([0], [5], [0], [1]), (4, 4), x=True)
    with pytest.raises(EvrtError, match="width and height"):
        geo.plan_fit((0, 8), (4, 4))
