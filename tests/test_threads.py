"""Several threads inside a step give the one-thread results bit for bit (kernels, counts, whole
models), the parallel kernels equal their NumPy twins, and the thread API behaves (docs/INTERNALS.md
"Threads")."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import evrt.kernels as K
from evrt.kernels import attention as KA
from evrt.kernels import conv as KC
from evrt.kernels import linear as KL
from evrt.kernels import pool as KP
from evrt.kernels import dense as D
from evrt.kernels import matmul as KM
from evrt.kernels import neurons as KN
from evrt.kernels import threads as T

from conftest import in_threads

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _restore_threads():
    before = T.get_threads()
    yield
    T.set_threads(before)


@pytest.fixture(autouse=True)
def small_parallel(monkeypatch):
    """Let the small test arrays take the parallel paths that real layers take."""
    monkeypatch.setattr(KN, "PAR_MIN_NEURONS", 1)
    monkeypatch.setattr(KN, "PAR_MIN_NEURONS_PER_ELEMENT", 1)
    monkeypatch.setattr(KC, "PAR_MIN_ELEMENTS", 1)
    monkeypatch.setattr(KC, "PAR_MIN_PAIRS", 0)
    monkeypatch.setattr(KL, "PAR_MIN_PAIRS", 0)
    monkeypatch.setattr(KP, "PAR_MIN_ELEMENTS", 1)
    monkeypatch.setattr(KA, "PAR_MIN_TERMS", 1)


def at(n, fn, *args):
    """fn(*args) with n threads; returns fn's result."""
    T.set_threads(n)
    return fn(*args)


def spikes(rng, shape, density, kind="spike", dtype=np.float32):
    mask = rng.random(shape) < density
    if kind == "spike":
        vals = np.ones(shape)
    elif kind == "count":
        vals = rng.integers(1, 4, shape)
    else:
        vals = rng.standard_normal(shape)
    return np.where(mask, vals, 0).astype(dtype)


CONVS = [  # h, w, cin, cout, groups, k, stride, pad
    (17, 13, 24, 40, 1, 3, 1, 1), (16, 16, 64, 64, 2, 3, 2, 1), (12, 9, 96, 96, 3, 3, 1, 1),
    (20, 20, 16, 48, 1, 1, 1, 0), (9, 31, 8, 8, 8, 3, 1, 1), (33, 7, 5, 7, 1, 5, 2, 2)]


@pytest.mark.parametrize("case", CONVS)
@pytest.mark.parametrize("kind", ["spike", "count", "real"])
@pytest.mark.parametrize("path", [2.0, -1.0, None])   # event path, dense path, the measured choice
def test_conv_threads_bit_identical(case, kind, path):
    h, w, cin, cout, groups, k, stride, pad = case
    rng = np.random.default_rng(hash((case, kind)) % 2**32)
    x = spikes(rng, (h, w, cin), 0.2, kind)
    wt = rng.standard_normal((k, k, cin // groups, cout)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    outs, counts = [], []
    for n in (1, 2, 3):
        o = np.full((ho, wo, cout), np.nan, np.float32)
        counts.append(at(n, K.conv2d_scatter, x, wt, b, stride, pad, groups, o, path))
        outs.append(o)
    for o, c in zip(outs[1:], counts[1:]):
        assert np.array_equal(o, outs[0]) and c == counts[0]


@pytest.mark.parametrize("density", [0.0, 0.05, 0.4, 1.0])
def test_conv_parallel_equals_numpy_twin(density):
    """With small integer weights every sum is exact: the parallel event path equals the twin exactly."""
    rng = np.random.default_rng(3)
    x = spikes(rng, (23, 19, 32), density, "count")
    w = rng.integers(-3, 4, (3, 3, 32, 48)).astype(np.float32)
    b = rng.integers(-3, 4, 48).astype(np.float32)
    o = np.empty((23, 19, 48), np.float32)
    T.set_threads(2)
    c = K.conv2d_scatter(x, w, b, 1, 1, 1, o, dense_above=2.0)
    assert np.array_equal(o, D.conv2d(x, w, b, 1, 1, 1))
    assert (c.pairs, c.weighted) == D.conv2d_counts(x, 3, 3, 1, 1, 1, 48)


def test_counts_parallel_equal_serial():
    rng = np.random.default_rng(4)
    for kind in ("spike", "count", "real"):
        x = spikes(rng, (21, 17, 40), 0.3, kind, np.float64)
        nnz, pairs, weighted, rn, ro = KC.conv2d_counts_par(x, 3, 3, 2, 1, 11, 9, 16)
        assert (nnz, pairs, weighted) == KC.conv2d_counts(x, 3, 3, 2, 1, 11, 9, 16)
        assert rn.tolist() == np.count_nonzero(x, axis=(1, 2)).tolist()
        assert ro.tolist() == np.count_nonzero((x != 0) & (x != 1), axis=(1, 2)).tolist()
        rn2, ro2 = KC.row_nonzeros_par(x)
        assert rn2.tolist() == rn.tolist() and ro2.tolist() == ro.tolist()


def test_row_bands_cover_rows_in_order():
    for work in (np.zeros(5), np.ones(7), np.array([0, 0, 9, 0, 1, 0, 0, 5.0]), np.array([3.0])):
        for n in (1, 2, 3, 8):
            b = KC.row_bands(work, n)
            assert b[0] == 0 and b[-1] == work.size and np.all(np.diff(b) >= 1) and len(b) <= n + 1


@pytest.mark.parametrize("n_in", [1, 33, 64, 300])
@pytest.mark.parametrize("path", [2.0, -1.0])
def test_linear_threads_bit_identical(n_in, path):
    rng = np.random.default_rng(n_in)
    x = spikes(rng, (n_in, 96), 0.3)
    w = rng.standard_normal((96, 70)).astype(np.float32)
    b = rng.standard_normal(70).astype(np.float32)
    res = []
    for n in (1, 2):
        o = np.empty((n_in, 70), np.float32)
        res.append((o, at(n, K.linear_scatter, x, w, b, o, path)))
    assert np.array_equal(res[0][0], res[1][0]) and res[0][1] == res[1][1]


@pytest.mark.parametrize("m,k,n", [(4096, 288, 64), (1024, 576, 128), (256, 1152, 256), (333, 4096, 77),
                                   (64, 2304, 256), (4096, 1024, 256), (64, 256, 1024), (64, 1024, 256),
                                   (100, 4096, 300)])
def test_matmul_row_bands_equal_one_call(m, k, n):
    """The dense paths' matmul split into row bands equals one BLAS call bit for bit."""
    rng = np.random.default_rng(m + k)
    a = spikes(rng, (m, k), 0.4)
    b = rng.standard_normal((k, n)).astype(np.float32)
    T.set_threads(1)
    want = a @ b
    for threads in (2, 3, 4):
        out = np.full((m, n), np.nan, np.float32)
        KM.matmul(a, b, out, threads)
        assert np.array_equal(out, want)
    for cuts, size in ((KM.row_bands(m, k, n, 4), m), (KM.col_bands(m, k, n, 4), n)):
        assert cuts[0] == 0 and cuts[-1] == size and all(c % 64 == 0 for c in cuts[1:-1])
        assert all(c1 - c0 >= 64 for c0, c1 in zip(cuts, cuts[1:])) or len(cuts) == 2


@pytest.mark.parametrize("kind", ["lif", "if", "table"])
@pytest.mark.parametrize("shape", [(5, 7, 3), (64, 64, 32), (3, 100, 33), (2, 50, 4099)])
@pytest.mark.parametrize("per", ["channel", "element"])
def test_neurons_threads_bit_identical(kind, shape, per):
    """Per-channel parameters (rows of a few channels) and per-element ones (one long row, split inside)."""
    rng = np.random.default_rng(len(shape) + shape[0])
    c = shape[-1] if per == "channel" else int(np.prod(shape))
    xs = [rng.standard_normal(shape).astype(np.float32) for _ in range(4)]
    vth = (rng.random(c) + 0.5).astype(np.float32)
    tab = [rng.standard_normal(c).astype(np.float32) for _ in range(3)] + [np.sign(rng.standard_normal(c)).astype(np.float32)]
    res = []
    for n in (1, 2, 3):
        T.set_threads(n)
        v = np.zeros(shape, np.float32)
        s, h = np.empty(shape, np.float32), np.empty(shape, np.float32)
        steps = []
        for x in xs:
            if kind == "lif":
                cnt = K.lif_step(x, v, np.float32(0.5), vth, s, h)
            elif kind == "if":
                cnt = K.if_step(x, v, vth, s, h)
            else:
                cnt = K.table_step(x, v, *tab, np.float32(0.5), s, h)
            steps.append((cnt, s.copy(), h.copy(), v.copy()))
        res.append(steps)
    for other in res[1:]:
        for (c1, s1, h1, v1), (c2, s2, h2, v2) in zip(res[0], other):
            assert c1 == c2 and np.array_equal(s1, s2) and np.array_equal(h1, h2) and np.array_equal(v1, v2)


def test_neurons_parallel_equal_numpy_twin(small_parallel):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((40, 40, 16)).astype(np.float32)
    vth = (rng.random(16) + 0.5).astype(np.float32)
    T.set_threads(2)
    v = (rng.standard_normal(x.shape) * 0.3).astype(np.float32)
    s_want, v_want = D.lif_step(x, v.copy(), np.float32(0.5), vth)[:2]
    s = np.empty_like(x)
    n = K.lif_step(x, v, np.float32(0.5), vth, s, np.zeros(0, np.float32))
    assert np.array_equal(s, s_want) and np.array_equal(v, v_want) and n == int(s_want.sum())


@pytest.mark.parametrize("shape,k,stride,pad", [((17, 15, 8), 3, 2, 1), ((64, 64, 32), 3, 2, 1), ((8, 8, 3), 2, 2, 0)])
def test_maxpool_threads(shape, k, stride, pad):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    ho, wo = (shape[0] + 2 * pad - k) // stride + 1, (shape[1] + 2 * pad - k) // stride + 1
    outs = []
    for n in (1, 2):
        o = np.empty((ho, wo, shape[2]), np.float32)
        at(n, K.maxpool2d, x, k, stride, pad, o)
        outs.append(o)
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[1], D.maxpool2d(x, k, stride, pad))


@pytest.mark.parametrize("kind", ["spike", "count"])
def test_attention_threads(kind):
    rng = np.random.default_rng(5)
    q, k, v = (spikes(rng, (64, 128), 0.3, kind) for _ in range(3))
    res = []
    for n in (1, 2):
        o = np.empty((64, 128), np.float32)
        res.append((o, at(n, K.ssa, q, k, v, 8, o)))
    assert np.array_equal(res[0][0], res[1][0]) and res[0][1] == res[1][1]
    y = rng.standard_normal((40, 2 * 48)).astype(np.float32)
    s = spikes(rng, (300, 48), 0.2, kind)
    res = []
    for n in (1, 2, 3):
        o = np.empty((3, 40, 300), np.float32)
        res.append((o, at(n, K.dssa_scores, y, s, 3, o)))
    assert all(np.array_equal(res[0][0], r[0]) and res[0][1] == r[1] for r in res[1:])
    sa = spikes(rng, (3, 40, 300), 0.2, kind)
    res = []
    for n in (1, 2, 4):
        o = np.empty((300, 48), np.float32)
        res.append((o, at(n, K.dssa_out, y, sa, 3, o)))
    assert all(np.array_equal(res[0][0], r[0]) and res[0][1] == r[1] for r in res[1:])


def test_attention_parallel_equals_numpy_twin():
    rng = np.random.default_rng(6)
    y = rng.integers(-4, 5, (16, 64)).astype(np.float32)     # integers: exact sums in any order
    s = spikes(rng, (200, 32), 0.3)
    T.set_threads(2)
    o = np.empty((2, 16, 200), np.float32)
    acs = K.dssa_scores(y, s, 2, o)
    assert (o.tolist(), acs) == (lambda r: (r[0].tolist(), r[1]))(D.dssa_scores(y, s, 2))
    sa = spikes(rng, (2, 16, 200), 0.3)
    o2 = np.empty((200, 32), np.float32)
    acs = K.dssa_out(y, sa, 2, o2)
    want, want_acs = D.dssa_out(y, sa, 2)
    assert np.array_equal(o2, want) and acs == want_acs


# ------------------------------------------------------------------------------------------ models

ZOO = sorted(p.parent.name for p in (ROOT / "models").glob("*/model.evrt"))


def _model_input(sess, rng):
    """Frames or events for a few steps of the model's input."""
    from evrt.events import EVENT_DTYPE
    shape = sess.impls[0].out_shape
    frame = sess.meta.get("frame") or {}
    w, h = (frame.get("sensor_size") or (shape[1], shape[0]))[:2]
    steps = []
    for _ in range(4):
        n = 3000
        ev = np.zeros(n, EVENT_DTYPE)
        ev["x"] = rng.integers(0, w, n)
        ev["y"] = rng.integers(0, h, n)
        ev["on"] = rng.integers(0, 2, n).astype(bool)
        ev["t"] = np.sort(rng.integers(0, 10_000, n))
        steps.append(ev)
    return steps


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_threads_bit_identical(name):
    """Spikes of every neuron layer, step outputs and AC/MAC counts at 1 and 2 threads."""
    from evrt.engine import Session
    runs = []
    for n in (1, 2):
        sess = Session(ROOT / "models" / name / "model.evrt", threads=n)
        sess.trace = True
        steps = _model_input(sess, np.random.default_rng(11))
        outs = [sess.step(x) for x in steps]
        rep = sess.report()
        runs.append(([o.logits for o in outs], [(o.acs, o.macs) for o in outs],
                     {k: [s for s, _ in v] for k, v in sess.traces.items()},
                     [(r["name"], r["acs"], r["macs"], r["spikes"]) for r in rep.rows()]))
    (l1, c1, t1, r1), (l2, c2, t2, r2) = runs
    assert all(np.array_equal(a, b) for a, b in zip(l1, l2))
    assert c1 == c2 and r1 == r2
    assert t1.keys() == t2.keys() and t1
    for key in t1:
        assert all(np.array_equal(a, b) for a, b in zip(t1[key], t2[key])), key


# ------------------------------------------------------------------------------------------ API

def test_thread_api(monkeypatch):
    assert T.set_threads(1) == 1 and T.get_threads() == 1
    assert T.set_threads(None) == min(T.usable_cores(), __import__("numba").config.NUMBA_NUM_THREADS)
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError):
            T.set_threads(bad)
    monkeypatch.setenv("EVRT_THREADS", "zero")
    with pytest.raises(ValueError, match="EVRT_THREADS"):
        T._from_env()
    monkeypatch.setenv("EVRT_THREADS", "1")
    assert T._from_env() == 1
    T.set_threads(2)
    assert T.blas_threads() in (None, 1)      # BLAS never gets threads of its own


def test_session_threads_argument():
    from evrt.engine import Session
    from evrt.errors import GraphError
    path = next((ROOT / "models").glob("*/model.evrt"))
    Session(path, threads=1)
    assert T.get_threads() == 1
    with pytest.raises(GraphError, match="threads"):
        Session(path, threads=0)


def test_parallel_variants_are_the_ones_run(monkeypatch):
    """At 2 threads the kernels above really take their parallel variants (else the checks above
    would compare the serial kernel with itself)."""
    called = []

    def spy(mod, name):
        real = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a: called.append(name) or real(*a))

    for mod, name in ((KC, "_conv_scatter_par"), (KC, "conv2d_counts_par"), (KC, "_im2col_par"),
                      (KP, "_maxpool2d_par"), (KA, "_dssa_out_par"), (KA, "_dssa_scores_par"), (KA, "_ssa_par")):
        spy(mod, name)
    rng = np.random.default_rng(0)
    x = spikes(rng, (16, 16, 8), 0.2)
    w = rng.standard_normal((3, 3, 8, 16)).astype(np.float32)
    o = np.empty((16, 16, 16), np.float32)
    T.set_threads(2)
    K.conv2d_scatter(x, w, np.zeros(16, np.float32), 1, 1, 1, o, 2.0)
    K.conv2d_scatter(x, w, np.zeros(16, np.float32), 1, 1, 1, o, -1.0)
    K.maxpool2d(x, 3, 2, 1, np.empty((8, 8, 8), np.float32))
    y = rng.standard_normal((8, 16)).astype(np.float32)
    K.dssa_scores(y, spikes(rng, (256, 8), 0.3), 2, np.empty((2, 8, 256), np.float32))
    K.dssa_out(y, spikes(rng, (2, 8, 256), 0.3), 2, np.empty((256, 8), np.float32))
    q = spikes(rng, (8, 16), 0.3)
    K.ssa(q, q, q, 2, np.empty((8, 16), np.float32))
    assert sorted(set(called)) == sorted(["_conv_scatter_par", "conv2d_counts_par", "_im2col_par", "_maxpool2d_par",
                                          "_dssa_out_par", "_dssa_scores_par", "_ssa_par"])


def test_sessions_in_several_python_threads(monkeypatch):
    """Two Python threads stepping their own sessions at once (as several streams may) at 2 threads each
    give the results of one session alone."""
    from evrt.engine import Session
    path = ROOT / "models" / "spikingresformer-synth-gesture" / "model.evrt"
    steps = _model_input(Session(path, threads=1), np.random.default_rng(2))
    want = [o.logits for o in (lambda s: [s.step(x) for x in steps])(Session(path, threads=1))]
    T.set_threads(2)

    def run(i):
        sess = Session(path)
        return [sess.step(x).logits for x in steps * 3]

    got = in_threads(run)
    assert len(got) == 2
    for res in got:
        assert all(np.array_equal(a, b) for a, b in zip(res[:len(want)], want))


def test_bad_env_threads_is_a_one_line_error(monkeypatch):
    from evrt.engine import Session
    from evrt.errors import GraphError
    monkeypatch.setitem(T._state, "n", None)
    monkeypatch.setenv("EVRT_THREADS", "many")
    with pytest.raises(GraphError, match="EVRT_THREADS='many'"):
        Session(next((ROOT / "models").glob("*/model.evrt")))
