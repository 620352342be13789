"""The shortcut benchmark and the bench runner work (tiny runs); figures are never asserted."""

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))


@pytest.mark.slow
def test_shortcut_bench_quick(capsys):
    import shortcut

    out = shortcut.main(["--quick"])
    rows = {(r["augment"], r["orient"]) for r in out["rows"]}
    assert rows == {("flip", False), ("flip", True), ("d4", False), ("d4", True)}
    for r in out["rows"]:
        assert 0.0 <= r["accuracy"] <= 1.0 and set(r["rotations"]) == {"0", "90", "180", "270"}
    assert out["sideways"] == ["cool"]
    assert any(f["attribute"] == "exif_orientation" or "exif_orientation" in (f.get("also") or [])
               for f in out["audit_findings"])  # the audit sees the confound in the training split
    text = capsys.readouterr().out
    assert "| augment | loader |" in text and "machine:" in text


def test_shortcut_bench_skips_without_data(tmp_path, capsys):
    import shortcut

    with pytest.raises(SystemExit) as exit_info:
        shortcut.main(["--data", str(tmp_path / "absent")])
    assert exit_info.value.code == shortcut.SKIP
    assert "not found" in capsys.readouterr().err


def test_run_all_reports_ok_skipped_and_failed(tmp_path, monkeypatch):
    import run_all

    fake = tmp_path / "bench"
    fake.mkdir()
    (fake / "good.py").write_text("print('| a | b |')\nprint('|---|---|')\nprint('| 1 | 2 |')\n")
    (fake / "nodata.py").write_text("import sys\nprint('SKIPPED: data absent at /x', file=sys.stderr)\nsys.exit(77)\n")
    (fake / "broken.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.setattr(run_all, "BENCH", fake)
    out = tmp_path / "RESULTS.md"
    code = run_all.main(["--out", str(out), "--timeout", "60"])
    text = out.read_text()
    assert code == 1  # a failed bench is never hidden
    assert "| `bench/good.py` | ok |" in text and "| 1 | 2 |" in text
    assert "| `bench/nodata.py` | skipped |" in text and "data absent at /x" in text
    assert "| `bench/broken.py` | failed |" in text and "RuntimeError: boom" in text
    assert "torch" in text and "onnxruntime" in text and "Pillow" in text and "RAM" in text
