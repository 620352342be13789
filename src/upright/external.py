"""`upright eval --onnx FILE DATA`: score a classifier trained elsewhere (TensorFlow, PyTorch, ...).

The input contract, pixel scaling, output reading and the evaluation loop here are shared by every
foreign format: `ExternalModel` runs ONNX, `tflite_runner.TFLiteModel` runs TFLite (`eval --tflite`).

The same accuracy figures and 0/90/180/270 rotation check as a model folder gets (evaluate.py's
`score`), on photos read upright through the one door: "did my model learn rotation?"

What the graph expects comes from the options, else from the file's metadata ("labels": a JSON
list; "preprocessing": JSON with input_size, resize_short_side, mean, std, layout, as `upright
export` writes), else from the graph's input shape. Pixel scaling is `(x - mean) / std` on 0-255
pixels, per channel (default mean 0, std 1: the raw pixels, what a Keras model with its own
Rescaling layer takes). Outputs are taken as probabilities when every row is non-negative and
sums to 1, else as logits (softmax). Nothing records what such a model was fitted on, so
`seen_in_training` is null ("unknown") and eval says so; a file `upright export` wrote (metadata
upright_version, upright_head_sha256) that lies in the model folder it came from is counted from
that folder (`source_folder`), and elsewhere eval says whose export it is. A quantised input (TFLite uint8/int8 with
a scale and zero point) gets `round(((x - mean) / std) / scale) + zero_point`; without --mean/--std
the quantised range is taken as the pixel range (q = x for uint8, x - 128 for int8).

The file is untrusted: a regular file of at most MAX_ONNX_BYTES, read once, parsed and checked
(onnx.checker) before ONNX Runtime sees it, with one image input of rank 4 whose channel axis is 3.
"""

from __future__ import annotations

import json
import math
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .contract import LAYOUTS, InputContract
from .errors import UprightError, one_line
from .numerics import softmax
from .orientation import variant_array
from .words import count

MAX_ONNX_BYTES = 2 << 30  # protobuf's own limit for one file
MAX_LABELS_FILE_BYTES = 16 << 20
BATCH = 32  # images per call when the graph's batch axis is free
CHUNK = 256  # photos decoded and held at a time
#: The ImageNet convention when only the crop size is known: the short side is resized to size / 0.875.
CROP_SHARE = 0.875


def parse_labels(text: str) -> list[str]:
    """`a,b,c` or the path of a text file with one label a line."""
    p = Path(text)
    if p.is_file():
        if p.stat().st_size > MAX_LABELS_FILE_BYTES:
            raise UprightError(f"{p}: too big for a labels file")
        labels = [ln.strip() for ln in p.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    else:
        labels = [s.strip() for s in text.split(",") if s.strip()]
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise UprightError(f"--labels: give at least 2 distinct labels (got {len(labels)}: {', '.join(labels[:5])})")
    return labels


def parse_triple(text: str, what: str) -> tuple[float, float, float]:
    """`M` or `M1,M2,M3` (0-255 pixel units) -> three finite numbers."""
    try:
        vals = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise UprightError(f"{what}: give a number or three, comma-separated (got {text!r})") from None
    if len(vals) == 1:
        vals *= 3
    if len(vals) != 3 or not all(math.isfinite(v) for v in vals):
        raise UprightError(f"{what}: give a number or three finite numbers (got {text!r})")
    return tuple(vals)  # type: ignore[return-value]


def read_model_file(path: Path, limit: int, what: str) -> bytes:
    """The bytes of an untrusted model file: a regular file of at most `limit` bytes, not empty."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise UprightError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise UprightError(f"{path}: not a regular file")
    if st.st_size > limit:
        raise UprightError(f"{path}: {st.st_size / 2**30:.1f} GiB, more than {what} file can hold "
                           f"({limit / 2**30:.0f} GiB)")
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if not data:
        raise UprightError(f"{path}: empty file, not {what} model")
    return data


def _read_model(path: Path):
    """The ONNX ModelProto, after the size, parse and checker gates (one-line errors)."""
    import onnx

    data = read_model_file(path, MAX_ONNX_BYTES, "an ONNX")
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as exc:
        raise UprightError(f"{path}: not an ONNX model ({one_line(exc, 120)})") from None
    if not proto.graph.node:
        raise UprightError(f"{path}: not an ONNX model (no graph)")
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise UprightError(f"{path}: invalid ONNX model ({one_line(exc, 160)})") from None
    return proto, data


def _metadata(proto, path: Path) -> tuple[list[str] | None, dict]:
    props = {p.key: p.value for p in proto.metadata_props}
    labels, pre = None, {}
    try:
        if "labels" in props:
            labels = json.loads(props["labels"])
            if not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
                raise ValueError("labels is not a list of strings")
        if "preprocessing" in props:
            pre = json.loads(props["preprocessing"])
            if not isinstance(pre, dict):
                raise ValueError("preprocessing is not an object")
    except ValueError as exc:
        raise UprightError(f"{path}: unusable metadata ({one_line(exc, 120)}); pass --labels and the input options") from None
    return labels, pre


def upright_export(proto) -> dict | None:
    """What the metadata of a file `upright export` wrote says of its model (None: another tool's):
    {"upright_version", "backbone", "fitted_photos", "head_sha256", "model_folder": None}. Untrusted:
    short strings, a count, a 64-hex hash, or None."""
    props = {p.key: p.value for p in proto.metadata_props}
    if "upright_version" not in props and "upright_backbone" not in props:
        return None
    photos, head = props.get("upright_fitted_photos", ""), props.get("upright_head_sha256", "")
    return {"upright_version": props.get("upright_version", "")[:64] or None,
            "backbone": props.get("upright_backbone", "")[:64] or None,
            "fitted_photos": int(photos) if photos.isdigit() and len(photos) < 13 else None,
            "head_sha256": head if len(head) == 64 and all(c in "0123456789abcdef" for c in head) else None,
            "model_folder": None}


def source_folder(path: Path, exported: dict | None):
    """The model folder beside an upright export whose head is the one exported (MODEL/model.onnx,
    export's default), loaded with every check; None when there is none."""
    from .model import load_model

    if not exported or not exported["head_sha256"] or not (path.parent / "model.json").is_file():
        return None
    try:
        m = load_model(path.parent)
    except UprightError:
        return None
    return m if m.info.head_sha256 == exported["head_sha256"] else None


def _dims(value_info) -> list:
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]


def input_contract(path, name: str, dims: list, dtype: str, pre: dict | None = None, *,
                   input_size: int | None = None, resize: int | None = None, mean: tuple | None = None,
                   std: tuple | None = None, layout: str | None = None,
                   quantization: tuple[float, int] | None = None) -> InputContract:
    """How photos become the input `name` of shape `dims` (None: a free axis): from the options,
    else the file's preprocessing metadata `pre`, else the shape (one-line errors)."""
    pre = pre or {}
    layout = str(layout or pre.get("layout") or ("nchw" if dims[1] == 3 else "nhwc" if dims[3] == 3 else "")).lower()
    if not layout and dims[1] is not None and dims[3] is not None:
        raise UprightError(f"{path}: input shape {dims} has no axis of 3 channels; eval feeds RGB")
    if layout not in LAYOUTS:
        raise UprightError(f"{path}: cannot tell the channel axis of input shape {dims}; pass --layout nchw|nhwc")
    channels, hw = (dims[1], dims[2:]) if layout == "nchw" else (dims[3], dims[1:3])
    if channels not in (3, None):
        raise UprightError(f"{path}: input '{name}' has {channels} channels in {layout.upper()}; eval feeds RGB (3)")
    fixed = hw[0] if hw[0] and hw[0] == hw[1] else None
    if hw[0] and hw[1] and hw[0] != hw[1]:
        raise UprightError(f"{path}: input is {hw[0]} x {hw[1]}; eval feeds square centre crops")
    any_size = bool(pre.get("any_size")) and fixed is None
    size = input_size or pre.get("input_size") or fixed
    if fixed and size != fixed:
        raise UprightError(f"{path}: --input-size {size} but the graph takes {fixed} x {fixed}")
    if not any_size and not size:
        raise UprightError(f"{path}: the graph takes any input size; pass --input-size N")
    resize = resize or pre.get("resize_short_side") or (round(size / CROP_SHARE) if size else None)
    mean, std = mean or pre.get("mean"), std or pre.get("std")
    if quantization is not None:
        scale, zero = quantization
        if not (math.isfinite(scale) and scale > 0):
            raise UprightError(f"{path}: input '{name}' has quantisation scale {scale}; eval needs one > 0")
        if mean is None and std is None:  # the quantised range is the pixel range: q = x + the type's minimum
            mean, std = (float(zero - np.iinfo(dtype).min),) * 3, (1.0 / scale,) * 3
    try:
        mean = tuple(float(v) for v in (mean or (0.0,) * 3))
        std = tuple(float(v) for v in (std or (1.0,) * 3))
        size, resize = None if any_size else int(size), int(resize)
    except (TypeError, ValueError):
        raise UprightError(f"{path}: unusable 'preprocessing' metadata; pass the input options") from None
    if (size is not None and not 8 <= size <= 4096) or not 8 <= resize <= 8192 or (size and resize < size):
        raise UprightError(f"{path}: input size {size} / resize {resize} out of range (resize >= size, 8-4096)")
    if len(mean) != 3 or len(std) != 3 or not all(math.isfinite(v) for v in mean + std) or not all(v > 0 for v in std):
        raise UprightError(f"{path}: mean and std need 3 finite values each, std > 0")
    try:
        return InputContract(size=size, resize=resize, mean=mean, std=std, layout=layout, dtype=dtype,
                             input_name=name, quantization=quantization)
    except ValueError as exc:  # pydantic's ValidationError: a name or value this contract cannot hold
        raise UprightError(f"{path}: unusable input '{str(name)[:80]}' ({one_line(exc, 160)})") from None


def check_scores_shape(path, dims: list | None, labels: list[str]) -> None:
    """The first output must be [batch, one score per label] (an unknown shape passes)."""
    if dims is None or (dims and (len(dims) != 2 or (dims[1] and dims[1] != len(labels)))):
        raise UprightError(f"{path}: first output has shape {dims}; "
                           f"eval needs [batch, {len(labels)}] (one score per label)")


class ForeignClassifier:
    """A classifier file from elsewhere: photos (upright uint8 crops) in, probabilities [N, C] out.

    A runner sets `path`, `name`, `labels`, `contract`, `batch` (the input's fixed batch size, or
    None) and `format` ("onnx", "tflite"), and implements `run` (one input batch -> raw scores).
    """

    format = ""
    path: Path
    labels: list[str]
    contract: InputContract
    batch: int | None = None
    sum_tolerance = 1e-3  # rows summing to 1 within this are probabilities already (quantised ones: wider)

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def proba(self, crops: list[np.ndarray]) -> np.ndarray:
        """[N, C] probabilities for uint8 HWC crops (one call per BATCH, or per image)."""
        from .pipeline.decode import to_input

        step = self.batch or (BATCH if self.contract.size else 1)
        out = []
        for i in range(0, len(crops), step):
            y = np.asarray(self.run(to_input(np.stack(crops[i:i + step]), self.contract)), np.float32)
            if y.ndim != 2 or y.shape[1] != len(self.labels):
                raise UprightError(f"{self.path}: output shape {list(y.shape)}, expected [batch, {len(self.labels)}]")
            out.append(y)
        y = np.concatenate(out)
        if not ((y >= 0).all() and np.allclose(y.sum(1), 1.0, rtol=0, atol=self.sum_tolerance)):
            y = softmax(y)
        return y


class ExternalModel(ForeignClassifier):
    """An ONNX classifier, checked (module docstring) and run by ONNX Runtime."""

    format = "onnx"

    def __init__(self, path, labels: list[str] | None = None, *, input_size: int | None = None,
                 resize: int | None = None, mean: tuple | None = None, std: tuple | None = None,
                 layout: str | None = None):
        from onnx import TensorProto

        self.path = Path(path)
        proto, data = _read_model(self.path)
        meta_labels, pre = _metadata(proto, self.path)
        init = {i.name for i in proto.graph.initializer}
        inputs = [i for i in proto.graph.input if i.name not in init]
        if len(inputs) != 1:
            raise UprightError(f"{path}: the graph takes {len(inputs)} inputs; eval needs one image input")
        inp = inputs[0]
        dims = _dims(inp)
        elem = inp.type.tensor_type.elem_type
        dtype = {TensorProto.FLOAT: "float32", TensorProto.UINT8: "uint8"}.get(elem)
        if len(dims) != 4 or dtype is None:
            raise UprightError(f"{path}: input '{inp.name}' is {len(dims)}-d "
                               f"{TensorProto.DataType.Name(elem).lower()}; eval needs a 4-d float32 or uint8 image batch")
        self.contract = input_contract(path, inp.name, dims, dtype, pre, input_size=input_size, resize=resize,
                                       mean=mean, std=std, layout=layout)
        self.labels = list(labels or meta_labels or [])
        if not self.labels:
            raise UprightError(f"{path}: no labels in the file's metadata; pass --labels a,b,c or a labels file")
        check_scores_shape(path, _dims(proto.graph.output[0]) if proto.graph.output else None, self.labels)
        self.batch = dims[0]
        from .backbones import providers

        try:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.log_severity_level = 3
            self.session = ort.InferenceSession(data, sess_options=so, providers=providers())
        except Exception as exc:
            raise UprightError(f"{path}: ONNX Runtime cannot run it ({one_line(exc, 160)})") from None
        self.input_name = inp.name
        self.name = str(self.path)
        self.exported = upright_export(proto)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]


def evaluate_onnx(path, data, *, labels=None, input_size=None, resize=None, mean=None, std=None, layout=None,
                  rotations: bool = True, report=None, csv=None, workers: int | None = None,
                  rotation_check: str = "full", cache_dir=None):
    """Score an ONNX classifier on DATA -> EvalResult (model_format "onnx"). seen_in_training is
    None (nothing records what it was fitted on) unless the file is upright's own export lying in
    the model folder it came from (export's default, MODEL/model.onnx): then that folder's counts."""
    m = ExternalModel(path, labels, input_size=input_size, resize=resize, mean=mean, std=std, layout=layout)
    return evaluate_foreign(m, data, rotations=rotations, report=report, csv=csv, workers=workers,
                            rotation_check=rotation_check, cache_dir=cache_dir)


def evaluate_foreign(m: ForeignClassifier, data, *, rotations: bool = True, report=None, csv=None,
                     workers: int | None = None, rotation_check: str = "full", cache_dir=None):
    """Score a foreign classifier on DATA, photos read upright, with the rotation check (one
    centre crop a turn: "centre" and "full" are the same here; "none" skips it) -> EvalResult.
    `cache_dir`: the embedding cache of the near-copy check (upright's own exports only)."""
    from .backbones import cpu_count
    from .evaluate import ROTATION_CHECK, finish, rotation_views, score, scored_records, training_overlap
    from .pipeline.shard import read_one

    ds, known, unknown, split = scored_records(data, m.labels)

    def read(r):  # the centre crop (any-size graphs: the resized picture), through the one door
        canvas, _, why = read_one(str(r.path), m.contract, picture=False)
        return canvas, why

    rotations = rotations and bool(rotation_views(["id"], rotation_check))
    rots = ROTATION_CHECK if rotations else {"0": "id"}
    errors: dict[int, str] = {}
    parts: dict[str, list[np.ndarray]] = {deg: [] for deg in rots}
    with ThreadPoolExecutor(max_workers=workers or cpu_count()) as pool:
        for start in range(0, len(known), CHUNK):  # bounded memory: CHUNK photos' crops at a time
            decoded = list(pool.map(read, known[start:start + CHUNK]))
            errors.update({start + i: why for i, (_, why) in enumerate(decoded) if why is not None})
            crops = [c for c, _ in decoded if c is not None]
            for deg, v in rots.items():
                if crops:
                    parts[deg].append(_proba_by_shape(m, [variant_array(c, v) for c in crops]))
    ok = np.array([i not in errors for i in range(len(known))])
    if not ok.any():
        raise UprightError(f"{ds.root}: no readable images ({count(len(known), 'file')}, all unreadable)")
    probs = {deg: np.concatenate(p) for deg, p in parts.items()}
    exported = getattr(m, "exported", None)
    folder = source_folder(m.path, exported)
    overlap = None
    if folder is not None:
        exported = {**exported, "model_folder": str(folder.folder)}
        overlap = training_overlap(folder, [r for r, good in zip(known, ok) if good], cache_dir=cache_dir,
                                   workers=workers)
    seen, near, note = (None, None, None) if overlap is None else (overlap.seen, overlap.near, overlap.note)
    result = score(known, ok, errors, probs, m.labels, seen, split=split, model=m.name, data=str(ds.root),
                   orientation_policy="upright", unknown=unknown, model_format=m.format, near=near)
    result.input_contract = m.contract.describe()
    result.exported_by_upright, result.near_copies_note = exported, note
    result.rotation_check, result.rotation_views = ("full", ["id"]) if rotations else ("none", [])
    return finish(result, csv, report)


def _proba_by_shape(m: ForeignClassifier, crops: list[np.ndarray]) -> np.ndarray:
    """Probabilities in input order; crops of one shape go in one batch (any-size graphs take 1)."""
    if m.contract.size:
        return m.proba(crops)
    return np.concatenate([m.proba([c]) for c in crops])
