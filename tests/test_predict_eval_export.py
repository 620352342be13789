import json
import shutil

import numpy as np
import pytest

from upright import backbones, load_model
from upright.errors import UprightError
from upright.evaluate import evaluate
from fixtures import class_picture, encode, make_dataset


def test_predict_json_lines(trained, cli, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    folder = trained["tests"]["cat"][0].parent
    code, out, err = cli("predict", str(trained["model"]), str(folder), str(bad), "--json", "--top-k", "2")
    assert code == 1 and "1 of 3 inputs could not be read" in err  # the others are still predicted
    lines = [json.loads(x) for x in out.strip().splitlines()]
    assert len(lines) == len(trained["tests"]["cat"]) + 1
    for d in lines[:-1]:
        assert set(d) == {"path", "orientation", "predictions"}
        assert len(d["predictions"]) == 2 and set(d["predictions"][0]) == {"label", "score"}
        assert d["predictions"][0]["label"] == "cat"
    assert lines[-1]["predictions"] == [] and lines[-1]["error"]
    # mixed items through the Python API: path, bytes, PIL image
    m = load_model(trained["model"])
    preds = m.predict([trained["tests"]["owl"][0], encode(class_picture(2, 150), orientation=6),
                       class_picture(2, 151)], top_k=1)
    assert [p.predictions[0][0] for p in preds] == ["owl"] * 3
    assert preds[1].orientation == 6 and preds[1].path is None
    assert m.predict_images([class_picture(0, 160)], top_k=1)[0][0][0] == "cat"
    with pytest.raises(UprightError):
        m.predict([bad])


def test_eval_json_and_report(trained, cli, tmp_path):
    test_root = trained["tests"]["cat"][0].parent.parent
    report = tmp_path / "eval.html"
    code, out, err = cli("eval", str(trained["model"]), str(test_root), "--json", "--report", str(report))
    assert code == 0
    d = json.loads(out)
    for key in ("accuracy", "n", "per_class", "confusion", "labels", "rotations"):
        assert key in d
    assert d["n"] == 6 and d["accuracy"] == 1.0 and set(d["rotations"]) == {"0", "90", "180", "270"}
    assert set(d["per_class"]["cat"]) >= {"precision", "recall", "n"}
    assert np.array(d["confusion"]).sum() == 6
    html = report.read_text()
    assert "data:image/png;base64" in html and "http://" not in html and "https://" not in html
    same = evaluate(trained["model"], test_root, progress=False)
    assert same["rotations"] == d["rotations"]


def test_export_matches_predict(trained, tmp_path, cli):
    import onnx
    import onnxruntime as ort

    from upright.pipeline.decode import load_canvas, to_input

    out = tmp_path / "whole.onnx"
    code, _, err = cli("export", str(trained["model"]), "--format", "onnx", "-o", str(out))
    assert code == 0 and out.is_file()
    m = load_model(trained["model"])
    paths = [p for ps in trained["tests"].values() for p in ps]
    x = to_input(np.stack([load_canvas(p, m.contract)[0] for p in paths]), m.contract)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0]
    want = np.stack([[dict(p.predictions)[lab] for lab in m.labels] for p in m.predict(paths, top_k=99)])
    assert got.shape == (len(paths), 3)
    assert np.abs(got - want).max() < 1e-4
    # the input contract travels with the graph and with model.json, from the backbone spec
    spec, c = backbones.spec(m.backbone), m.contract
    assert (c.size, c.resize, c.mean, c.std) == (spec.size, spec.resize, (spec.mean,) * 3, (spec.std,) * 3)
    doc = onnx.load(str(out)).graph.input[0].doc_string
    assert doc == c.describe_input() and c.scaling in doc and f"short side is {spec.resize}" in doc
    assert m.meta["preprocessing"]["scaling"] == c.scaling == m.meta["onnx_input"]["scaling"] == "(x - 127) / 128"
    assert m.meta["preprocessing"]["input_size"] == spec.size == session.get_inputs()[0].shape[2]
    assert m.meta["input_contract"] == c.stored() and "test_views" not in c.stored()


def test_error_cases_exit_2_with_one_line(trained, cli, tmp_path):
    one = make_dataset(tmp_path / "one", n_per_class=2, classes=("solo",))
    empty = make_dataset(tmp_path / "empty", n_per_class=2, classes=("a",))
    (empty / "b").mkdir()
    junk = tmp_path / "junk"
    for lab in ("a", "b"):
        (junk / lab).mkdir(parents=True)
        (junk / lab / "x.jpg").write_bytes(b"nope")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(trained["model"], corrupt)
    (corrupt / "model.json").write_text("{not json")
    cases = [
        ("train", str(tmp_path / "missing"), "-o", str(tmp_path / "m")),
        ("train", str(one), "-o", str(tmp_path / "m")),
        ("train", str(empty), "-o", str(tmp_path / "m")),
        ("train", str(junk), "-o", str(tmp_path / "m")),
        ("predict", str(tmp_path / "nomodel"), str(one)),
        ("predict", str(corrupt), str(one)),
        ("eval", str(trained["model"]), str(tmp_path / "missing")),
        ("export", str(tmp_path / "nomodel")),
    ]
    for argv in cases:
        code, out, err = cli(*argv)
        assert code == 2, (argv, code, err)
        lines = err.strip().splitlines()
        assert "Traceback" not in err and lines[-1].startswith("upright: error:"), (argv, err)
        assert sum("error" in x for x in lines) == 1, (argv, err)  # progress bars may precede it
    # an input that cannot be read is not a usage error: exit 1, the reason on one line
    code, out, err = cli("predict", str(trained["model"]), str(tmp_path / "nothing.jpg"))
    assert code == 1 and "Traceback" not in err and "nothing.jpg" in err


def test_unreadable_files_skipped_and_listed(tmp_path):
    from upright.train import train_dataset

    data = make_dataset(tmp_path / "d", n_per_class=4, classes=("a", "b"))
    (data / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    r = train_dataset(data, tmp_path / "m", progress=False, augment="none")
    assert [u["path"].endswith("broken.jpg") for u in r["unreadable"]] == [True]
    assert r["n_train"] + r["n_val"] == 8


def test_predict_csv_output_file_and_exit_codes(trained, cli, tmp_path):
    import csv
    import io

    folder = trained["tests"]["dog"][0].parent
    csv_path, jsonl = tmp_path / "p.csv", tmp_path / "p.jsonl"
    code, out, err = cli("predict", str(trained["model"]), str(folder), "--csv", str(csv_path),
                             "--output", str(jsonl), "--top-k", "2")
    assert code == 0 and "dog" in out
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert [r["label"] for r in rows] == ["dog", "dog"] and list(rows[0]) == ["path", "orientation", "label",
                                                                              "score", "top", "error"]
    assert 0.5 < float(rows[0]["score"]) <= 1 and rows[0]["top"].count(";") == 1 and rows[0]["error"] == ""
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert [d["predictions"][0]["label"] for d in lines] == ["dog", "dog"]
    bad = tmp_path / "empty.jpg"
    bad.write_bytes(b"")
    code, out, err = cli("predict", str(trained["model"]), str(bad), str(folder), "--csv", str(csv_path))
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert code == 1 and len(rows) == 3 and rows[0]["error"] and rows[0]["label"] == ""


def test_a_lone_file_object_or_memoryview_is_one_image(trained):
    import io

    m = load_model(trained["model"])
    data = encode(class_picture(2, 170))
    for item in (io.BytesIO(data), memoryview(data), data):
        preds = m.predict(item, top_k=1)
        assert len(preds) == 1 and preds[0].predictions[0][0] == "owl", type(item)


def test_eval_csv_macro_f1_top_k_and_absent_classes(trained, cli, tmp_path):
    import csv
    import io

    two = tmp_path / "two"  # the model knows cat, dog, owl; these photos hold no owl
    for lab, paths in trained["tests"].items():
        if lab != "owl":
            for p in paths:
                (two / lab).mkdir(parents=True, exist_ok=True)
                shutil.copy(p, two / lab / p.name)
    (two / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    out_csv = tmp_path / "rows.csv"
    code, out, err = cli("eval", str(trained["model"]), str(two), "--json", "--csv", str(out_csv))
    d = json.loads(out)
    assert code == 0 and d["n"] == 4 and d["seen_in_training"] == 0 and d["csv"] == str(out_csv)
    assert d["per_class"]["owl"]["recall"] is None and d["per_class"]["owl"]["f1"] is None
    assert d["per_class"]["owl"]["n"] == 0 and d["macro_f1"] == 1.0  # over the classes present
    assert d["top_k_accuracy"] == {"1": 1.0, "2": 1.0}
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert list(rows[0])[:5] == ["path", "label", "predicted", "score", "seen_in_training"]
    assert len(rows) == 5 and sum(bool(r["error"]) for r in rows) == 1
    assert {r["seen_in_training"] for r in rows if not r["error"]} == {"false"}
    code, out, err = cli("eval", str(trained["model"]), str(two))
    owl = [line for line in out.splitlines() if line.strip("│ ").startswith("owl")][0]
    # none was fitted; the generated stripes of one class are near copies of each other (cosine >= the
    # audit's threshold), and eval says so (tests/test_near_copies.py: real photos)
    assert owl.count("n/a") == 3 and "none of the 4 photos was used in training" in " ".join(out.split())


def test_eval_precision_recall_f1_by_hand():
    from upright.metrics import classification_metrics as _metrics

    y = np.array([0, 0, 0, 1, 1, 2])
    p = np.array([0, 0, 1, 1, 0, 1])
    m = _metrics(y, p, ["a", "b", "c", "d"])
    # a: predicted 3 times, 2 right, 3 photos; b: predicted 3 times, 1 right, 2 photos
    assert m["per_class"]["a"] == {"precision": round(2 / 3, 6), "recall": round(2 / 3, 6), "f1": round(4 / 6, 6), "n": 3}
    assert m["per_class"]["b"] == {"precision": round(1 / 3, 6), "recall": 0.5, "f1": 0.4, "n": 2}
    assert m["per_class"]["c"] == {"precision": None, "recall": 0.0, "f1": 0.0, "n": 1}  # never predicted
    assert m["per_class"]["d"] == {"precision": None, "recall": None, "f1": None, "n": 0}  # absent
    assert abs(m["macro_f1"] - np.mean([4 / 6, 0.4, 0.0])) < 1e-6  # over a, b, c: the classes present


def test_rotation_check_centre_full_none(trained, cli):
    """--rotation-check: each turn scored on the centre views (default), every test view, or no turns;
    the accuracy is the model's own (its test views, upright) whichever is chosen."""
    from upright.evaluate import ROTATION_CHECKS, rotation_views
    from upright.views import TEN_CROPS

    test_root = trained["tests"]["cat"][0].parent.parent
    runs = {}
    for check in ROTATION_CHECKS:
        code, out, err = cli("eval", str(trained["model"]), str(test_root), "--json", "--rotation-check", check)
        assert code == 0, err
        runs[check] = json.loads(out)
    assert runs["none"]["rotations"] == {"0": runs["none"]["accuracy"]} and runs["none"]["rotation_views"] == []
    assert runs["none"]["rotation_check"] == "none"
    m = load_model(trained["model"])
    # a fast model's test views all sit at the centre: "centre" is the full check, and says so
    assert runs["centre"]["rotation_check"] == runs["full"]["rotation_check"] == "full"
    assert runs["centre"]["rotations"] == runs["full"]["rotations"] and runs["full"]["rotation_views"] == list(m.views)
    assert len({r["accuracy"] for r in runs.values()}) == 1
    # an accurate model's 10 crops: "centre" turns the centre crop and its mirror, "full" all ten
    assert rotation_views(TEN_CROPS, "centre") == ["id", "flip"] and rotation_views(TEN_CROPS, "full") == list(TEN_CROPS)
    code, out, err = cli("eval", str(trained["model"]), str(test_root), "--rotation-check", "none")
    assert code == 0 and "rotation check skipped (--rotation-check none)" in " ".join(out.split())
    code, out, err = cli("eval", str(trained["model"]), str(test_root), "--rotation-check", "half")
    assert code == 2 and "Traceback" not in err


def test_eval_onnx_knows_uprights_own_export(trained, cli, tmp_path):
    """An ONNX file upright exported is not "trained elsewhere": in its model folder (export's
    default place) eval counts the photos it was fitted on; moved away, eval says what it knows."""
    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    code, _, err = cli("export", str(model), "--format", "onnx")
    assert code == 0, err
    onnx_file = model / "model.onnx"
    data = trained["data"]  # the training photos themselves: every one was fitted
    code, out, err = cli("eval", "--onnx", str(onnx_file), str(data), "--json", "--rotation-check", "none")
    d = json.loads(out)
    assert code == 0 and d["model_format"] == "onnx" and d["seen_in_training"] == d["n"] == 18
    assert d["exported_by_upright"]["model_folder"] == str(model) and d["exported_by_upright"]["fitted_photos"] == 18
    assert d["near_copies_of_training"] == 0
    code, out, err = cli("eval", "--onnx", str(onnx_file), str(data), "--rotation-check", "none")
    words = " ".join(out.split())
    assert "checked against the model folder this file was exported from" in words and "NOT A TEST" in out
    assert "trained elsewhere" not in words
    moved = tmp_path / "elsewhere" / "m.onnx"
    moved.parent.mkdir()
    shutil.copy(onnx_file, moved)
    code, out, err = cli("eval", "--onnx", str(moved), str(data), "--rotation-check", "none")
    words = " ".join(out.split())
    assert code == 0 and "exported by upright" in words and "from a model fitted on 18 photos" in words
    assert "seen_in_training unknown" in words and "trained elsewhere" not in words
