"""`evrt replay` and `evrt eval` through evrt.cli.main, on the toy model and small generated recordings."""
import json
import threading
import time

import numpy as np
import pytest

from evrt.cli import main
from evrt.datasets.dvsgesture import CLASS_NAMES, SPIKINGJELLY_ORDER
from evrt.engine import Session
from evrt.events import make_events
from evrt.formats.aedat31 import write_aedat31, write_labels_csv
from evrt.formats.npz import write_npz
from evrt.toy import toy_graph

SENSOR = (128, 128)


def blob_events(seed, n, t0, t1):
    """n events in [t0, t1) around a random centre (so samples differ for the model)."""
    rng = np.random.default_rng(seed)
    cx, cy = rng.integers(16, 112, 2)
    x = np.clip(rng.normal(cx, 8, n).round(), 0, 127)
    y = np.clip(rng.normal(cy, 8, n).round(), 0, 127)
    return make_events(np.sort(rng.integers(t0, t1, n)), x, y, rng.integers(0, 2, n))


def recording(seed, gestures, n=1500, slot_us=150_000):
    """Events of consecutive samples (each [k*slot + slot/6, k*slot + 5 slot/6)) plus a little noise
    between them, and the label rows (class 1..11, start, end) of the samples."""
    parts, rows = [], []
    for k, g in enumerate(gestures):
        a, b = k * slot_us + slot_us // 6, k * slot_us + 5 * slot_us // 6
        parts.append(blob_events(seed * 100 + k, n, a, b))
        rows.append((g + 1, a, b))
    parts.append(blob_events(seed * 100 + 99, 200, 0, len(gestures) * slot_us))
    ev = np.concatenate(parts)
    return ev[np.argsort(ev["t"], kind="stable")], rows


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The same toy network saved twice: outputs in recording (gesture id) order, and permuted into
    spikingjelly's order with its class names — both must score identically. Plus one with names that
    match no gesture."""
    d = tmp_path_factory.mktemp("models")
    g = toy_graph(seed=5, T=4, sensor=SENSOR, channels=8, num_classes=11)
    g.meta["classes"] = list(CLASS_NAMES)
    g.save(d / "recording.evrt")
    perm = np.array(SPIKINGJELLY_ORDER)
    head = g.op("head")
    head.params["w"] = head.params["w"][:, perm].copy()
    head.params["b"] = head.params["b"][perm].copy()
    g.meta["classes"] = [CLASS_NAMES[i] for i in perm]
    g.save(d / "spikingjelly.evrt")
    toy = toy_graph(seed=5, T=4, sensor=SENSOR, channels=8, num_classes=11)  # names class_0..class_10
    toy.save(d / "unnamed.evrt")
    return {k: str(d / f"{k}.evrt") for k in ("recording", "spikingjelly", "unnamed")}


USERS = {"user01_led": [0, 3, 7, 10], "user02_fluorescent": [1, 2, 5, 9], "user03_natural": [4, 6, 8]}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The same samples in the original DVS128 Gesture layout and in tonic's layout."""
    root = tmp_path_factory.mktemp("gesture")
    orig, tonic = root / "DvsGesture", root / "DVSGesture" / "ibmGestureTest"
    orig.mkdir()
    samples = []
    for u, (name, gestures) in enumerate(USERS.items()):
        ev, rows = recording(u + 1, gestures)
        write_aedat31(orig / f"{name}.aedat", ev)
        write_labels_csv(orig / f"{name}_labels.csv", rows)
        (tonic / name).mkdir(parents=True)
        for c, a, b in rows:
            s = ev[(ev["t"] >= a) & (ev["t"] < b)]
            arr = np.stack([s["x"], s["y"], s["on"], s["t"] / 1000.0], axis=1).astype(np.float64)
            np.save(tonic / name / f"{c - 1}.npy", arr)
            samples.append((s, c - 1))
    names = "\n".join(f"{n}.aedat" for n in USERS) + "\n"
    (orig / "trials_to_test.txt").write_text(names)
    (orig / "trials_to_train.txt").write_text(names)
    return {"original": str(orig), "tonic": str(root / "DVSGesture"), "samples": samples}


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def json_lines(out):
    return [json.loads(line) for line in out.splitlines()]  # fails on any non-JSON line


# ------------------------------------------------------------------------------------------------ eval
def test_eval_matches_an_independent_loop_on_both_layouts_and_label_orders(capsys, models, dataset):
    sess = Session(models["recording"], "float32")
    correct = sum(CLASS_NAMES[sess.run_clip(ev).class_index] == CLASS_NAMES[g] for ev, g in dataset["samples"])
    n = len(dataset["samples"])
    results = []
    for layout in ("original", "tonic"):
        for model in ("recording", "spikingjelly"):
            code, out, err = cli(capsys, "eval", "--dataset", "dvsgesture", "--root", dataset[layout],
                                 "--model", models[model], "--json")
            assert code == 0, err
            (res,) = json_lines(out)
            assert res["layout"] == layout and res["n"] == n
            assert res["accuracy"] == pytest.approx(correct / n)
            assert np.sum(res["confusion"]) == n
            assert sum(v["n"] for v in res["per_class"].values()) == n
            assert res["mean_acs"] > 0 and res["mean_energy_pj"] > 0
            assert err == ""  # no progress bar when --json (and stderr is not a TTY anyway)
            results.append(res)
    # identical figures whatever the layout or the model's output order
    for r in results[1:]:
        assert r["confusion"] == results[0]["confusion"]
        assert [p["pred"] for p in r["predictions"]] == [p["pred"] for p in results[0]["predictions"]]


def test_eval_text_output_and_limit(capsys, models, dataset):
    code, out, _ = cli(capsys, "eval", "--dataset", "dvsgesture", "--root", dataset["original"],
                       "--model", models["spikingjelly"], "--limit", "3", "--precision", "float64")
    assert code == 0
    assert "confusion matrix" in out and "per sample" in out and "3 samples" in out
    # a label order that contradicts the model's names is refused; an agreeing one is accepted
    code, _, err = cli(capsys, "eval", "--dataset", "dvsgesture", "--root", dataset["original"],
                       "--model", models["spikingjelly"], "--label-order", "recording", "--limit", "1")
    assert code == 2 and "contradicts" in err
    code, _, _ = cli(capsys, "eval", "--dataset", "dvsgesture", "--root", dataset["original"],
                     "--model", models["spikingjelly"], "--label-order", "spikingjelly", "--limit", "1", "--json")
    assert code == 0


def test_eval_label_order_maps_a_model_without_gesture_names(capsys, models, dataset):
    """`unnamed` is the `recording` network with placeholder names: --label-order recording scores it."""
    root = dataset["original"]
    runs = [cli(capsys, "eval", "--dataset", "dvsgesture", "--root", root, "--model", models[m], "--json", *extra)
            for m, extra in (("recording", []), ("unnamed", ["--label-order", "recording"]))]
    assert [r[0] for r in runs] == [0, 0]
    a, b = (json_lines(r[1])[0] for r in runs)
    assert a["confusion"] == b["confusion"] and a["accuracy"] == b["accuracy"]


TIMING = {"wall_s", "compute_s", "samples_per_s", "warmup_s", "workers"}


def test_eval_workers_give_results_identical_to_one_worker(capsys, models, dataset):
    """Predictions (with confidences), confusion, counters, NeuroBench figures, fit statistics: the
    same with 1, 2 and 3 worker processes; only the timings differ."""
    runs = {}
    for w in (1, 2, 3):
        code, out, err = cli(capsys, "eval", "--dataset", "dvsgesture", "--root", dataset["tonic"],
                             "--model", models["recording"], "--workers", w, "--json")
        assert code == 0, err
        (runs[w],) = json_lines(out)
        assert runs[w]["workers"] == w
    assert runs[1]["mean_acs"] > 0 and len(runs[1]["predictions"]) == len(dataset["samples"])
    for w in (2, 3):
        assert {k: v for k, v in runs[w].items() if k not in TIMING} == \
            {k: v for k, v in runs[1].items() if k not in TIMING}
    code, out, _ = cli(capsys, "eval", "--dataset", "dvsgesture", "--root", dataset["tonic"],
                       "--model", models["recording"], "--workers", 2)
    assert code == 0 and "2 workers" in out and "confusion matrix" in out


@pytest.mark.parametrize("serial_below, used", [(1e9, 1), (0.0, 2)])
def test_default_workers_adapt_and_give_the_same_results(capsys, monkeypatch, models, dataset, serial_below, used):
    """Without --workers: sample 0 runs in this process; the rest stays here when the run is short, or goes
    to the workers (then sample 0's counters, already in this session, are not added twice)."""
    from evrt import parallel
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    monkeypatch.setattr(parallel, "SERIAL_BELOW_S", serial_below)
    runs = []
    for extra in (["--workers", "1"], []):
        code, out, err = cli(capsys, "eval", "--dataset", "dvsgesture", "--root", dataset["tonic"],
                             "--model", models["recording"], "--json", *extra)
        assert code == 0, err
        runs.append(json_lines(out)[0])
    assert runs[1]["workers"] == used
    assert {k: v for k, v in runs[1].items() if k not in TIMING} == {k: v for k, v in runs[0].items() if k not in TIMING}


def test_spawned_workers_give_the_same_results(capsys, monkeypatch, models, dataset):
    """The start method used when a numba thread pool already runs in the parent."""
    from evrt import parallel
    runs = []
    for w, method in ((1, "fork"), (2, "spawn")):
        monkeypatch.setattr(parallel, "start_method", lambda m=method: m)
        code, out, err = cli(capsys, "eval", "--dataset", "dvsgesture", "--root", dataset["original"],
                             "--model", models["spikingjelly"], "--workers", w, "--json")
        assert code == 0, err
        runs.append({k: v for k, v in json_lines(out)[0].items() if k not in TIMING})
    assert runs[0] == runs[1]


def _tonic_copy(tmp_path, dataset):
    import shutil
    root = tmp_path / "copy"
    shutil.copytree(dataset["tonic"], root)
    return root, sorted((root / "ibmGestureTest").rglob("*.npy"))


def test_eval_workers_bad_sample_is_one_line(capsys, tmp_path, models, dataset):
    root, files = _tonic_copy(tmp_path, dataset)
    files[3].write_bytes(b"\x93NUMPY garbage")
    for w in (1, 2):
        code, out, err = cli(capsys, "eval", "--dataset", "dvsgesture", "--root", root, "--model",
                             models["recording"], "--workers", w, "--json")
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
        assert err.startswith("evrt eval: error:") and files[3].name in err


def test_eval_worker_crash_is_one_line_and_leaves_no_process(capsys, monkeypatch, models, dataset):
    import multiprocessing
    import os
    import signal

    from evrt import parallel
    real = parallel.read_sample

    def dies_on_sample_2(ds, plan, i):
        if i == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(ds, plan, i)
    monkeypatch.setattr(parallel, "read_sample", dies_on_sample_2)
    monkeypatch.setattr(parallel, "start_method", lambda: "fork")   # the workers inherit the patch
    code, out, err = cli(capsys, "eval", "--dataset", "dvsgesture", "--root", dataset["tonic"],
                         "--model", models["recording"], "--workers", 2, "--json")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "worker process died" in err
    assert multiprocessing.active_children() == []


def test_interrupted_parallel_eval_stops_its_workers(models, dataset):
    import multiprocessing

    from evrt import parallel
    job = parallel.EvalJob(models["recording"], "float32", "dvsgesture", dataset["tonic"], "test", "recording",
                           "downsample")
    seen = []

    def interrupt(r):
        seen.append(r["index"])
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        parallel.run_parallel(job, len(dataset["samples"]), 2, interrupt)
    assert seen == [0] and multiprocessing.active_children() == []


@pytest.mark.parametrize("args, message", [
    (["--dataset", "dvsgesture", "--root", "{missing}"], "does not exist"),
    (["--dataset", "mnist-dvs", "--root", "{root}"], "unknown dataset"),
    (["--dataset", "dvsgesture", "--root", "{root}", "--split", "all"], "has no 'all' split"),
    (["--dataset", "dvsgesture", "--root", "{empty}"], "neither"),
    (["--dataset", "dvsgesture", "--root", "{root}", "--model", "{unnamed}"], "match no dataset class"),
    (["--dataset", "dvsgesture", "--root", "{root}", "--model", "{nofile}"], "does not exist"),
])
def test_eval_errors_are_one_line_with_exit_code_2(capsys, tmp_path, models, dataset, args, message):
    subst = {"missing": tmp_path / "nope", "root": dataset["original"], "empty": tmp_path,
             "unnamed": models["unnamed"], "nofile": tmp_path / "x.evrt"}
    argv = ["eval"] + [a.format(**subst) for a in args]
    if "--model" not in argv:
        argv += ["--model", models["recording"]]
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err and err.startswith("evrt eval: error:")


# ---------------------------------------------------------------------------------------------- replay
@pytest.fixture(scope="module")
def labelled_npz(tmp_path_factory, models):
    """An npz recording with labels in the model's output space (0..10)."""
    ev, rows = recording(7, [2, 5, 8], n=1200)
    path = tmp_path_factory.mktemp("rec") / "rec.npz"
    labels = np.array([(c - 1, a, b) for c, a, b in rows], np.int64)
    write_npz(path, ev, sensor_size=SENSOR, labels=labels)
    return str(path), ev, labels


def test_replay_json_one_sample_prediction_per_label(capsys, models, labelled_npz):
    path, ev, labels = labelled_npz
    code, out, err = cli(capsys, "replay", path, "--model", models["recording"], "--speed", "max",
                         "--count", "500", "--json")
    assert code == 0, err
    lines = json_lines(out)
    kinds = [l["type"] for l in lines]
    assert kinds[-1] == "summary" and kinds.count("summary") == 1
    preds = [l for l in lines if l["type"] == "prediction"]
    samples = [l for l in lines if l["type"] == "sample"]
    assert len(preds) == -(-len(ev) // 500)  # every 500 events, plus the last partial window
    assert [p["step"] for p in preds] == list(range(len(preds)))
    assert sum(p["n_events"] for p in preds) == len(ev)
    assert len(samples) == len(labels) and sorted(s["index"] for s in samples) == [0, 1, 2]
    # each labelled sample is the clip-mode prediction of its [start, end) segment
    sess = Session(models["recording"], "float32")
    for s in samples:
        lab, a, b = labels[s["index"]]
        seg = ev[(ev["t"] >= a) & (ev["t"] < b)]
        k = sess.run_clip(seg).class_index
        assert s["class_index"] == k and s["pred"] == CLASS_NAMES[k] and s["true"] == CLASS_NAMES[lab]
        assert s["correct"] == (k == lab) and s["events"] == len(seg)
    summary = lines[-1]
    assert summary["events"] == len(ev) and summary["steps"] == len(preds)
    assert summary["samples"] == 3 and summary["sample_accuracy"] == sum(s["correct"] for s in samples) / 3
    assert summary["acs"] == sum(p["acs"] for p in preds) and summary["acs_per_s"] > 0
    assert summary["events_per_s"] > 0 and summary["realtime_factor"] > 0 and summary["warmup_s"] >= 0
    assert summary["dropped_events"] == 0


def test_replay_aedat31_with_csv_labels_text_output(capsys, tmp_path, models):
    ev, rows = recording(9, [0, 10], n=1000)
    write_aedat31(tmp_path / "user09_led.aedat", ev)
    write_labels_csv(tmp_path / "user09_led_labels.csv", rows)
    code, out, err = cli(capsys, "replay", tmp_path / "user09_led.aedat", "--model", models["spikingjelly"],
                         "--speed", "max", "--window-us", "20000", "--mode", "clip")
    assert code == 0, err
    assert out.count("sample ") == 2 and "true hand_clap" in out and "true other" in out
    assert "real-time factor" in out and "labelled samples: accuracy" in out
    assert "events/s" in out and "dropped events: 0" in out


def test_replay_without_labels_and_continuous_mode(capsys, tmp_path, models):
    ev = blob_events(3, 800, 0, 100_000)
    write_npz(tmp_path / "plain.npz", ev)
    code, out, _ = cli(capsys, "replay", tmp_path / "plain.npz", "--model", models["recording"], "--speed",
                       "max", "--window-us", "10000", "--json")
    assert code == 0
    lines = json_lines(out)
    assert not [l for l in lines if l["type"] == "sample"]
    preds = [l for l in lines if l["type"] == "prediction"]
    assert len(preds) >= 9 and all(p["end_us"] - p["start_us"] == 10_000 for p in preds)
    assert lines[-1]["samples"] == 0 and lines[-1]["sample_accuracy"] is None
    # replay's default is continuous mode with the state never reset (the engine's continuous mode is
    # checked against the reference in test_continuous_mode.py): its readouts are those of such a
    # session stepped over the same windows, and not those of one reset every T steps
    summary = lines[-1]
    assert summary["mode"] == "continuous" and "never reset" in summary["state_policy"]
    windows = [ev[(ev["t"] >= p["start_us"]) & (ev["t"] < p["end_us"])] for p in preds]
    assert sum(map(len, windows)) == len(ev)

    def readouts(reset_every):
        sess = Session(models["recording"], "float32", mode="continuous", reset_every=reset_every)
        return np.array([sess.step(w).readout for w in windows])
    got = np.array([p["logits"] for p in preds])
    np.testing.assert_allclose(got, readouts(None), rtol=1e-6, atol=1e-6)
    assert not np.allclose(got, readouts("T"), rtol=1e-6, atol=1e-6)


class VirtualClock:
    """Stands in for the time module's clocks: time passes only when someone sleeps, so a pacing check
    measures the pacing rule, not how busy the machine is."""

    def __init__(self):
        self.now = 1000.0

    def perf_counter(self):
        return self.now

    def sleep(self, s):
        self.now += max(0.0, s)


@pytest.mark.parametrize("speed", [1.0, 4.0])
def test_replay_speed_paces_by_timestamps(capsys, tmp_path, models, speed, monkeypatch):
    from evrt.streaming import StreamClassifier
    duration_s = 0.4
    ev = blob_events(4, 600, 0, int(duration_s * 1e6))
    write_npz(tmp_path / "short.npz", ev)
    clock = VirtualClock()
    pushed = []   # (clock when the events were handed to the classifier, their last timestamp)
    push = StreamClassifier.push

    def record(self, chunk):
        if len(chunk):
            pushed.append((clock.now, int(chunk["t"][-1])))
        return push(self, chunk)
    monkeypatch.setattr(StreamClassifier, "push", record)
    monkeypatch.setattr(time, "perf_counter", clock.perf_counter)
    monkeypatch.setattr(time, "monotonic", clock.perf_counter)
    monkeypatch.setattr(time, "sleep", clock.sleep)
    # the paced source waits on its stop event (so a stop cuts a wait short): that wait is virtual too
    monkeypatch.setattr(threading.Event, "wait", lambda self, timeout=None: (clock.sleep(timeout or 0.0), self.is_set())[1])
    code, out, _ = cli(capsys, "replay", tmp_path / "short.npz", "--model", models["recording"],
                       "--speed", str(speed), "--count", "100", "--json")
    monkeypatch.undo()
    assert code == 0
    summary = json_lines(out)[-1]
    assert summary["speed"] == speed and sum(1 for _ in pushed) > 5
    start = VirtualClock().now   # nothing sleeps before streaming starts, so the stream starts at the origin
    t0 = int(ev["t"][0])
    for wall, t_last in pushed:
        due = (t_last - t0) / 1e6 / speed
        # never ahead of the recording; behind by at most the 10 ms pacing granularity
        assert due - 1e-9 <= wall - start <= due + 0.010 / speed + 1e-9, (wall - start, due)
    assert summary["wall_s"] == pytest.approx((int(ev["t"][-1]) - t0) / 1e6 / speed, abs=0.010 / speed + 1e-6)


def test_replay_real_time_is_never_ahead_of_the_recording(capsys, tmp_path, models):
    """The same on the real clock, where only the lower bound is safe on a busy machine."""
    ev = blob_events(4, 600, 0, 300_000)
    write_npz(tmp_path / "short.npz", ev)
    t0 = time.perf_counter()
    code, out, _ = cli(capsys, "replay", tmp_path / "short.npz", "--model", models["recording"],
                       "--speed", "2", "--count", "100", "--json")
    elapsed = time.perf_counter() - t0
    assert code == 0
    summary = json_lines(out)[-1]
    target = summary["duration_s"] / 2
    assert summary["wall_s"] >= target - 1e-3 and elapsed >= target - 1e-3


@pytest.mark.parametrize("args, message", [
    (["{rec}", "--speed", "fast"], "--speed"),
    (["{rec}", "--speed", "-1"], "--speed"),
    (["{missing}"], "cannot open"),
    (["{rec}", "--model", "{nofile}"], "does not exist"),
])
def test_replay_errors_are_one_line_with_exit_code_2(capsys, tmp_path, models, labelled_npz, args, message):
    subst = {"rec": labelled_npz[0], "missing": tmp_path / "none.npz", "nofile": tmp_path / "x.evrt"}
    argv = ["replay"] + [a.format(**subst) for a in args]
    if "--model" not in argv:
        argv += ["--model", models["recording"]]
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_replay_drops_and_counts_bad_events(capsys, tmp_path, models):
    ev = blob_events(6, 500, 0, 50_000)
    bad = ev.copy()
    bad["x"][10] = 500                        # outside the 128x128 sensor
    bad["t"][20] = bad["t"][19] - 1 if bad["t"][19] else 0  # may go backwards: counted if it does
    back = int(bad["t"][20] < bad["t"][19])
    write_npz(tmp_path / "bad.npz", bad, sensor_size=SENSOR)  # stated: the stray x=500 is outside it
    code, out, err = cli(capsys, "replay", tmp_path / "bad.npz", "--model", models["recording"],
                         "--speed", "max", "--json")
    assert code == 0, err
    summary = json_lines(out)[-1]
    assert summary["dropped_by_reason"]["out_of_sensor"] == 1
    assert summary["dropped_events"] == 1 + back and summary["events_streamed"] == len(ev) - 1 - back


@pytest.mark.parametrize("first, n, workers, block", [(0, 22, 2, None), (1, 22, 2, None), (0, 5, 3, None),
                                                      (0, 1, 4, None), (3, 40, 2, 6)])
def test_worker_blocks_cover_the_samples_in_order_and_shrink(first, n, workers, block):
    from evrt.parallel import blocks
    bl = blocks(first, n, workers, block)
    assert bl[0][0] == first and bl[-1][1] == n
    assert all(a < b for a, b in bl) and all(b == c for (_, b), (c, _) in zip(bl, bl[1:]))
    sizes = [b - a for a, b in bl]
    if block is None:
        assert sizes == sorted(sizes, reverse=True) and sizes[-1] == 1
    else:
        assert set(sizes[:-1]) <= {block}
