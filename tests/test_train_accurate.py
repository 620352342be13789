"""`upright train --preset accurate` (accurate.py): a Lite0+Lite2 model folder whose head saw 10
crops of every photo, used unchanged by every verb and validated like any other."""

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
    # export: the ONNX graph is the whole model (test views averaged inside), equal to predict
    code, out, err = cli("export", model, "--format", "onnx", "-o", tmp_path / "m.onnx")
    assert code == 0, err
    import onnxruntime as ort

    from upright.preprocess import load_crop, to_input

    crop, _ = load_crop(str(photo), m.backbone)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    probs = sess.run(None, {"input": to_input(crop[None], m.backbone)})[0][0]
    want = dict(m.predict([photo], top_k=3)[0].predictions)
    assert np.allclose([probs[m.labels.index(k)] for k in want], list(want.values()), atol=1e-4)
    # a forged preset is refused by the schema: an accurate model has the composite backbone
    meta["backbone"] = "efficientnet-lite0"
    meta["embedding_dim"], meta["input_size"] = 1280, 224
    (model / "model.json").write_text(json.dumps(meta))
    with pytest.raises(upright.errors.UprightError, match="accurate model has a composite backbone"):
        upright.load_model(model)
