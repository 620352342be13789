import pytest

from fixtures import load_bench


@pytest.mark.slow
def test_bench_train_quick():
    mod = load_bench("train")
    res = mod.main(["--quick", "--no-baseline", "--json"])
    assert res["cold"]["val_accuracy"] >= 0.5 and res["warm"]["seconds"] > 0
    assert res["cold"]["rss_mb"] > 0
