import json

import pytest
from safetensors.numpy import load_file

from upright import load_model
from upright.train import train_dataset
from fixtures import make_dataset


def test_train_json_and_model_folder(trained):
    r = trained["result"]
    for key, typ in {"model": str, "labels": list, "val_accuracy": float, "n_train": int, "n_val": int,
                     "seconds": float, "backbone": str, "augment": str}.items():
        assert isinstance(r[key], typ), key
    assert r["labels"] == ["cat", "dog", "owl"] and r["augment"] == "flip" and r["backbone"] == "efficientnet-lite0"
    meta = json.loads((trained["model"] / "model.json").read_text())
    assert meta["orientation_policy"] == "upright" and meta["weights_sha256"] and meta["input_size"] == 224
    assert meta["embedding_dim"] == 1280
    assert meta["preprocessing"]["scaling"] == "(x - 127) / 128"
    t = meta["training"]  # what a model card shows (the studio's): figures of the held-out photos, the audit
    assert set(t["per_class"]) == set(r["labels"]) and sum(v["n"] for v in t["per_class"].values()) == t["val_photos"]
    assert t["n_mistakes"] == round((1 - t["val_accuracy"]) * t["val_photos"])
    assert isinstance(t["audit_warnings"], list)
    tensors = load_file(str(trained["model"] / "head.safetensors"))
    assert set(tensors) == {"weight", "bias", "fitted_sha256"}
    assert tensors["fitted_sha256"].shape == (r["n_fitted"], 8) and r["n_fitted"] == r["n_train"] + r["n_val"]
    assert not list(trained["model"].glob("*.pkl"))


def test_sideways_stored_class_predicted_on_upright_photos(trained):
    m = load_model(trained["model"])
    for label, paths in trained["tests"].items():
        for p in m.predict(paths, top_k=1):
            assert p.predictions[0][0] == label, (p.path, p.predictions)


def test_reproducible_and_warm(tmp_path, trained):
    again = train_dataset(trained["data"], tmp_path / "m2", progress=False, seed=0)
    assert again["cache_hits"] == again["n_train"] + again["n_val"] and again["decoded"] == 0
    a = load_file(str(trained["model"] / "head.safetensors"))
    b = load_file(str(tmp_path / "m2" / "head.safetensors"))
    assert (a["weight"] == b["weight"]).all()



def test_no_onnx_runtime_session_is_held_while_the_head_is_fitted(tmp_path, monkeypatch):
    """The head is fitted after the last embedding, with ONNX Runtime's working memory given back:
    at 50,000 photos that keeps a cold train's peak under 1.5 GB (bench/scale.md)."""
    import importlib

    from upright import backbones

    train_module = importlib.import_module("upright.train")  # the module (upright.train is also the function)

    held = []
    real_fit = train_module.fit_head
    monkeypatch.setattr(train_module, "fit_head", lambda *a, **k: (held.append(len(backbones._runners)), real_fit(*a, **k))[1])
    data = make_dataset(tmp_path / "data", n_per_class=6)
    r = train_dataset(data, tmp_path / "m", progress=False, cache_dir=tmp_path / "cache", report=False)
    assert r["decoded"] == 12 and held == [0]

@pytest.mark.slow
def test_naive_policy_recorded(tmp_path, trained):
    r = train_dataset(trained["data"], tmp_path / "naive", orient=False, augment="none", progress=False)
    assert r["orientation_policy"] == "stored"
    m = load_model(tmp_path / "naive")
    assert m.meta["orientation_policy"] == "stored" and not m.orient


@pytest.mark.slow
def test_fine_tune_runs_and_is_recorded(tmp_path):
    data = make_dataset(tmp_path / "d", 2, ("a", "b"))
    r = train_dataset(data, tmp_path / "ft", fine_tune=True, epochs=1, progress=False)
    m = load_model(tmp_path / "ft")
    assert r["fine_tuned"] and m.meta["fine_tuned"] and m.meta["fine_tune"]["epochs"] == 1
    assert m.backbone_state is not None
    p = m.predict([next(data.rglob("*.jpg"))])[0]
    assert abs(sum(s for _, s in p.predictions) - 1) < 1e-4
