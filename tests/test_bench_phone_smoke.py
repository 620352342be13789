"""The phone benchmark runs (tiny); speed itself is reported by bench/, never asserted."""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "phone.py"


@pytest.mark.slow
def test_phone_bench_quick(stripes_model_dir, capsys):
    spec = importlib.util.spec_from_file_location("bench_phone", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = bench.main(["--quick", "--model", str(stripes_model_dir)])
    assert [r["label"] for r in out["rows"]] == ["http", "https+token", "https+turns"]
    assert all(r["frames"] == 4 and r["p50_ms"] > 0 for r in out["rows"])
    text = capsys.readouterr().out
    assert "machine:" in text and "summary:" in text
