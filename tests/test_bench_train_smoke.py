import importlib.util
from pathlib import Path

import pytest


@pytest.mark.slow
def test_bench_train_quick():
    path = Path(__file__).resolve().parents[1] / "bench" / "train.py"
    spec = importlib.util.spec_from_file_location("bench_train", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--quick", "--no-baseline", "--json"])
    assert res["cold"]["val_accuracy"] >= 0.5 and res["warm"]["seconds"] > 0
    assert res["cold"]["rss_mb"] > 0
