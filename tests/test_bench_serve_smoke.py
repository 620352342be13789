"""The serving benchmark runs (tiny); speed itself is reported by bench/, never asserted."""

import pytest

from fixtures import load_bench


@pytest.mark.slow
def test_serve_bench_quick(stripes_model_dir, capsys):
    bench = load_bench("serve")
    out = bench.main(["--quick", "--requests", "8", "--model", str(stripes_model_dir)])
    assert [r["clients"] for r in out["serve"]] == [1, 4, 16, 16]  # + the unbatched comparison
    assert all(r["failures"] == 0 and r["requests"] == max(8, r["clients"]) and r["p50_ms"] <= r["p95_ms"]
               for r in out["serve"])
    assert all(1 <= r["mean_batch"] <= 4 for r in out["serve"])  # --max-batch 4 (serve's default)
    assert out["serve"][0]["mean_batch"] == 1 == out["serve"][-1]["mean_batch"]  # one client; max_batch=1
    assert out["predict"]["single_ms_min"] <= out["predict"]["single_ms_p50"]
    text = capsys.readouterr().out
    assert "req/s" in text and "p95 ms" in text and "Model.predict" in text and "machine:" in text
