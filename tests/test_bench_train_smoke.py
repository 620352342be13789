"""bench/train.py runs (tiny, no baseline) and reports what a re-train promises: a warm run on
cached photos decodes nothing and fits the same head."""

import pytest

from fixtures import load_bench


@pytest.mark.slow
def test_bench_train_quick():
    mod = load_bench("train")
    res = mod.main(["--quick", "--no-baseline", "--json"])
    cold, warm = res["cold"], res["warm"]
    assert cold["n_train"] + cold["n_val"] == 12 and cold["decoded"] == 12 and cold["cache_hits"] == 0
    assert warm["decoded"] == 0 and warm["cache_hits"] == 12  # a re-train never decodes an image
    assert warm["val_accuracy"] == cold["val_accuracy"] >= 0.5 and warm["l2"] == cold["l2"]
    assert 50 < cold["rss_mb"] < 8000 and 50 < warm["rss_mb"] < 8000  # megabytes, measured in the child
