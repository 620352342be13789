"""The Ray Data engine equals the local one: `embed` rows (cosine >= 0.999), resume, and train
and audit with --engine ray. Ray listens on every interface, so it runs only inside a fresh
network namespace whose one interface is loopback (`unshare -n`), in one Ray session
(tests/ray_inner.py). Skips where that is not permitted; under CI=true or
UPRIGHT_REQUIRE_RAY=1 it fails instead."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
INNER = HERE / "ray_inner.py"


def _required() -> bool:
    return os.environ.get("CI") == "true" or os.environ.get("UPRIGHT_REQUIRE_RAY") == "1"


def _skip(reason: str):
    if _required():
        pytest.fail(f"{reason} (CI=true or UPRIGHT_REQUIRE_RAY=1: the Ray test must run)")
    pytest.skip(reason)


@pytest.mark.slow
def test_ray_engine_matches_local_in_a_loopback_namespace(tmp_path):
    try:
        import ray.data  # noqa: F401
    except ImportError:
        _skip("Ray Data is not installed (pip install 'upright[ray]')")
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        _skip("needs root, unshare and ip for a private network namespace")
    src = str(HERE.parent / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    res = subprocess.run(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$1" "$2"',
                          sys.executable, str(INNER), str(tmp_path)], capture_output=True, text=True, timeout=400,
                         env=env)
    if res.returncode != 0 and "unshare" in res.stderr and not res.stdout:
        _skip(f"no network namespace here: {res.stderr.strip()[:200]}")
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["ray_cpus"] == 2
    s = got["summary"]
    assert s["n"] == [15, 15] and s["embedded"] == [14, 14] and s["reused"] == [0, 0]
    assert s["engine"] == ["local", "ray"]
    assert [Path(p).name for p in got["unreadable"]] == ["broken.jpg"]
    assert got["same_keys"] and got["min_cosine"] >= 0.999
    assert got["rerun"] == [0, 14]  # a re-run into the same OUT reuses every row
    r = got["resume"]
    assert 0 < r["lost"] < 14 and r["embedded"] == r["lost"] and r["reused"] == 14 - r["lost"]
    assert r["same_keys"] and r["max_diff"] < 1e-3
    assert got["ten_crops_max_diff"] < 1e-3 and got["ten_crops_distinct"]
    assert got["train"]["ray"] == got["train"]["local"] and got["train"]["ray"]["decoded"] == 14
    assert got["train_same_predictions"] and got["train_max_weight_diff"] < 1e-3
    assert got["audit_same"] and got["audit_findings"] >= 1
    assert got["ray_shut_down"]
