"""The leak-detection benchmark runs (quick, no shared data) and reports what the tests assert."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def test_leak_bench_quick(capsys):
    import leak_detection

    rows = leak_detection.main(["--quick", "--no-flowers", "--seeds", "1"])
    confound = {(r[1], r[3]): r[4] for r in rows if r[0] == "confound"}
    assert confound[(3, "100%")] in ("warning", "error") and confound[(10, "50%")] in ("warning", "error")
    assert all(r[5] == "none x1" for r in rows if r[0] == "control")
    assert "summary: one class 50-100% tagged: warning or error in 4/4" in capsys.readouterr().out
