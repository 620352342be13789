"""`upright eval --tflite FILE DATA`: a TFLite classifier built here (the orientation-sensitive StripeNet
converted by litert-torch; then, in the flatbuffer, its input quantised to uint8 or int8 and its output
to uint8) scored with the same figures and the 0/90/180/270 rotation check as an ONNX file.

The LiteRT interpreter and litert-torch live in the [tflite] side venv: `make test-tflite` runs this
file there (UPRIGHT_REQUIRE_TFLITE=1: a missing package fails instead of skipping)."""

from __future__ import annotations

import io
import json
import sys
import zipfile

import numpy as np
import pytest
from fixtures import STRIPES, require_module
from test_external_eval import StripeNet, stripes_data  # noqa: F401  (a fixture)

SIZE = 32
NEED = ("the LiteRT interpreter / litert-torch are not installed (make test-tflite runs this file in "
        "the [tflite] side venv)")


def convert(net) -> bytes:
    """A torch module taking float NHWC [1, SIZE, SIZE, 3] -> TFLite flatbuffer bytes (litert-torch)."""
    import torch

    litert_torch = require_module("litert_torch", "UPRIGHT_REQUIRE_TFLITE", NEED)
    edge = litert_torch.convert(net.eval(), (torch.zeros(1, SIZE, SIZE, 3),))
    return bytes(edge.model_content())


def quantise_io(model: bytes, dtype=None, scale=1 / 255, zero=0, out_scale=None) -> bytes:
    """The float model with its input taken as `dtype` (uint8/int8, scale and zero point) through a
    DEQUANTIZE op, and with `out_scale` its output given as uint8 through a QUANTIZE op: what a fully
    quantised converter's interface looks like (ai_edge_litert's flatbuffer schema, object API)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    m = s.ModelT.InitFromObj(s.Model.GetRootAsModel(model, 0))
    g = m.subgraphs[0]

    def op(code: int, inputs: list[int], outputs: list[int]):
        codes = [c.builtinCode for c in m.operatorCodes]
        if code not in codes:
            m.operatorCodes.append(s.OperatorCodeT(deprecatedBuiltinCode=code, builtinCode=code, version=1))
            codes.append(code)
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = codes.index(code), inputs, outputs
        return o

    def tensor_like(i: int, ttype: int, qscale: float, qzero: int) -> int:
        t = s.TensorT()
        t.shape, t.shapeSignature, t.type, t.buffer = g.tensors[i].shape, g.tensors[i].shapeSignature, ttype, 0
        t.name = g.tensors[i].name + b"_q"
        t.quantization = s.QuantizationParametersT(scale=[qscale], zeroPoint=[qzero])
        g.tensors.append(t)
        return len(g.tensors) - 1

    def repoint(maps, old: int, new: int):
        for sig in m.signatureDefs or []:
            for tm in getattr(sig, maps):
                tm.tensorIndex = new if tm.tensorIndex == old else tm.tensorIndex

    if dtype is not None:
        old = g.inputs[0]
        new = tensor_like(old, {np.uint8: s.TensorType.UINT8, np.int8: s.TensorType.INT8}[dtype], scale, zero)
        g.operators.insert(0, op(s.BuiltinOperator.DEQUANTIZE, [new], [old]))
        g.inputs = [new]
        repoint("inputs", old, new)
    if out_scale is not None:
        old = g.outputs[0]
        new = tensor_like(old, s.TensorType.UINT8, out_scale, 0)
        g.operators.append(op(s.BuiltinOperator.QUANTIZE, [old], [new]))
        g.outputs = [new]
        repoint("outputs", old, new)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def with_packed_labels(model: bytes, labels) -> bytes:
    """The model with a zip of labels.txt appended, as TFLite metadata packs associated files."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("labels.txt", "".join(f"{lab}\n" for lab in labels))
    return model + buf.getvalue()


@pytest.fixture(scope="module")
def stripes_tflite(tmp_path_factory):
    require_module("ai_edge_litert.interpreter", "UPRIGHT_REQUIRE_TFLITE", NEED)
    root = tmp_path_factory.mktemp("tflite")
    plain = convert(StripeNet(nhwc=True))
    probs = convert(StripeNet(nhwc=True, probabilities=True))
    files = {"float32": plain, "probabilities": probs, "uint8": quantise_io(plain, np.uint8, 1 / 255, 0),
             "int8": with_packed_labels(quantise_io(probs, np.int8, 1 / 255, -128, out_scale=1 / 256), STRIPES)}
    out = {}
    for name, data in files.items():
        out[name] = root / f"{name}.tflite"
        out[name].write_bytes(data)
    (root / "uint8.labels.txt").write_text("horizontal\nvertical\n")  # as upright export writes it
    return out


@pytest.mark.slow
def test_tflite_float_and_quantised_inputs_score_with_the_rotation_check(stripes_tflite, stripes_data, cli):
    runs = {"float32": ["--labels", ",".join(STRIPES), "--std", "255"],  # a float net on [0, 1] input
            "uint8": [],  # q = pixel: real = q / 255, labels from uint8.labels.txt beside it
            "int8": []}   # q = pixel - 128: real = (q + 128) / 255, labels packed in the file; uint8 output
    for name, extra in runs.items():
        code, out, err = cli("eval", "--tflite", stripes_tflite[name], stripes_data, "--json", *extra)
        assert code == 0, (name, err)
        d = json.loads(out)
        assert d["accuracy"] == 1.0 and d["n"] == 6 and d["labels"] == list(STRIPES), name
        assert d["rotations"] == {"0": 1.0, "90": 0.0, "180": 1.0, "270": 0.0}, name  # it learned "which way is up"
        assert d["model_format"] == "tflite" and d["seen_in_training"] is None, name
        assert d["input_contract"].startswith(f"NHWC {name} 32 x 32; short side resized to 37"), name
    assert "(x - 0) / 255, quantised (scale 0.00392157, zero point -128)" in d["input_contract"]
    from upright.tflite_runner import evaluate_tflite

    # a quantised output is dequantised: the float net's probabilities to within a step (1/256),
    # not softmaxed again (int8 input q = pixel - 128 is exactly the float net's pixel / 255)
    r = evaluate_tflite(stripes_tflite["int8"], stripes_data, rotations=False)
    want = evaluate_tflite(stripes_tflite["probabilities"], stripes_data, labels=list(STRIPES),
                           std=(255.0,) * 3, rotations=False)
    assert set(r.rotations) == {"0"} and max(p["score"] for p in r.photos) > 0.99
    assert all(abs(p["score"] - w["score"]) <= 1 / 256 for p, w in zip(r.photos, want.photos))


@pytest.mark.slow
def test_tflite_quantised_input_follows_mean_and_std(stripes_tflite, stripes_data):
    from upright.tflite_runner import TFLiteModel

    crop = np.full((SIZE, SIZE, 3), 200, np.uint8)
    default = TFLiteModel(stripes_tflite["int8"])
    from upright.pipeline.decode import to_input

    assert int(to_input([crop], default.contract)[0, 0, 0, 0]) == 200 - 128
    halved = TFLiteModel(stripes_tflite["int8"], mean=(0.0,) * 3, std=(510.0,) * 3)  # real = x / 510
    assert int(to_input([crop], halved.contract)[0, 0, 0, 0]) == round(200 / 2) - 128


def test_bad_tflite_files_are_one_line_errors(stripes_data, tmp_path, cli, monkeypatch):
    """File gates (no interpreter needed) and, where LiteRT is installed, what it refuses."""
    empty, junk, onnxish = tmp_path / "empty.tflite", tmp_path / "junk.tflite", tmp_path / "x.tflite"
    empty.write_bytes(b"")
    junk.write_bytes(b"\0\0\0\0TFL3" + np.random.default_rng(0).bytes(4096))
    onnxish.write_bytes(b"\x08\x07\x12\x07pytorch" * 50)
    cases = [(empty, "empty"), (onnxish, "no TFL3"), (tmp_path / "missing.tflite", "cannot read"),
             (tmp_path, "not a regular file")]
    if "ai_edge_litert" in sys.modules or _importable("ai_edge_litert.interpreter"):
        cases.append((junk, "LiteRT cannot run it"))
    for f, words in cases:
        code, _, err = cli("eval", "--tflite", f, stripes_data, "--labels", "a,b")
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, (f.name, err)
    for argv in (["eval", "--tflite", junk, "--onnx", junk, stripes_data], ["eval", "--tflite", junk, stripes_data,
                                                                             stripes_data]):
        code, _, err = cli(*argv)
        assert code == 2 and len(err.strip().splitlines()) == 1, (argv, err)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # as where it is not installed
    code, _, err = cli("eval", "--tflite", junk, stripes_data, "--labels", "a,b")
    assert code == 2 and "pip install ai-edge-litert" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_tflite_models_eval_refuses_are_one_line_errors(stripes_tflite, stripes_data, tmp_path, cli):
    cases = [(stripes_tflite["float32"], [], "no labels"),
             (stripes_tflite["float32"], ["--labels", "a,b,c"], "one score per label"),
             (stripes_tflite["float32"], ["--labels", "a,b", "--input-size", "64"], "takes 32")]
    for f, extra, words in cases:
        code, _, err = cli("eval", "--tflite", f, stripes_data, *extra)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, (extra, err)


def _importable(name: str) -> bool:
    try:
        __import__(name)
        return True
    except ImportError:
        return False


@pytest.mark.slow
def test_the_keras_users_path_fit_export_litert_then_eval_tflite(stripes_data, tmp_path, cli):
    """docs/loaders.md's path on Keras' torch backend: upright.keras feeds model.fit, Keras' own
    model.export(format="litert") writes the file (via litert-torch), eval --tflite scores it."""
    require_module("litert_torch", "UPRIGHT_REQUIRE_TFLITE", NEED)
    keras = require_module("keras", "UPRIGHT_REQUIRE_TFLITE", "Keras 3 is not installed")
    import upright.keras as uk

    train = uk.image_dataset_from_directory(stripes_data, image_size=(SIZE, SIZE), batch_size=2, seed=1,
                                            verbose=False)
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Conv2D(4, 3, use_bias=False, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    dy = np.array([[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]])  # horizontal stripes' edges
    kernels = np.stack([dy, -dy, dy.T, -dy.T], -1)[:, :, None, :].repeat(3, 2) / 3  # [3, 3, 3 channels, 4]
    model.layers[1].set_weights([kernels.astype(np.float32)])  # orientation-sensitive by construction
    model.layers[3].set_weights([np.array([[20, 0], [20, 0], [0, 20], [0, 20]], np.float32), np.zeros(2, np.float32)])
    model.compile(optimizer=keras.optimizers.SGD(1e-6), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(train, epochs=1, verbose=0)
    out = tmp_path / "model.tflite"
    model.export(str(out), format="litert", verbose=False)
    code, text, err = cli("eval", "--tflite", out, stripes_data, "--labels", ",".join(train.class_names), "--json")
    assert code == 0, err
    d = json.loads(text)
    assert d["accuracy"] == 1.0 and d["rotations"] == {"0": 1.0, "90": 0.0, "180": 1.0, "270": 0.0}
    assert d["input_contract"].startswith("NHWC float32 32 x 32") and d["model_format"] == "tflite"
