"""The phone benchmark runs (tiny); speed itself is reported by bench/, never asserted."""

import pytest

from fixtures import load_bench


@pytest.mark.slow
def test_phone_bench_quick(stripes_model_dir, capsys):
    bench = load_bench("phone")
    out = bench.main(["--quick", "--model", str(stripes_model_dir)])
    assert [r["label"] for r in out["rows"]] == ["http", "https+token", "https+turns"]
    assert all(r["frames"] == 4 and r["p50_ms"] <= r["p95_ms"] for r in out["rows"])
    assert [r["turn_tests"] for r in out["rows"]] == [0, 0, 4]  # every frame of the last row was turned 4 ways
    assert all(set(r["labels"]) <= {"horizontal", "vertical"} and r["labels"] for r in out["rows"])
    text = capsys.readouterr().out
    assert "machine:" in text and "summary:" in text
