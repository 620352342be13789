"""Typed results of the verbs: dataclasses whose `to_dict()` is the verb's JSON contract.

`upright.train(...)` returns a TrainResult and `upright.evaluate(...)` an EvalResult; the
CLI prints `to_dict()` for `--json`. A new verb's result (an AuditResult, say) subclasses
`Result` the same way: its JSON keys are its fields, in order; a field with
`field(metadata={"json": False})` is for Python callers only (large per-photo tables).
For scripts written against the JSON, a result also reads like the dict:
`result["accuracy"]`, `result.get("report")`, `"report" in result`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Optional


def _plain(value: Any) -> Any:
    """numpy scalars and arrays -> Python numbers and lists (JSON-ready)."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class Result:
    """Base of the typed results: to_dict(), to_json() and read access by JSON key."""

    def json_keys(self) -> list[str]:
        return [f.name for f in fields(self) if f.metadata.get("json", True)]

    def to_dict(self) -> dict:
        return {k: _plain(getattr(self, k)) for k in self.json_keys()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def __getitem__(self, key: str) -> Any:
        if key not in self.json_keys():
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self.json_keys()

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.json_keys() else default

    def keys(self) -> list[str]:
        return self.json_keys()


@dataclass
class TrainResult(Result):
    """`upright train`: the model written and how it was chosen (contract keys first)."""

    model: str
    labels: list[str]
    val_accuracy: float  # held-out accuracy of the selected head (val/, hash split or CV)
    n_train: int
    n_val: int
    seconds: float
    backbone: str
    augment: str
    val_method: str
    l2: float
    test_views: list[str]
    classes: dict[str, int]
    orientation_policy: str
    fine_tuned: bool
    unreadable: list[dict]
    skipped: list[dict]
    cache_hits: int
    decoded: int
    n_fitted: int = 0  # photos the final head was fitted on; their fingerprints are in the model
    test_not_read: Optional[str] = None  # DATA/test, left for eval: never opened by train
    replaced: bool = False  # --force replaced an existing model folder
    report: Optional[str] = None  # MODEL/report.html
    data: Optional[str] = None  # the DATA folder trained from
    preset: str = "fast"  # "fast" (frozen features, linear head) or "accurate" (presets.py)
    #: when fine-tuned: {"epochs", "best_epoch", "resumed_from_epoch", "history": [{"epoch", "loss",
    #: "val_accuracy", "val_loss", "seconds"}]}
    fine_tune: Optional[dict] = None


@dataclass
class EvalResult(Result):
    """`upright eval`: scores on the held-out photos, and whether they really were held out."""

    accuracy: float
    n: int
    per_class: dict[str, dict]  # label -> precision, recall, f1 (null when undefined), n
    confusion: list[list[int]]
    labels: list[str]
    rotations: dict[str, float]
    seen_in_training: Optional[int]  # scored photos the model was fitted on; None: model keeps no record
    macro_f1: Optional[float]
    top_k_accuracy: dict[str, float]
    split: str
    model: str
    data: str
    orientation_policy: str
    unreadable: list[dict]
    unknown_labels: list[str]
    n_mistakes: int
    mistakes: list[dict]  # the most confident mistakes first (at most 100 here; all in `photos`)
    report: Optional[str] = None
    csv: Optional[str] = None
    photos: list[dict] = field(default_factory=list, metadata={"json": False})  # one row per scored photo
    model_format: str = "upright"  # "upright": a model folder; "onnx"/"tflite": a classifier trained elsewhere
    input_contract: Optional[str] = None  # eval --onnx/--tflite: how the photos were fed (layout, size, resize, scaling)


@dataclass
class Prediction:
    """One image's answer from Model.predict; to_dict() is a `predict --json` line."""

    path: str | None
    orientation: int | None  # the file's orientation tag (None: none, or an in-memory picture)
    predictions: list[tuple[str, float]]
    error: str | None = None  # set (and predictions empty) when the image could not be read

    @property
    def label(self) -> str | None:
        """The top label (None when the image could not be read)."""
        return self.predictions[0][0] if self.predictions else None

    @property
    def score(self) -> float | None:
        """The top label's probability (None when the image could not be read)."""
        return float(self.predictions[0][1]) if self.predictions else None

    def to_dict(self) -> dict:
        d = {"path": self.path, "orientation": self.orientation,
             "predictions": [{"label": lab, "score": float(s)} for lab, s in self.predictions]}
        if self.error is not None:
            d["error"] = self.error
        return d
