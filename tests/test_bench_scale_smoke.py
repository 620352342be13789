"""The scale benchmark runs (tiny, no Ray); speed itself is reported by bench/, never asserted."""

import pytest

from fixtures import load_bench


@pytest.mark.slow
def test_bench_scale_quick(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UPRIGHT_SCALE_DIR", str(tmp_path / "scale"))
    mod = load_bench("scale")
    out = mod.main(["--quick"])
    assert out["results"]["local"]["embedded"] == 24 and out["results"]["ceiling"]["ips"] > 0
    assert [v["embedded"] for v in out["rss"].values()] == [12, 24] and out["rss_ratio"] > 0
    assert "ray" not in out["results"] and any("node(s)" in line for line in out["estimate"])
    assert "images/s" in capsys.readouterr().out
