"""`upright export --preprocess` (raw upright pixels in, everything else in the graph) agrees with
`predict`; `upright eval --onnx` reads the exported graph back; `--format coreml` gives a loadable spec."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures import class_picture, require_module, write_photo

from upright.imaging import open_upright
from upright.model import load_model


@pytest.mark.slow
def test_preprocess_graph_takes_any_size_and_agrees_with_predict(trained, tmp_path, cli):
    import onnx
    import onnxruntime as ort

    out = tmp_path / "deploy.onnx"
    code, _, err = cli("export", trained["model"], "--format", "onnx", "--preprocess", "-o", out)
    assert code == 0, err
    m = load_model(trained["model"])
    g = onnx.load(str(out))
    meta = {p.key: p.value for p in g.metadata_props}
    assert json.loads(meta["labels"]) == m.labels
    pre = json.loads(meta["preprocessing"])
    assert pre["in_graph"] and pre["resize_short_side"] == 256 and pre["input_size"] == 224 and pre["layout"] == "nhwc"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (i,), (o,) = session.get_inputs(), session.get_outputs()
    assert (i.name, i.type, i.shape) == ("pixels", "tensor(uint8)", [1, "height", "width", 3])
    assert o.name == "probabilities" and o.shape == [1, len(m.labels)]
    # a small made-up set: the test photos as they are, plus big, small, portrait and tagged copies
    photos = [p for ps in trained["tests"].values() for p in ps]
    for k, (w, h, tag) in enumerate([(1600, 1200, None), (900, 1400, 6), (120, 90, None), (2000, 600, 3)]):
        photos.append(write_photo(tmp_path / f"extra{k}.jpg", class_picture(k % 3, 300 + k, w, h), tag))
    want = np.stack([[dict(p.predictions)[lab] for lab in m.labels] for p in m.predict(photos, top_k=99)])
    got = np.stack([session.run(None, {"pixels": np.asarray(open_upright(p))[None]})[0][0] for p in photos])
    assert (got.argmax(1) == want.argmax(1)).all()
    assert np.abs(got - want).max() < 0.05 and np.allclose(got.sum(1), 1, atol=1e-4)
    # the same file scores through eval --onnx (labels and contract from its metadata)
    tests = trained["tests"]["cat"][0].parent.parent
    code, text, err = cli("eval", "--onnx", out, tests, "--json")
    assert code == 0, err
    d, direct = json.loads(text), json.loads(cli("eval", trained["model"], tests, "--json")[1])
    assert d["accuracy"] == direct["accuracy"] and d["seen_in_training"] is None and "any size" in d["input_contract"]


@pytest.mark.slow
def test_coreml_export_loads_as_a_classifier_spec(trained, tmp_path, cli):
    ct = pytest.importorskip("coremltools")
    out = tmp_path / "m.mlpackage"
    code, _, err = cli("export", trained["model"], "--format", "coreml", "-o", out)
    assert code == 0, err
    assert "Failed to load" not in err and "Torch version" not in err  # coremltools' import notes stay quiet
    spec = ct.utils.load_spec(str(out))
    m = load_model(trained["model"])
    assert spec.WhichOneof("Type") == "mlProgram"
    (inp,) = spec.description.input
    assert inp.name == "image" and inp.type.imageType.width == 224 and inp.type.imageType.height == 224
    assert list(spec.description.metadata.userDefined.keys()) and json.loads(
        spec.description.metadata.userDefined["labels"]) == m.labels
    assert list(spec.mlProgram.functions) == ["main"] and spec.description.predictedFeatureName == "classLabel"
    assert [o.name for o in spec.description.output] == ["classLabel", "classLabel_probs"]
    # a second export replaces the package; a non-package path is refused in one line
    assert cli("export", trained["model"], "--format", "coreml", "-o", out)[0] == 0
    code, _, err = cli("export", trained["model"], "--format", "coreml", "-o", tmp_path / "m.onnx")
    assert code == 2 and ".mlpackage" in err
    code, _, err = cli("export", trained["model"], "--format", "coreml", "--preprocess", "-o", out)
    assert code == 2 and "--preprocess" in err


@pytest.mark.slow
def test_tflite_export_runs_in_the_litert_interpreter_and_agrees_with_predict(trained, tmp_path, cli):
    """Needs the [tflite] extra (litert-torch, ai-edge-litert): not in dev, it pins older pydantic and
    typing-extensions and pulls jax and transformers (docs/deploy.md: 'Deploy the model as it is')."""
    require_module("litert_torch", "UPRIGHT_REQUIRE_TFLITE", "the [tflite] extra is not installed "
                   "(make test-tflite runs this test)")
    from ai_edge_litert.interpreter import Interpreter

    from upright.pipeline.decode import load_canvas

    out = tmp_path / "m.tflite"
    code, _, err = cli("export", trained["model"], "--format", "tflite", "-o", out)
    assert code == 0, err
    m = load_model(trained["model"])
    assert (tmp_path / "m.labels.txt").read_text().splitlines() == m.labels
    it = Interpreter(model_path=str(out))
    it.allocate_tensors()
    (inp,), (outp,) = it.get_input_details(), it.get_output_details()
    assert list(inp["shape"]) == [1, 224, 224, 3] and inp["dtype"] == np.uint8 and list(outp["shape"]) == [1, 3]
    photos = [p for ps in trained["tests"].values() for p in ps]
    want = np.stack([[dict(p.predictions)[lab] for lab in m.labels] for p in m.predict(photos, top_k=99)])
    got = []
    for p in photos:
        it.set_tensor(inp["index"], load_canvas(p, m.contract)[0][None])
        it.invoke()
        got.append(it.get_tensor(outp["index"])[0])
    assert np.abs(np.stack(got) - want).max() < 1e-3
    # eval --tflite reads the file back: labels from m.labels.txt, raw uint8 pixels in, the rotation check
    code, text, err = cli("eval", "--tflite", out, trained["root"] / "upright-tests", "--json")
    assert code == 0, err
    d = json.loads(text)
    assert d["model_format"] == "tflite" and d["labels"] == m.labels and d["seen_in_training"] is None
    assert d["n"] == len(photos) and set(d["rotations"]) == {"0", "90", "180", "270"}
    assert d["input_contract"].startswith("NHWC uint8 224 x 224; short side resized to 256")
