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
    assert code == 0
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

    from upright.preprocess import load_crop, to_input

    out = tmp_path / "whole.onnx"
    code, _, err = cli("export", str(trained["model"]), "--format", "onnx", "-o", str(out))
    assert code == 0 and out.is_file()
    m = load_model(trained["model"])
    paths = [p for ps in trained["tests"].values() for p in ps]
    x = to_input(np.stack([load_crop(p, m.backbone)[0] for p in paths]), m.backbone)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0]
    want = np.stack([[dict(p.predictions)[lab] for lab in m.labels] for p in m.predict(paths, top_k=99)])
    assert got.shape == (len(paths), 3)
    assert np.abs(got - want).max() < 1e-4
    # the input contract travels with the graph and with model.json, from the backbone spec
    spec = backbones.spec(m.backbone)
    doc = onnx.load(str(out)).graph.input[0].doc_string
    assert doc == spec.describe_input() and spec.scaling in doc and f"short side is {spec.resize}" in doc
    assert m.meta["preprocessing"]["scaling"] == spec.scaling == m.meta["onnx_input"]["scaling"]
    assert m.meta["preprocessing"]["input_size"] == spec.size == session.get_inputs()[0].shape[2]


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
        ("predict", str(trained["model"]), str(tmp_path / "nothing.jpg")),
        ("eval", str(trained["model"]), str(tmp_path / "missing")),
        ("export", str(tmp_path / "nomodel")),
    ]
    for argv in cases:
        code, out, err = cli(*argv)
        assert code == 2, (argv, code, err)
        lines = err.strip().splitlines()
        assert "Traceback" not in err and lines[-1].startswith("upright: error:"), (argv, err)
        assert sum("error" in x for x in lines) == 1, (argv, err)  # progress bars may precede it


def test_unreadable_files_skipped_and_listed(tmp_path):
    from upright.train import train_dataset

    data = make_dataset(tmp_path / "d", n_per_class=4, classes=("a", "b"))
    (data / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    r = train_dataset(data, tmp_path / "m", progress=False, augment="none")
    assert [u["path"].endswith("broken.jpg") for u in r["unreadable"]] == [True]
    assert r["n_train"] + r["n_val"] == 8
