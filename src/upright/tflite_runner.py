"""`upright eval --tflite FILE DATA`: score a TFLite (LiteRT) classifier trained elsewhere.

The same contract, scaling, output reading and evaluation as `eval --onnx` (external.py); this
module only runs the file, in the LiteRT interpreter (`ai-edge-litert`, in the `[tflite]` extra, or
`pip install ai-edge-litert` alone). The input size, layout and dtype come from the model; a
quantised input (uint8/int8 with a scale and zero point) is fed quantised, a quantised output is
dequantised. Labels: `--labels`, else `NAME.labels.txt` beside the file (what `upright export
--format tflite` writes), else a labels file packed inside it (TFLite metadata's associated files,
as Model Maker writes: the one .txt in the zip appended to the flatbuffer).

The file is untrusted: a regular file of at most MAX_TFLITE_BYTES with the TFLite file identifier,
which the interpreter verifies before it runs anything.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from .errors import UprightError, one_line
from .external import (MAX_LABELS_FILE_BYTES, ForeignClassifier, check_scores_shape, evaluate_foreign,
                       input_contract, parse_labels, read_model_file)

MAX_TFLITE_BYTES = 2 << 30  # a flatbuffer's own limit
FILE_IDENTIFIER = b"TFL3"
INPUT_TYPES = {np.dtype(np.float32): "float32", np.dtype(np.uint8): "uint8", np.dtype(np.int8): "int8"}


def packed_labels(data: bytes) -> list[str] | None:
    """The labels in the one .txt file packed in the model's zip (TFLite metadata), if any."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            texts = [i for i in z.infolist() if i.filename.lower().endswith(".txt")]
            if len(texts) != 1 or texts[0].file_size > MAX_LABELS_FILE_BYTES:
                return None
            with z.open(texts[0]) as f:
                text = f.read(MAX_LABELS_FILE_BYTES + 1).decode("utf-8", errors="replace")
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, RuntimeError):
        return None
    labels = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return labels or None


def _interpreter(path: Path, data: bytes):
    if data[4:8] != FILE_IDENTIFIER:
        raise UprightError(f"{path}: not a TFLite model (no {FILE_IDENTIFIER.decode()} file identifier)")
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise UprightError("--tflite needs the LiteRT interpreter: pip install ai-edge-litert "
                           "(or pip install 'upright[tflite]')") from None
    from .backbones import cpu_count

    try:
        it = Interpreter(model_content=data, num_threads=cpu_count())
        it.allocate_tensors()
    except Exception as exc:  # the interpreter verifies the flatbuffer and the ops it needs
        raise UprightError(f"{path}: LiteRT cannot run it ({one_line(exc, 160)})") from None
    return it


def _quantization(path: Path, detail: dict) -> tuple[float, int] | None:
    """(scale, zero point) of a per-tensor quantised tensor; None when it is not quantised."""
    q = detail.get("quantization_parameters") or {}
    scales, zeros = list(q.get("scales", [])), list(q.get("zero_points", []))
    if not scales:
        return None
    if len(scales) != 1 or len(zeros) != 1:
        raise UprightError(f"{path}: tensor '{detail['name']}' is quantised per channel; eval needs one scale")
    return float(scales[0]), int(zeros[0])


def _dims(detail: dict) -> list:
    return [None if d < 0 else int(d) for d in detail.get("shape_signature", detail["shape"])]


class TFLiteModel(ForeignClassifier):
    """A TFLite classifier run by the LiteRT interpreter (module docstring)."""

    format = "tflite"

    def __init__(self, path, labels: list[str] | None = None, *, input_size: int | None = None,
                 resize: int | None = None, mean: tuple | None = None, std: tuple | None = None,
                 layout: str | None = None):
        self.path = Path(path)
        data = read_model_file(self.path, MAX_TFLITE_BYTES, "a TFLite")
        self.interpreter = it = _interpreter(self.path, data)
        inputs, outputs = it.get_input_details(), it.get_output_details()
        if len(inputs) != 1:
            raise UprightError(f"{path}: the model takes {len(inputs)} inputs; eval needs one image input")
        inp, self.output = inputs[0], outputs[0]
        dims, dtype = _dims(inp), INPUT_TYPES.get(np.dtype(inp["dtype"]))
        quant = _quantization(self.path, inp)
        if len(dims) != 4 or dtype is None or (dtype == "int8" and quant is None):
            raise UprightError(f"{path}: input '{inp['name']}' is {len(dims)}-d {np.dtype(inp['dtype']).name}"
                               f"{'' if quant else ' (not quantised)'}; eval needs a 4-d float32, uint8 or "
                               "quantised int8 image batch")
        self.contract = input_contract(path, inp["name"], dims, dtype, input_size=input_size, resize=resize,
                                       mean=mean, std=std, layout=layout, quantization=quant)
        self.labels = list(labels or self._labels(data))
        check_scores_shape(path, _dims(self.output), self.labels)
        self.output_quantization = _quantization(self.path, self.output)
        if self.output_quantization:  # each dequantised score is off by up to one step
            self.sum_tolerance = max(self.sum_tolerance, len(self.labels) * self.output_quantization[0])
        self.batch = dims[0]
        self.input_index = inp["index"]
        self.name = str(self.path)

    def _labels(self, data: bytes) -> list[str]:
        from .export import labels_file

        beside = labels_file(self.path)
        if beside.is_file():
            return parse_labels(str(beside))
        labels = packed_labels(data)
        if not labels:
            raise UprightError(f"{self.path}: no labels (no {beside.name} beside it, none packed inside); "
                               "pass --labels a,b,c or a labels file")
        return labels

    def run(self, x: np.ndarray) -> np.ndarray:
        it = self.interpreter
        if tuple(it.get_input_details()[0]["shape"]) != x.shape:  # a free batch or size axis
            try:
                it.resize_tensor_input(self.input_index, list(x.shape), strict=True)
                it.allocate_tensors()
            except Exception as exc:
                raise UprightError(f"{self.path}: cannot feed a batch of shape {list(x.shape)} "
                                   f"({one_line(exc, 120)})") from None
        it.set_tensor(self.input_index, x)
        it.invoke()
        y = it.get_tensor(self.output["index"])
        if self.output_quantization:
            scale, zero = self.output_quantization
            y = (y.astype(np.float32) - zero) * np.float32(scale)
        return y


def evaluate_tflite(path, data, *, labels=None, input_size=None, resize=None, mean=None, std=None, layout=None,
                    rotations: bool = True, report=None, csv=None, workers: int | None = None):
    """Score a TFLite classifier trained elsewhere on DATA -> EvalResult (model_format "tflite",
    seen_in_training None: nothing records what it was fitted on)."""
    m = TFLiteModel(path, labels, input_size=input_size, resize=resize, mean=mean, std=std, layout=layout)
    return evaluate_foreign(m, data, rotations=rotations, report=report, csv=csv, workers=workers)
