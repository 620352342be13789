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
    # the train/audit rows: a seeded small set and a cold phone set, each step in its own process
    rows = out["train_audit"]["versions"]["this tree"]
    small, phone = rows["small:48"], rows["phone:10"]
    assert "train_cold" not in small and small["train_warm"]["decoded"] == 0 and small["train_warm"]["cache_hits"] == 48
    assert phone["train_cold"]["decoded"] == 10 and phone["train_warm"]["decoded"] == 0
    assert phone["audit_metadata_only_cold"]["n"] == phone["audit_metadata_only"]["n"] == 10
    assert small["audit_full_warm"]["n"] == 48 and all(r["rss_mb"] > 0 for r in small.values())
    text = capsys.readouterr().out
    assert "images/s" in text and "ratios, phone:10: warm train / cold train" in text
