import sys
import types

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import require, require_torch
from evrt.errors import EventError
from evrt.events import EVENT_DTYPE, make_events
from evrt.framing import (FrameSpec, StreamFramer, antialias_taps, clip_frames, event_bins, frame_bounds,
                          resize_frames)


def random_events(n, seed, sensor=(128, 128), t_max=10**6):
    rng = np.random.default_rng(seed)
    return make_events(np.sort(rng.integers(0, t_max, n)), rng.integers(0, sensor[0], n),
                       rng.integers(0, sensor[1], n), rng.integers(0, 2, n))


def spikingjelly_integrate():
    """spikingjelly's own ``integrate_events_by_fixed_frames_number``.

    ``spikingjelly.datasets`` imports torchvision at module level, and PyPI's torchvision wheel cannot
    load beside the CPU torch wheel here ("operator torchvision::nms does not exist"). The function we
    test is plain NumPy and uses nothing from torchvision, so a minimal stub with just the names the
    import touches (``torchvision.datasets.DatasetFolder``, ``torchvision.datasets.utils``,
    ``torchvision.transforms``) is placed in ``sys.modules`` first; the real spikingjelly code runs.
    """
    require_torch()
    require("spikingjelly")
    if "spikingjelly.datasets" not in sys.modules:
        try:
            import torchvision  # noqa: F401
        except Exception:
            for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
                del sys.modules[k]
            tv = types.ModuleType("torchvision")
            tv.datasets = types.ModuleType("torchvision.datasets")
            tv.datasets.DatasetFolder = type("DatasetFolder", (), {})
            tv.datasets.utils = types.ModuleType("torchvision.datasets.utils")
            tv.transforms = types.ModuleType("torchvision.transforms")
            stubs = {"torchvision": tv, "torchvision.datasets": tv.datasets,
                     "torchvision.datasets.utils": tv.datasets.utils, "torchvision.transforms": tv.transforms}
            sys.modules.update(stubs)
            try:
                import spikingjelly.datasets  # noqa: F401
            finally:  # the stub must not leak into other tests
                for k in stubs:
                    sys.modules.pop(k, None)
    import spikingjelly.datasets as sjds
    return sjds.integrate_events_by_fixed_frames_number


@pytest.mark.parametrize("n,T,sensor", [(0, 4, (16, 16)), (3, 10, (16, 16)), (10, 10, (16, 16)),
                                        (1001, 16, (128, 128)), (5000, 7, (32, 24)), (97, 5, (4, 4))])
def test_clip_frames_equal_spikingjelly(n, T, sensor):
    integrate = spikingjelly_integrate()
    ev = random_events(n, n + T, sensor)  # (4, 4) with 97 events: many duplicate pixels
    w, h = sensor
    d = {"t": ev["t"].astype(np.int64), "x": ev["x"].astype(np.int64), "y": ev["y"].astype(np.int64),
         "p": ev["on"].astype(np.int64)}
    ref = integrate(d, "number", T, h, w)
    got = clip_frames(ev, FrameSpec(T=T, sensor_size=sensor))
    assert got.shape == ref.shape == (T, 2, h, w) and got.dtype == np.float64
    np.testing.assert_array_equal(got, ref)


def test_frame_bounds_and_bins():
    np.testing.assert_array_equal(frame_bounds(10, 3), [0, 3, 6, 10])
    np.testing.assert_array_equal(frame_bounds(2, 4), [0, 0, 0, 0, 2])
    ev = random_events(23, 1)
    bins = list(event_bins(ev, 4))
    assert [len(b) for b in bins] == [5, 5, 5, 8]
    np.testing.assert_array_equal(np.concatenate(bins), ev)


def test_duplicates_count():
    ev = make_events([0, 1, 2, 3], [1, 1, 1, 2], [1, 1, 1, 2], [0, 0, 1, 1])
    f = clip_frames(ev, FrameSpec(T=1, sensor_size=(4, 4)))
    assert f[0, 0, 1, 1] == 2 and f[0, 1, 1, 1] == 1 and f[0, 1, 2, 2] == 1 and f.sum() == 4


def test_antialias_taps_match_spec():
    idx, w = antialias_taps(128, 64)
    np.testing.assert_allclose(w[0, :3], [3 / 7, 3 / 7, 1 / 7])
    np.testing.assert_array_equal(idx[0, :3], [0, 1, 2])
    np.testing.assert_allclose(w[63, :3], [1 / 7, 3 / 7, 3 / 7])
    np.testing.assert_array_equal(idx[63, :3], [125, 126, 127])
    for i in range(1, 63):
        np.testing.assert_array_equal(w[i], [1 / 8, 3 / 8, 3 / 8, 1 / 8])
        np.testing.assert_array_equal(idx[i], np.arange(2 * i - 1, 2 * i + 3))


@pytest.mark.parametrize("mode,dtype", [("avg2", np.float64), ("antialias", np.float32)])
def test_resize_matches_torch(mode, dtype):
    torch = require_torch()
    ev = random_events(30000, 7)
    base = clip_frames(ev, FrameSpec(T=4)).astype(dtype)
    ref = torch.nn.functional.interpolate(torch.from_numpy(base), size=(64, 64), mode="bilinear",
                                          antialias=(mode == "antialias"), align_corners=False).numpy()
    got = clip_frames(ev, FrameSpec(T=4, resize=mode), dtype=dtype)
    assert got.shape == (4, 2, 64, 64) and got.dtype == dtype
    # bit-exact: avg2 on counts is exact; antialias emulates torch's fused multiply-add
    np.testing.assert_array_equal(got, ref)
    # SpikingResformer's third channel is added in float32 after the resize, even for float64 output
    three = clip_frames(ev, FrameSpec(T=4, resize=mode, sum_channel=True), dtype=np.float64)
    np.testing.assert_array_equal(three[:, 2], (ref[:, 0] + ref[:, 1]).astype(np.float64))
    np.testing.assert_array_equal(three[:, :2], ref.astype(np.float64))
    # and the 2x2 average is what the no-antialias bilinear resize computes at half size
    if mode == "avg2":
        np.testing.assert_array_equal(got, base.reshape(4, 2, 64, 2, 64, 2).mean(axis=(3, 5)))


def test_sum_channel_and_spec_roundtrip():
    spec = FrameSpec(T=3, sensor_size=(32, 16), resize="antialias", sum_channel=True)
    assert FrameSpec.from_dict(spec.to_dict()) == spec
    assert spec.frame_shape == (3, 8, 16)
    f = clip_frames(random_events(500, 2, (32, 16)), spec, dtype=np.float32)
    assert f.shape == (3, 3, 8, 16)
    np.testing.assert_array_equal(f[:, 2], f[:, 0] + f[:, 1])
    with pytest.raises(ValueError):
        FrameSpec(T=3, resize="bicubic")


def test_clip_frames_rejects_events_outside_sensor():
    ev = make_events([0, 1], [3, 40], [0, 0], [1, 1])
    with pytest.raises(EventError, match="event 1"):
        clip_frames(ev, FrameSpec(T=1, sensor_size=(32, 32)))


def test_resize_none_identity():
    a = np.ones((1, 2, 4, 4))
    assert resize_frames(a, None) is a


# ----------------------------------------------------------------------------------------- streams
def _stream(draw_ts, xs):
    t = np.cumsum(np.asarray(draw_ts, np.int64))
    n = len(t)
    return make_events(t, np.asarray(xs[:n]) % 8, np.zeros(n, int), np.ones(n, int))


def _split(ev, cuts):
    cuts = sorted(set(c % (len(ev) + 1) for c in cuts))
    return np.split(ev, cuts)


gaps = st.lists(st.integers(0, 50), min_size=0, max_size=200)


@settings(max_examples=60, deadline=None)
@given(gaps=gaps, count=st.integers(1, 17), cuts=st.lists(st.integers(0, 1000), max_size=6))
def test_count_windows(gaps, count, cuts):
    ev = _stream(gaps, list(range(len(gaps))))
    fr = StreamFramer(count=count)
    wins = [w for packet in _split(ev, cuts) for w in fr.push_windows(packet)]
    tail = fr.flush_windows()
    assert all(len(w.events) == count for w in wins)
    assert len(tail) == (1 if len(ev) % count else 0)
    allw = wins + tail
    got = np.concatenate([w.events for w in allw]) if allw else np.zeros(0, EVENT_DTYPE)
    np.testing.assert_array_equal(got, ev)
    for w in allw:
        assert w.start_us == w.events["t"][0] and w.end_us == w.events["t"][-1] + 1


@settings(max_examples=60, deadline=None)
@given(gaps=st.lists(st.integers(0, 300), min_size=1, max_size=150), window=st.integers(1, 120),
       cuts=st.lists(st.integers(0, 1000), max_size=6), offset=st.integers(0, 50))
def test_time_windows(gaps, window, cuts, offset):
    ev = _stream(gaps, list(range(len(gaps))))
    start = int(ev["t"][0]) - offset
    fr = StreamFramer(window_us=window, start_us=start)
    wins = [w for packet in _split(ev, cuts) for w in fr.push_windows(packet)]
    wins += fr.flush_windows()
    np.testing.assert_array_equal(np.concatenate([w.events for w in wins]), ev)
    # consecutive, aligned to start, each exactly window_us long, events inside their window
    for k, w in enumerate(wins):
        assert w.start_us == start + k * window and w.end_us == w.start_us + window
        assert np.all((w.events["t"] >= w.start_us) & (w.events["t"] < w.end_us))
    # every window up to the last event exists, empty ones included
    assert len(wins) == (int(ev["t"][-1]) - start) // window + 1
    occupied = set(((ev["t"].astype(np.int64) - start) // window).tolist())
    assert {k for k, w in enumerate(wins) if len(w.events)} == occupied


def test_time_windows_default_start_and_gap():
    ev = make_events([100, 105, 190, 260], [0] * 4, [0] * 4, [1] * 4)
    fr = StreamFramer(window_us=50)
    wins = fr.push_windows(ev)
    # [100,150) [150,200) [200,250) closed; the gap window is empty but still a step
    assert [(len(w.events), w.start_us, w.end_us) for w in wins] == [(2, 100, 150), (1, 150, 200), (0, 200, 250)]
    assert [len(w) for w in fr.flush()] == [1]
    assert fr.flush() == []
    # the next window continues the grid
    assert [(w.start_us, w.end_us) for w in fr.push_windows(make_events([420], [0], [0], [1]))] == \
        [(300, 350), (350, 400)]


def test_stream_rejects_time_going_backwards():
    fr = StreamFramer(window_us=10)
    fr.push(make_events([5, 8], [0, 0], [0, 0], [1, 1]))
    with pytest.raises(EventError, match="before"):
        fr.push(make_events([7], [0], [0], [1]))
    with pytest.raises(EventError, match="event 1"):
        StreamFramer(window_us=10).push(make_events([5, 3], [0, 0], [0, 0], [1, 1]))
    with pytest.raises(ValueError):
        StreamFramer(count=3, window_us=5)
