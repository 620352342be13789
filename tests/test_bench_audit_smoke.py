"""bench/audit.py's growth parts run (tiny sizes, no shared data) and check what they report."""

import fixtures as af
from fixtures import load_bench


def test_audit_bench_growth_parts(tmp_path):
    bench = load_bench("audit")
    data = af.make_dataset(tmp_path / "data", 6, ("cat", "dog"))
    report = bench.main(["--data", str(data), "--parts", "files,near,leak", "--files", "40", "--near", "1200",
                         "--leak", "600,300,5"])
    files = report["files"]
    assert files["files"] == 40 and files["headers_cold"]["threads"] > 0 and "processes" in files["hashes_warm"]
    (near,) = report["near"]
    assert near["n"] == 1200 and near["planted"] == 12 and near["planted_found_exact"] == 12
    assert near["ann_recall_of_exact"] == 1.0 and near["ann_extra"] == 0
    assert report["leak"]["distinct_values"] > 200 and report["leak"]["null_dense_s"] >= 0


def test_recall_at_precision():
    bench = load_bench("audit")
    probs = {"a": (0.9, 90), "b": (0.8, 90), "c": (0.7, 90), "d": (0.6, 90)}
    assert bench.recall_at_precision(probs, {"a": 90, "c": 90}, 0.9) == 0.5
    assert bench.recall_at_precision(probs, {"a": 90, "b": 90, "c": 90, "d": 90}, 0.9) == 1.0
