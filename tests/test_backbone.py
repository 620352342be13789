import numpy as np
import pytest

from upright import backbones
from upright.errors import UprightError


def test_registry_and_strict_load():
    s = backbones.spec("efficientnet-lite0")
    assert (s.size, s.resize, s.dim) == (224, 256, 1280)
    assert backbones.spec("efficientnet-lite2").size == 260
    with pytest.raises(UprightError):
        backbones.spec("resnet-9000")
    m = backbones.torch_module("efficientnet-lite0")
    assert sum(p.numel() for p in m.parameters()) > 3_000_000
    bad = dict(m.net.state_dict())
    bad.pop("_bn0.weight")
    with pytest.raises(UprightError):
        backbones.torch_module("efficientnet-lite0", bad)


def test_onnx_cached_matches_torch_and_reexports_when_broken(tmp_path):
    import torch

    r = backbones.Runner("efficientnet-lite0", tmp_path)
    assert r.path.is_file() and r.path.parent == tmp_path / "onnx"
    assert backbones.weights_sha256("efficientnet-lite0")[:16] in r.path.name
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        ref = backbones.torch_module("efficientnet-lite0")(torch.from_numpy(x)).numpy()
    got = r(x)
    assert got.shape == (2, 1280)
    assert np.abs(got - ref).max() < 1e-3
    mtime = r.path.stat().st_mtime_ns
    assert backbones.ensure_onnx("efficientnet-lite0", tmp_path) == r.path  # reused
    assert r.path.stat().st_mtime_ns == mtime
    r.path.write_bytes(b"garbage")  # stale / broken file -> re-exported
    backbones.ensure_onnx("efficientnet-lite0", tmp_path)
    assert r.path.stat().st_size > 1_000_000
    assert not list((tmp_path / "onnx").glob(".*.tmp"))
