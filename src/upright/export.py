"""`upright export MODEL --format onnx [--preprocess]`: one ONNX graph, backbone + head (+ test views).

Plain: input "input" is the model's input contract (contract.InputContract.describe_input,
also written into the graph as the input's description and into model.json "preprocessing"):
float32 [batch, 3, S, S] RGB, the upright picture resized so its short side is `resize`,
centre-cropped to S x S and scaled. Output "probabilities": [batch, n_labels] in the order of
model.json "labels", averaged over the model's test views exactly as `upright predict` does.

--preprocess: input "pixels" uint8 [1, H, W, 3], upright RGB of any size; the graph resizes
(short side to `resize`: ONNX Resize, cubic a=-0.5 with antialiasing, as Pillow's bicubic),
rounds to 8 bits, centre-crops and scales before the same network (opset 18). What differs from
`predict`: predict decodes a big JPEG in the DCT domain (1/2, 1/4, 1/8) before its bicubic
resize, and Pillow rounds between its two resize passes; the graph resizes the full pixels in
one antialiased step. Both graphs carry metadata: "labels" (JSON list) and "preprocessing" (JSON,
the input contract in numbers: external.py reads it back for `eval --onnx`).

--format coreml (coremltools) and --format tflite (litert-torch) convert the same module
(build_module) for phones; both take the centre crop with the scaling inside.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import __version__, backbones
from .console import err
from .contract import InputContract
from .errors import UprightError
from .model import Model, load_model
from .orientation import VARIANTS
from .views import parse as parse_view


def graph_views(m, preprocess: bool = False) -> list[str]:
    """The test views an exported graph averages. With --preprocess the graph holds the resized
    picture, so it cuts every view whose variant is the identity or the mirror (all of --preset
    accurate's 10 crops); a graph fed one centre crop averages the views of that crop alone."""
    if preprocess and all(parse_view(v)[0] in ("id", "flip") for v in m.views):
        return list(m.views)
    return [v for v in m.views if parse_view(v)[1] == "centre"] or ["id"]


def differs_note(m, preprocess: bool = False) -> str | None:
    """One line saying how the exported graph differs from `upright predict`, or None."""
    extra = [v for v in m.views if v not in graph_views(m, preprocess)]
    if not extra:
        return None
    return (f"the exported graph takes one centre crop and averages {' + '.join(graph_views(m))}; upright predict "
            f"also averages {len(extra)} corner views ({len(m.views)} in all), so its scores differ slightly "
            "(metadata test_views / test_views_in_graph; --preprocess puts every view in the graph)")


def variant_tensor(x, variant: str):
    """The `variant` (orientation.VARIANTS) of an NCHW torch batch: the torch twin of
    orientation.variant_array (tests/test_views.py checks they agree on all eight)."""
    import torch

    flip, k = VARIANTS[variant]
    if flip:  # NCHW: width is dim 3
        x = torch.flip(x, dims=[3])
    return torch.rot90(x, k=-k, dims=(2, 3)) if k else x  # negative k = clockwise


def build_module(m, views=None):
    """The whole model as a torch module: preprocessed input -> probabilities, averaged over
    `views` (default graph_views(m)), variants of the centre crop it is given."""
    import torch

    sd = None
    if m.backbone_state is not None:
        sd = {k: torch.from_numpy(np.array(v)) for k, v in m.backbone_state.items()}
    emb = backbones.torch_module(m.backbone, sd)
    views = list(graph_views(m) if views is None else views)

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = emb
            self.head = torch.nn.Linear(m.weight.shape[1], m.weight.shape[0])
            with torch.no_grad():
                self.head.weight.copy_(torch.from_numpy(m.weight))
                self.head.bias.copy_(torch.from_numpy(m.bias))

        def forward(self, x):
            probs = None
            for view in views:
                p = torch.softmax(self.head(self.backbone(variant_tensor(x, view))), dim=1)
                probs = p if probs is None else probs + p
            return probs / len(views)

    return Classifier().eval()


#: ONNX opset of the exported graphs with --preprocess (Resize's antialias needs 18).
PREPROCESS_OPSET = 18
FORMATS = ("onnx", "coreml", "tflite")


def preprocess_graph(c: InputContract, ir_version: int, views=("id",)):
    """uint8 [1, H, W, 3] upright RGB -> float32 [V, 3, S, S] network input, by the input contract.

    Short side to c.resize (the long side rounded as Pillow does, never under c.size), cubic
    with antialiasing when shrinking (what Pillow's bicubic does), rounded and clipped to
    0-255 as an 8-bit resize is, then one S x S window per view (upright.views: the centre at
    (w - S) // 2 as pipeline.decode.centre_crop, or a corner; mirrored for "flip" views) and scaled.
    """
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value, dtype):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value, dtype), name))

    nodes = [
        const("c_resize", c.resize, np.float32), const("c_size_f", float(c.size), np.float32),
        const("c_size", [c.size, c.size], np.int64), const("c_nc", [1, 3], np.int64),
        const("c_hw_idx", [1, 2], np.int64), const("c_two", 2, np.int64), const("c_axes", [2, 3], np.int64),
        const("c_lo", 0.0, np.float32), const("c_hi", 255.0, np.float32),
        const("c_mean", np.reshape(c.mean, (1, 3, 1, 1)), np.float32),
        const("c_std", np.reshape(c.std, (1, 3, 1, 1)), np.float32),
        helper.make_node("Cast", ["pixels"], ["x_f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["x_f"], ["x_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Shape", ["pixels"], ["shape"]),
        helper.make_node("Gather", ["shape", "c_hw_idx"], ["hw"], axis=0),
        helper.make_node("Cast", ["hw"], ["hw_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMin", ["hw_f"], ["short"], keepdims=0),
        helper.make_node("Div", ["c_resize", "short"], ["scale"]),
        helper.make_node("Mul", ["hw_f", "scale"], ["hw_scaled"]),
        helper.make_node("Round", ["hw_scaled"], ["hw_round"]),
        helper.make_node("Max", ["hw_round", "c_size_f"], ["hw_target_f"]),
        helper.make_node("Cast", ["hw_target_f"], ["hw_target"], to=TensorProto.INT64),
        helper.make_node("Concat", ["c_nc", "hw_target"], ["sizes"], axis=0),
        helper.make_node("Resize", ["x_nchw", "", "", "sizes"], ["resized"], mode="cubic", cubic_coeff_a=-0.5,
                         antialias=1, exclude_outside=1, coordinate_transformation_mode="half_pixel"),
        helper.make_node("Round", ["resized"], ["resized_r"]),
        helper.make_node("Clip", ["resized_r", "c_lo", "c_hi"], ["resized_8"]),
        helper.make_node("Sub", ["hw_target", "c_size"], ["margin"]),
        helper.make_node("Div", ["margin", "c_two"], ["start_centre"]),
        const("c_flip_start", [-1], np.int64), const("c_flip_end", [np.iinfo(np.int64).min], np.int64),
        const("c_flip_axis", [3], np.int64), const("c_flip_step", [-1], np.int64),
    ]
    corner_mask = {"top-left": [0, 0], "top-right": [0, 1], "bottom-left": [1, 0], "bottom-right": [1, 1]}
    windows = []
    for k, view in enumerate(views):
        variant, position = parse_view(view)
        start = "start_centre"
        if position != "centre":
            start = f"start_{k}"
            nodes += [const(f"c_mask_{k}", corner_mask[position], np.int64),
                      helper.make_node("Mul", ["margin", f"c_mask_{k}"], [start])]
        nodes += [helper.make_node("Add", [start, "c_size"], [f"end_{k}"]),
                  helper.make_node("Slice", ["resized_8", start, f"end_{k}", "c_axes"], [f"window_{k}"])]
        if variant == "flip":
            nodes.append(helper.make_node("Slice", [f"window_{k}", "c_flip_start", "c_flip_end", "c_flip_axis",
                                                    "c_flip_step"], [f"view_{k}"]))
        else:
            nodes.append(helper.make_node("Identity", [f"window_{k}"], [f"view_{k}"]))
        windows.append(f"view_{k}")
    nodes += [helper.make_node("Concat", windows, ["cropped"], axis=0),
              helper.make_node("Sub", ["cropped", "c_mean"], ["centred"]),
              helper.make_node("Div", ["centred", "c_std"], ["input"])]
    graph = helper.make_graph(
        nodes, "upright_preprocess",
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, [1, "height", "width", 3])],
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [len(views), 3, c.size, c.size])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", PREPROCESS_OPSET)],
                             ir_version=ir_version, producer_name="upright")


def _pixels_description(c: InputContract, views=("id",)) -> str:
    cut = (f"centre-crops {c.size} x {c.size}" if len(views) == 1 else
           f"cuts the {len(views)} test views ({c.size} x {c.size} windows, see metadata test_views_in_graph) "
           "whose probabilities it averages,")
    return (f"uint8 [1, height, width, 3] RGB, the picture upright (e.g. upright.open_upright), any size: "
            f"the graph resizes its short side to {c.resize} (cubic, antialiased), {cut} and scales {c.scaling}")


def _mean_over_views(network):
    """The network's "probabilities" [V, C] (one row per view) -> their mean [1, C], same name."""
    from onnx import TensorProto, helper, numpy_helper

    g = network.graph
    (out,) = g.output
    for node in g.node:
        node.output[:] = ["view_probabilities" if o == out.name else o for o in node.output]
    n_labels = out.type.tensor_type.shape.dim[1]
    g.node.append(helper.make_node("Constant", [], ["c_view_axis"],
                                   value=numpy_helper.from_array(np.array([0], np.int64), "c_view_axis")))
    g.node.append(helper.make_node("ReduceMean", ["view_probabilities", "c_view_axis"], [out.name], keepdims=1))
    g.ClearField("output")
    g.output.append(helper.make_tensor_value_info(out.name, TensorProto.FLOAT, [1, n_labels.dim_value or None]))
    return network


def with_preprocessing(network, c: InputContract, views=("id",)):
    """The exported network (ModelProto, input "input") with the preprocessing graph in front;
    with several `views`, the graph embeds each window and averages their probabilities."""
    import onnx
    from onnx import compose, version_converter

    network = version_converter.convert_version(network, PREPROCESS_OPSET)
    if len(views) > 1:
        network = _mean_over_views(network)
    merged = compose.merge_models(preprocess_graph(c, network.ir_version, views), network,
                                  io_map=[("input", "input")])
    merged.graph.input[0].doc_string = _pixels_description(c, views)
    unique = {(o.domain, o.version): o for o in merged.opset_import}.values()  # merge repeats them
    merged.ClearField("opset_import")
    merged.opset_import.extend(unique)
    onnx.checker.check_model(merged)
    return merged


def source_metadata(m: Model) -> dict[str, str]:
    """Which model folder a graph came from, for `eval --onnx`: its head's sha256 (eval finds the
    folder beside the file by it) and how many photos it was fitted on. Not the photos'
    fingerprints: a shipped file says nothing of which photos trained it."""
    meta = {}
    if m.info.head_sha256:
        meta["upright_head_sha256"] = m.info.head_sha256
    if m.info.fitted_on is not None:
        meta["upright_fitted_photos"] = str(m.info.fitted_on.photos)
    return meta


def export_onnx(model, output=None, preprocess: bool = False) -> Path:
    """Write MODEL's whole graph (build_module) to `output` (default MODEL/model.onnx), atomically,
    with "labels" and "preprocessing" metadata; with `preprocess`, raw uint8 pixels in."""
    import tempfile

    import onnx

    from .atomic import atomic_path

    m = model if isinstance(model, Model) else load_model(model)
    out = Path(output) if output is not None else m.folder / "model.onnx"
    if out.is_dir():
        raise UprightError(f"{out}: is a folder; give a file name with -o")
    c = m.contract
    try:
        with tempfile.TemporaryDirectory(prefix="upright-export-") as tmp:
            plain = Path(tmp) / "plain.onnx"
            in_pixels = preprocess and graph_views(m, True) == list(m.views)  # every view cut in the graph
            backbones.export_onnx(build_module(m, ["id"] if in_pixels else None), plain, c.size,
                                  output_name="probabilities", description=c.describe_input())
            graph = onnx.load(str(plain))
        meta = {"labels": json.dumps(m.labels), "upright_backbone": m.backbone,
                "upright_version": __version__, "test_views": json.dumps(list(m.views)),
                "test_views_in_graph": json.dumps(graph_views(m, preprocess)),
                "preprocessing": json.dumps(c.graph_metadata(preprocess)), **source_metadata(m)}
        for key, value in meta.items():
            graph.metadata_props.add(key=key, value=value)
        if preprocess:
            graph = with_preprocessing(graph, c, m.views if in_pixels else ("id",))
        with atomic_path(out) as tmp_out:
            onnx.save(graph, str(tmp_out))
    except OSError as exc:
        raise UprightError(f"cannot write {out}: {exc.strerror or exc}") from exc
    return out


@contextmanager
def _quiet():
    """coremltools and litert-torch print notes on import (no macOS runtime here, untested torch) and
    progress for each conversion pass: kept off the user's terminal."""
    import io
    import logging
    import warnings
    from contextlib import redirect_stderr, redirect_stdout

    level = logging.getLogger("coremltools").level
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    try:
        with redirect_stderr(io.StringIO()), redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.getLogger("coremltools").setLevel(level)


def export_coreml(model, output=None) -> Path:
    """Write MODEL as a Core ML classifier (ML program, .mlpackage folder) via coremltools, atomically.

    Input "image": an RGB image of S x S (the backbone's crop; Core ML scales it by the spec's
    contract inside the model; Vision's centreCrop option crops and resizes a photo to it, the
    picture already upright). Outputs: "classLabel" and "classLabel_probs" (label -> probability,
    averaged over the test views). Metadata: "labels", "preprocessing" (JSON). Converting runs
    on Linux; running the model needs macOS/iOS.
    """
    try:
        with _quiet():
            import coremltools as ct
    except ImportError:
        raise UprightError("--format coreml needs coremltools: pip install 'upright[coreml]'") from None
    import torch

    from .atomic import stage_folder, swap_folder

    m = model if isinstance(model, Model) else load_model(model)
    out = Path(output) if output is not None else m.folder / "model.mlpackage"
    if out.suffix != ".mlpackage":
        raise UprightError(f"{out}: a Core ML package name ends .mlpackage")
    if out.exists() and not (out.is_dir() and (out / "Manifest.json").is_file()):
        raise UprightError(f"{out}: exists and is not a Core ML package; give a new name with -o")
    c = m.contract
    with torch.no_grad(), _quiet():
        traced = torch.jit.trace(build_module(m), torch.zeros(1, 3, c.size, c.size))
        ml = ct.convert(
            traced, convert_to="mlprogram",
            inputs=[ct.ImageType(name="image", shape=(1, 3, c.size, c.size), scale=1 / c.std[0],
                                 bias=[-mu / c.std[0] for mu in c.mean], color_layout=ct.colorlayout.RGB)],
            classifier_config=ct.ClassifierConfig(list(m.labels)),
            minimum_deployment_target=ct.target.iOS15, compute_precision=ct.precision.FLOAT32)
    ml.short_description = f"upright model ({m.backbone}): {len(m.labels)} labels"
    ml.input_description["image"] = (f"RGB {c.size} x {c.size}, upright: the photo's short side resized to "
                                     f"{c.resize} ({c.interpolation}), centre-cropped")
    ml.user_defined_metadata.update({"labels": json.dumps(m.labels), "upright_backbone": m.backbone,
                                     "upright_version": __version__,
                                     "preprocessing": json.dumps({**c.graph_metadata(False), "input": "image",
                                                                  "layout": "image", "dtype": "image"})})
    try:
        stage = stage_folder(out)
        ml.save(str(stage / "model.mlpackage"))  # coremltools insists on the extension
        swap_folder(stage / "model.mlpackage", out)
        stage.rmdir()
    except OSError as exc:
        raise UprightError(f"cannot write {out}: {exc.strerror or exc}") from exc
    return out


def export_tflite(model, output=None) -> Path:
    """Write MODEL as a TFLite (LiteRT) flatbuffer via litert-torch, atomically, labels beside it.

    Input "pixels": uint8 [1, S, S, 3] RGB, upright, short side resized to `resize` and centre-
    cropped (what an app's image pipeline hands over); the scaling is inside. Output
    [1, n_labels] probabilities (test views averaged). FILE.labels.txt: one label a line, in
    output order (the associated-file format LiteRT's task libraries read).
    """
    try:
        with _quiet():
            import litert_torch
    except ImportError:
        raise UprightError("--format tflite needs litert-torch: pip install 'upright[tflite]' (docs/deploy.md: "
                           "'Deploy the model as it is')") from None
    import torch

    from .atomic import atomic_path, atomic_write_text

    m = model if isinstance(model, Model) else load_model(model)
    out = Path(output) if output is not None else m.folder / "model.tflite"
    if out.is_dir():
        raise UprightError(f"{out}: is a folder; give a file name with -o")
    c = m.contract
    classifier = build_module(m)
    mean, std = torch.tensor(c.mean).view(1, 3, 1, 1), torch.tensor(c.std).view(1, 3, 1, 1)

    class Pixels(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.classifier = classifier

        def forward(self, pixels):
            x = (pixels.permute(0, 3, 1, 2).float() - mean) / std
            return self.classifier(x)

    with torch.no_grad(), _quiet():
        edge = litert_torch.convert(Pixels().eval(), (torch.zeros(1, c.size, c.size, 3, dtype=torch.uint8),))
    try:
        with atomic_path(out) as tmp:
            edge.export(str(tmp))
        atomic_write_text(labels_file(out), "".join(f"{lab}\n" for lab in m.labels))
    except OSError as exc:
        raise UprightError(f"cannot write {out}: {exc.strerror or exc}") from exc
    return out


def labels_file(tflite: Path) -> Path:
    """The labels beside a .tflite file: NAME.labels.txt."""
    return tflite.with_name(tflite.stem + ".labels.txt")


def run_export(model, fmt: str = "onnx", output=None, preprocess: bool = False) -> Path:
    if fmt not in FORMATS:
        raise UprightError(f"unsupported export format '{fmt}' ({', '.join(FORMATS)})")
    if fmt != "onnx" and preprocess:
        raise UprightError(f"--preprocess is for --format onnx: the {fmt} model takes the cropped picture "
                           "and scales it itself")
    m = model if isinstance(model, Model) else load_model(model)
    note = differs_note(m, preprocess and fmt == "onnx")
    if note:
        err.print(f"note: {note}")
    if fmt == "coreml":
        out = export_coreml(m, output)
        err.print(f"wrote {out} (Core ML: input 'image' RGB, outputs 'classLabel' and 'classLabel_probs')")
        return out
    if fmt == "tflite":
        out = export_tflite(m, output)
        err.print(f"wrote {out} (input 'pixels' uint8 [1, S, S, 3] upright centre crop, output probabilities) "
                  f"and {labels_file(out).name}")
        return out
    out = export_onnx(m, output, preprocess)
    if preprocess:
        err.print(f"wrote {out} (input 'pixels' uint8 [1, H, W, 3] upright RGB of any size, "
                  "output 'probabilities'; labels in the metadata)")
    else:
        err.print(f"wrote {out} (input 'input' float32 NCHW preprocessed, output 'probabilities')")
    return out
