"""The soak tool's short run (issue 14): one cycle of every fault — malformed and oversized messages,
a paused consumer, a clock jump, kill -9 and restart of the classifier and of the source, a CURVE peer
with the wrong key — and every event accounted for: 0 unexplained losses."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_soak_one_cycle_of_every_fault_loses_nothing_unexplained():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "soak.py"), "--cycles", "1", "--json"],
                         capture_output=True, text=True, timeout=240, cwd=ROOT)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 0, (r, out.stderr[-2000:])
    faults = {row["fault"] for row in r["per_stream"]}
    assert faults == {"none", "malformed", "pause_consumer", "clock_jump", "kill_classifier", "kill_source"}
    assert r["lost_unexplained"] == 0 and r["surplus_unexplained"] == 0
    assert r["kills"] == {"classifier": 1, "source": 1}
    assert r["malformed_sent"] > 0 and r["malformed_dropped_and_counted"] == r["malformed_sent"]
    assert r["resyncs"] >= 1
    assert r["curve"]["logged"] and r["curve"]["stolen"] == 0 and r["curve"]["delivered"] == r["curve"]["sent"]
    # streams no fault touched lost nothing at all; the paused consumer too (PUSH back-pressure)
    for row in r["per_stream"]:
        if row["fault"] in ("none", "malformed", "pause_consumer", "clock_jump"):
            assert row["received"] == row["sent"] > 0, row
