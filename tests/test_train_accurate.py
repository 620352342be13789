"""`upright train --preset accurate` (presets.py): a Lite0+Lite2 model folder whose head saw 10
crops of every photo, used unchanged by every verb and validated like any other."""

from __future__ import annotations

import json

import numpy as np
import pytest

import upright
from fixtures import make_dataset
from upright.views import TEN_CROPS


def test_accurate_refuses_what_it_does_not_use(tmp_path, cli):
    data = make_dataset(tmp_path / "d", 3, ("a", "b"))
    for extra, words in ((["--fine-tune"], "drop --fine-tune"), (["--epochs", "3"], "--epochs counts epochs"), (["--backbone", "efficientnet-lite0"], "drop --backbone"),
                         (["--augment", "d4"], "--augment is the fast preset's")):
        code, out, err = cli("train", data, "-o", tmp_path / "m", "--preset", "accurate", *extra)
        assert code == 2 and words in err, err
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_accurate_model_works_with_every_verb(tmp_path, cli):
    data = make_dataset(tmp_path / "d", 4, ("cat", "dog", "owl"))
    model = tmp_path / "m"
    code, out, err = cli("train", data, "-o", model, "--preset", "accurate", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["preset"] == "accurate" and r["backbone"] == "efficientnet-lite0+lite2" and not r["fine_tuned"]
    assert r["augment"] == "10-crop" and r["n_fitted"] == 12 and r["decoded"] == 12
    meta = json.loads((model / "model.json").read_text())
    assert meta["preset"] == "accurate" and len(meta["train_variants"]) == 10 and meta["embedding_dim"] == 2560
    assert meta["format_version"] == 3  # corner views: a format-2 reader refuses it instead of mispredicting
    # the 10 views of every photo are cached: a re-train decodes nothing
    again = upright.train(data, tmp_path / "m2", preset="accurate")
    assert again.cache_hits == 12 and again.decoded == 0 and again.l2 == r["l2"]
    m = upright.load_model(model)
    photo = next((data / "cat").glob("*.jpg"))
    p = m.predict([photo])[0]
    assert abs(sum(s for _, s in p.predictions) - 1) < 1e-4
    code, out, err = cli("eval", model, data, "--json")
    ev = json.loads(out)
    assert code == 0 and ev["n"] == 12 and ev["seen_in_training"] == 12 and set(ev["rotations"]) == {"0", "90", "180", "270"}
    # the model averages its 10 crops at test time, the same from a path, bytes or a PIL image
    assert m.views == TEN_CROPS and meta["test_views"] == list(TEN_CROPS)
    from PIL import Image

    by_path = dict(m.predict([photo], top_k=3)[0].predictions)
    for item in (photo.read_bytes(), Image.open(photo).convert("RGB")):
        got = dict(m.predict(item, top_k=3)[0].predictions)
        assert got.keys() == by_path.keys() and np.allclose(list(got.values()), list(by_path.values()), atol=1e-4)
    served = dict(m.predict_images([Image.open(photo).convert("RGB")], top_k=3)[0])  # what serve calls
    assert np.allclose([served[k] for k in by_path], list(by_path.values()), atol=1e-4)
    # export: the ONNX graph is the whole model on one centre crop (centre views averaged inside);
    # it says so, and equals the model restricted to those views
    code, out, err = cli("export", model, "--format", "onnx", "-o", tmp_path / "m.onnx")
    assert code == 0, err
    assert "averages id + flip" in err and "8 corner views" in err
    import onnx
    import onnxruntime as ort

    from upright.pipeline.decode import load_canvas, to_input

    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert json.loads(props["test_views_in_graph"]) == ["id", "flip"] and len(json.loads(props["test_views"])) == 10
    crop, _ = load_canvas(str(photo), m.contract)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    probs = sess.run(None, {"input": to_input(crop[None], m.contract)})[0][0]
    m.views = ("id", "flip")
    want = dict(m.predict([photo], top_k=3)[0].predictions)
    assert np.allclose([probs[m.labels.index(k)] for k in want], list(want.values()), atol=1e-4)
    m.views = TEN_CROPS
    # with --preprocess the graph holds the resized picture: it cuts and averages all 10 crops, as predict
    code, out, err = cli("export", model, "--format", "onnx", "--preprocess", "-o", tmp_path / "px.onnx")
    assert code == 0 and "note:" not in err, err
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "px.onnx")).metadata_props}
    assert json.loads(props["test_views_in_graph"]) == list(TEN_CROPS)
    sess = ort.InferenceSession(str(tmp_path / "px.onnx"), providers=["CPUExecutionProvider"])
    (o,) = sess.get_outputs()
    assert o.shape == [1, 3]
    photos = sorted(data.rglob("*.jpg"))
    want = np.stack([[dict(p.predictions)[lab] for lab in m.labels] for p in m.predict(photos, top_k=99)])
    got = np.stack([sess.run(None, {"pixels": np.asarray(upright.open_upright(p))[None]})[0][0] for p in photos])
    assert (got.argmax(1) == want.argmax(1)).all() and np.abs(got - want).max() < 0.05
    assert np.allclose(got.sum(1), 1, atol=1e-4)
    # a forged preset is refused by the schema: an accurate model has the composite backbone
    meta["backbone"] = "efficientnet-lite0"
    meta["embedding_dim"], meta["input_size"] = 1280, 224
    (model / "model.json").write_text(json.dumps(meta))
    with pytest.raises(upright.errors.UprightError, match="accurate model has a composite backbone"):
        upright.load_model(model)
