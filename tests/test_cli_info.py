import json

import numpy as np

from evrt.cli import main
from evrt.events import make_events
from evrt.formats import LABELS_DTYPE
from evrt.formats.npz import write_npz


def _events():
    # 2 s, 6 events, 4 ON
    return make_events([0, 100, 500_000, 1_000_000, 1_500_000, 2_000_000], [0, 1, 2, 3, 4, 5],
                       [5, 4, 3, 2, 1, 0], [1, 1, 0, 1, 0, 1])


def test_info_json(tmp_path, capsys):
    p = tmp_path / "rec.npz"
    labels = np.array([(2, 0, 600_000), (7, 600_000, 2_000_001), (2, 1_400_000, 1_600_000)], LABELS_DTYPE)
    write_npz(p, _events(), sensor_size=(128, 96), labels=labels)
    assert main(["info", str(p), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["format"] == "npz" and s["sensor_size"] == [128, 96]
    assert s["events"] == 6 and s["duration_us"] == 2_000_000
    assert s["mean_rate_ev_per_s"] == 3.0
    assert (s["on_events"], s["off_events"]) == (4, 2) and abs(s["on_fraction"] - 2 / 3) < 1e-12
    assert s["samples"]["count"] == 3 and s["samples"]["per_label"] == {"2": 2, "7": 1}
    assert s["samples"]["events_per_sample"] == {"min": 1, "mean": 7 / 3, "max": 3}
    assert s["time_sorted"] is True


def test_info_text_without_labels_or_sensor(tmp_path, capsys):
    p = tmp_path / "plain.npz"
    write_npz(p, _events())
    assert main(["info", str(p)]) == 0
    out = capsys.readouterr().out
    assert "format:      npz" in out and "events:      6" in out
    assert "not stated in the file (events span x 0..5, y 0..5)" in out
    assert "3 ev/s" in out and "4 ON / 2 OFF (66.7 % ON)" in out and "samples" not in out


def test_info_empty_recording(tmp_path, capsys):
    p = tmp_path / "empty.npz"
    write_npz(p, make_events([], [], [], []), sensor_size=(4, 4))
    assert main(["info", str(p), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["events"] == 0 and s["mean_rate_ev_per_s"] is None and s["on_fraction"] is None


def test_info_bad_file_is_one_line_error(tmp_path, capsys):
    p = tmp_path / "junk.dat"
    p.write_bytes(b"garbage")
    assert main(["info", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("evrt info: error:") and "junk.dat" in err and "\n" not in err
