"""The input contract travels with the model (written once into model.json, read back as
Model.contract, read by every consumer), older folders derive it, a forged one is refused; and
one shard of work (pipeline/shard.py) gives the same vectors however it is cut."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import upright
from fixtures import make_dataset
from upright.contract import InputContract
from upright.errors import UprightError
from upright.model import load_model


def _meta(folder):
    return json.loads((folder / "model.json").read_text())


def test_the_model_carries_its_contract_and_every_consumer_reads_it(trained):
    from upright.export import graph_views
    from upright.serve.app import decode_size_for

    m = load_model(trained["model"])
    c = m.contract
    assert c == InputContract.for_backbone(m.backbone, test_views=m.views, orientation="upright")
    assert (c.size, c.resize, c.embedding_dim, c.scaling) == (224, 256, 1280, "(x - 127) / 128")
    meta = _meta(trained["model"])
    # written once: the object, and the older keys derived from it for older readers
    assert meta["input_contract"] == c.stored() and meta["test_views"] == list(c.test_views)
    assert meta["orientation_policy"] == c.orientation and meta["input_size"] == c.size
    assert meta["embedding_dim"] == c.embedding_dim and meta["preprocessing"] == c.preprocessing()
    assert meta["onnx_input"] == c.onnx_input()
    assert decode_size_for(m) == c.resize  # serve decodes exactly the picture the views are cut from
    assert graph_views(m) == list(c.test_views)
    assert json.loads(json.dumps(c.model_dump(mode="json"))) == c.model_dump(mode="json")  # the studio's JSON


def test_older_folders_derive_the_contract_from_the_backbone(trained, tmp_path):
    want = load_model(trained["model"]).contract
    old = tmp_path / "old"
    shutil.copytree(trained["model"], old)
    meta = {k: v for k, v in _meta(old).items() if k != "input_contract"}  # before the key existed
    (old / "model.json").write_text(json.dumps(meta))
    assert load_model(old).contract == want
    meta = {k: v for k, v in meta.items() if k not in ("fitted_on", "head_sha256", "preprocessing", "onnx_input",
                                                       "input_size", "embedding_dim")} | {"format_version": 1}
    (old / "model.json").write_text(json.dumps(meta))  # as upright 0.1.0's first folders
    assert load_model(old).contract == want


@pytest.mark.parametrize("change, words", [
    ({"resize": 300}, "resize 300 is not efficientnet-lite0's 256"),
    ({"mean": [0, 0, 0]}, "mean"),
    ({"resize": 10 ** 9}, "input_contract.resize"),
    ({"test_views": ["r90"]}, "input_contract.test_views disagrees with test_views"),
    ({"orientation": "stored"}, "input_contract.orientation disagrees with orientation_policy"),
    ({"preprocess_version": 2}, "preprocess_version 2"),
])
def test_a_contract_that_is_not_this_versions_is_refused(trained, tmp_path, change, words):
    forged = tmp_path / "forged"
    shutil.copytree(trained["model"], forged)
    meta = _meta(forged)
    meta["input_contract"] = {**meta["input_contract"], **change}
    (forged / "model.json").write_text(json.dumps(meta))
    with pytest.raises(UprightError, match="invalid model.json") as info:
        load_model(forged)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_eval_leaves_the_callers_model_as_it_was(trained, tmp_path):
    m = load_model(trained["model"])
    before = m.cache_dir
    ev = upright.evaluate(m, trained["data"], cache_dir=tmp_path / "elsewhere", rotations=False)
    assert ev.n == 18 and m.cache_dir is before and (tmp_path / "elsewhere").is_dir()


def test_the_orientation_tag_is_carried_from_the_decode(trained, tmp_path, monkeypatch):
    import upright.model as model_module

    reads = []
    real = model_module._header_tag
    monkeypatch.setattr(model_module, "_header_tag", lambda p: reads.append(p) or real(p))
    m = load_model(trained["model"], cache_dir=tmp_path / "fresh")
    dogs = sorted(str(p) for p in (trained["data"] / "dog").glob("*.jpg"))
    first = m.predict(dogs)
    assert [p.orientation for p in first] == [6] * len(dogs) and reads == []  # decoded now: no second read
    again = m.predict(dogs)  # from the cache: no decode, so the header says
    assert [p.orientation for p in again] == [6] * len(dogs) and len(reads) == len(dogs)
    assert [p.predictions for p in again] == [p.predictions for p in first]
    raw = (trained["data"] / "dog" / sorted(p.name for p in (trained["data"] / "dog").glob("*.jpg"))[0]).read_bytes()
    assert m.predict(raw)[0].orientation == 6  # bytes: one shard, the tag from its decode


def test_one_files_views_may_straddle_two_batches(tmp_path, monkeypatch):
    """The engine cuts batches of BATCH views, so a photo's views can arrive in two batches: the
    rows are put back in place (no per-photo dict), the same vectors either way."""
    from upright.pipeline import shard
    from upright.pipeline.embed import embed_paths

    data = make_dataset(tmp_path / "d", n_per_class=3, classes=("a", "b"))
    paths = sorted(data.rglob("*.jpg")) + [tmp_path / "missing.jpg"]
    (tmp_path / "bad.jpg").write_bytes(b"not a picture")
    paths.append(tmp_path / "bad.jpg")
    whole = embed_paths(paths, variants=("id", "flip", "r90"), cache_dir=tmp_path / "c1", progress=False, workers=0)
    monkeypatch.setattr(shard, "BATCH", 4)  # 3 views a photo: every other photo straddles
    cut = embed_paths(paths, variants=("id", "flip", "r90"), cache_dir=tmp_path / "c2", progress=False, workers=0)
    assert cut.ok.tolist() == whole.ok.tolist() == [True] * 6 + [False, False]
    assert np.abs(cut.vectors[:6] - whole.vectors[:6]).max() < 1e-5 and set(cut.errors) == {6, 7}
    assert cut.decoded == 6 and set(cut.tags) == set(range(6))


def test_shard_rows_survive_the_ray_columns():
    """Ray carries a shard as columns (failed items as rows with an error); back as the same arrays."""
    from upright.pipeline.shard import Vectors

    v = Vectors(np.array([0, 0, 2]), np.array(["id", "flip", "id"], object),
                np.arange(12, dtype=np.float32).reshape(3, 4), {1: "truncated"}, {0: 6, 2: None})
    back = Vectors.from_columns(v.to_columns())
    assert back.index.tolist() == [0, 0, 2] and back.view.tolist() == ["id", "flip", "id"]
    assert np.array_equal(back.vectors, v.vectors) and back.failed == {1: "truncated"} and back.tags == {0: 6, 2: None}
    dense = back.dense(3, ("id", "flip"))
    assert dense.shape == (3, 2, 4) and np.isnan(dense[1]).all() and np.isnan(dense[2, 1]).all()
    assert np.array_equal(dense[0], v.vectors[:2])


def test_to_input_follows_the_contract_dtype_layout_and_quantisation():
    """One home for the last step before a network: scaling, quantisation and layout (pipeline/decode.py);
    eval --onnx and --tflite feed foreign graphs through it too."""
    from upright.pipeline.decode import to_input

    x = np.full((2, 8, 8, 3), 200, np.uint8)
    x[..., 1] = 100
    f = to_input(x, InputContract(size=8, resize=9, mean=(100.0, 50.0, 0.0), std=(2.0, 2.0, 4.0)))
    assert f.dtype == np.float32 and f.shape == (2, 3, 8, 8) and f[0, :, 0, 0].tolist() == [50.0, 25.0, 50.0]
    raw = to_input(x, InputContract(size=8, resize=9, dtype="uint8", layout="nhwc"))
    assert raw.dtype == np.uint8 and raw.shape == (2, 8, 8, 3) and np.array_equal(raw, x)
    q = InputContract(size=8, resize=9, dtype="int8", layout="nhwc", mean=(128.0,) * 3, std=(1.0,) * 3,
                      quantization=(0.5, -10))
    got = to_input(x, q)  # round(((x - 128) / 1) / 0.5) - 10, clipped to int8
    assert got.dtype == np.int8 and got[0, 0, 0].tolist() == [127, -66, 127]
    assert "quantised (scale 0.5, zero point -10)" in q.describe()
    with pytest.raises(ValueError):
        InputContract(size=8, resize=9, dtype="int8")  # an int8 input is a quantised one
