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


@pytest.mark.slow
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


@pytest.mark.slow
def test_composite_concatenates_its_parts_on_one_input(tmp_path):
    import torch

    assert backbones.DEFAULT == "efficientnet-lite0"  # the contract's default: fast on a laptop
    s = backbones.spec("efficientnet-lite0+lite2")
    assert s.name == "efficientnet-lite0+lite2" and s.components == ("efficientnet-lite0", "efficientnet-lite2")
    assert (s.size, s.resize, s.dim) == (260, 297, 2560)
    # its own cache key: never mixed with Lite0's or Lite2's cached rows
    h = backbones.weights_sha256(s.name)
    assert h not in {backbones.weights_sha256(p) for p in s.parts}
    sd = backbones.load_state_dict(s.name)
    assert {k.split(".", 1)[0] for k in sd} == set(s.parts)
    m = backbones.torch_module(s.name)
    assert set(m.net.state_dict()) == set(sd)  # fine-tuned weights round-trip with the same keys
    x = np.random.default_rng(1).uniform(-1, 1, (2, 3, 260, 260)).astype(np.float32)
    with torch.no_grad():
        got = m(torch.from_numpy(x)).numpy()
        parts = [backbones.torch_module(p)(torch.from_numpy(x)).numpy() for p in s.parts]
    assert got.shape == (2, 2560)
    assert np.abs(got - np.concatenate(parts, axis=1)).max() < 1e-5
    r = backbones.Runner(s.name, tmp_path)
    assert h[:16] in r.path.name
    assert np.abs(r(x) - got).max() < 1e-3


def test_input_contract_is_read_from_the_spec(monkeypatch):
    """The input contract (decode.py and model.json read it) takes size, resize, interpolation
    and scaling from the spec."""
    from dataclasses import replace

    from PIL import Image

    from upright.contract import InputContract
    from upright.pipeline import decode

    s = backbones.spec("efficientnet-lite0")
    assert InputContract.for_backbone(s.name).preprocessing()["scaling"] == "(x - 127) / 128"
    odd = replace(s, name="odd", mean=0.0, std=2.0, size=32, resize=40, interpolation="nearest")
    monkeypatch.setitem(backbones.REGISTRY, "odd", odd)
    c = InputContract.for_backbone("odd")
    assert np.allclose(decode.to_input(np.full((1, 32, 32, 3), 200, np.uint8), c), 100.0)
    stripes = Image.fromarray(np.tile(np.arange(80, dtype=np.uint8) * 3, (60, 1)).repeat(3).reshape(60, 80, 3))
    crop = decode.centre_crop(stripes, c)  # 80x60 -> nearest 53x40 -> centre 32x32
    assert crop.shape == (32, 32, 3) and set(np.unique(crop)) <= set(np.arange(80) * 3)  # nearest: no new values
    d = c.preprocessing()
    assert (d["scaling"], d["interpolation"], d["resize_short_side"], d["input_size"]) == ("(x - 0) / 2", "nearest",
                                                                                           40, 32)
