"""`upright train --preset accurate` (accurate.py): a fine-tuned Lite0+Lite2 model folder that
every verb uses unchanged, validated like any other, with its epochs in the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

import upright
from fixtures import make_dataset
from upright.accurate import crop_views


def test_ten_crops_are_the_centre_corners_and_mirrors():
    img = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    v = crop_views(img, 4)
    assert v.shape == (10, 4, 4, 3)
    assert (v[0] == img[1:5, 2:6]).all() and (v[1] == img[:4, :4]).all() and (v[4] == img[2:, 4:]).all()
    assert (v[5] == img[1:5, 2:6][:, ::-1]).all()


def test_accurate_refuses_what_it_does_not_use(tmp_path, cli):
    data = make_dataset(tmp_path / "d", 3, ("a", "b"))
    for extra, words in ((["--fine-tune"], "drop --fine-tune"), (["--backbone", "efficientnet-lite0"], "drop --backbone"),
                         (["--augment", "d4"], "--augment is the fast preset's")):
        code, out, err = cli("train", data, "-o", tmp_path / "m", "--preset", "accurate", *extra)
        assert code == 2 and words in err, err
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_accurate_model_works_with_every_verb(tmp_path, cli):
    data = make_dataset(tmp_path / "d", 6, ("cat", "dog", "owl"))
    model = tmp_path / "m"
    code, out, err = cli("train", data, "-o", model, "--preset", "accurate", "--epochs", "2", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["preset"] == "accurate" and r["backbone"] == "efficientnet-lite0+lite2" and r["fine_tuned"]
    assert [h["epoch"] for h in r["fine_tune"]["history"]][:1] == [1] and r["test_views"] == ["id", "flip"]
    meta = json.loads((model / "model.json").read_text())
    assert meta["preset"] == "accurate" and meta["fine_tune"]["kind"] == "last blocks on cached activations"
    assert meta["fitted_on"]["photos"] == r["n_train"] and not (tmp_path / ".m.upright-checkpoint").exists()
    m = upright.load_model(model)
    assert m.backbone_state is not None and m.views == ("id", "flip")
    photo = next((data / "cat").glob("*.jpg"))
    p = m.predict([photo])[0]
    assert abs(sum(s for _, s in p.predictions) - 1) < 1e-4
    code, out, err = cli("eval", model, data, "--json")
    assert code == 0 and json.loads(out)["n"] == 18 and set(json.loads(out)["rotations"]) == {"0", "90", "180", "270"}
    # export: the ONNX graph is the whole model, mirror averaging included, equal to predict
    code, out, err = cli("export", model, "--format", "onnx", "-o", tmp_path / "m.onnx")
    assert code == 0, err
    import onnxruntime as ort

    from upright.preprocess import load_crop, to_input

    crop, _ = load_crop(str(photo), m.backbone)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    probs = sess.run(None, {"input": to_input(crop[None], m.backbone)})[0][0]
    want = dict(m.predict([photo], top_k=3)[0].predictions)
    assert np.allclose([probs[m.labels.index(k)] for k in want], list(want.values()), atol=1e-4)
    html = (model / "report.html").read_text()
    assert "Learning curves" in html
    # a forged preset is refused by the schema: an accurate model is a fine-tuned composite
    meta["fine_tuned"] = False
    (model / "model.json").write_text(json.dumps(meta))
    with pytest.raises(upright.errors.UprightError, match="accurate model is a fine-tuned composite"):
        upright.load_model(model)
