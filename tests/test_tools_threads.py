"""tools/measure_dense_above.py's threshold search and tools/bench_threads.py's argument checks."""
import pytest

from tools.bench_threads import main as bench_threads_main
from tools.measure_dense_above import best_thresholds


def test_best_threshold_splits_where_dense_becomes_cheaper():
    # event time grows with density, dense time is flat: break-even between 0.3 and 0.4
    rows = [dict(kind="conv", density=d, event_s=d * 10, dense_s=3.5) for d in (0.1, 0.2, 0.3, 0.4, 0.5, 0.8)]
    r = best_thresholds(rows)["conv"]
    assert 0.3 <= r["best"] < 0.4 and r["calls"] == 6
    assert r["best_s"] == pytest.approx(1 + 2 + 3 + 3 * 3.5) == r["oracle_s"]
    assert r["event_only_s"] == pytest.approx(23.0) and r["dense_only_s"] == pytest.approx(21.0)


def test_bench_threads_rejects_bad_counts():
    with pytest.raises(SystemExit, match="--threads"):
        bench_threads_main(["--threads", "1"])
