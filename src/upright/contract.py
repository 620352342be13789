"""The input contract: what a model expects of a picture, in one object that travels with its
weights (timm's pretrained config, for upright).

A photo becomes the network's input in four steps, each fixed by fields of the contract:

    decode   through the one door (imaging.open_image), upright unless `orientation` is "stored"
    resize   the short side to `resize` (`interpolation`; the long side follows)
    views    `size` x `size` windows named by `test_views` (upright.views: the centre crop and its
             flips and turns, or corner windows)
    scale    (pixel - mean) / std per channel, laid out as `layout` `dtype`, fed to `input_name`

`train` writes it once into model.json: "test_views" and "orientation_policy" where every
upright version reads them, the rest as "input_contract" (`stored()`); the older keys
"input_size", "embedding_dim", "preprocessing" and "onnx_input" are derived from the same
object for readers that know only those. `load_model` reads it back as
`Model.contract`, and every consumer reads it there: the decode (pipeline/decode.py), serve's
decode size, export's graph metadata, the studio. A graph trained elsewhere (`eval --onnx`,
external.py) has one too, from its metadata and the options. A folder written before the key
existed gets the contract its backbone implies (`for_backbone`): what that version decoded with.

A stored contract must equal the one this version computes for its backbone (`check_against`):
embeddings are cached by backbone, weights and `preprocess_version`, so another recipe under
the same key would reuse the wrong vectors. Bump PREPROCESS_VERSION whenever the pixels fed to
the network change. Nothing here reads a file.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from . import backbones, views

#: Part of every embedding cache key: bump it whenever the pixels fed to the network change.
PREPROCESS_VERSION = 1

INTERPOLATIONS = ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")  # Pillow's resampling filters
LAYOUTS = ("nchw", "nhwc")
DTYPES = ("float32", "uint8", "int8")  # uint8 without `quantization`: raw pixels; int8: quantised only
ORIENTATIONS = ("upright", "stored")
#: contract fields model.json keeps as its own top-level keys (field -> key), read by every version
TOP_LEVEL = {"test_views": "test_views", "orientation": "orientation_policy"}


def _view(v: str) -> str:
    views.parse(v)  # ValueError -> a pydantic validation error naming the bad view
    return v


#: a test view (upright.views: a variant of the centre crop, or of a corner window)
View = Annotated[str, StringConstraints(max_length=40), AfterValidator(_view)]
Triple = tuple[float, float, float]


class InputContract(BaseModel):
    """How a picture becomes a model's input (see the module docstring). Immutable and hashable;
    `model_dump(mode="json")` is the JSON written into model.json and served to the studio."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    backbone: str | None = Field(None, max_length=64)  # None: a graph trained elsewhere
    size: int | None = Field(ge=8, le=4096)  # the square window fed to the network; None: any size
    resize: int = Field(ge=8, le=8192)  # short side of the picture the windows are cut from
    interpolation: Literal[INTERPOLATIONS] = "bicubic"
    crop: Literal["centre"] = "centre"  # the standard window (test_views may add corners)
    mean: Triple = (0.0, 0.0, 0.0)  # network input = (pixel - mean) / std, pixels 0-255, RGB
    std: Triple = (1.0, 1.0, 1.0)
    layout: Literal[LAYOUTS] = "nchw"
    dtype: Literal[DTYPES] = "float32"  # uint8: raw pixels, no scaling (unless quantised)
    quantization: tuple[float, int] | None = None  # (scale, zero point) of a quantised input (TFLite)
    input_name: str = Field("input", min_length=1, max_length=256)
    embedding_dim: int | None = Field(None, ge=1, le=1 << 20)  # the backbone's features (None: not a backbone)
    test_views: tuple[View, ...] = Field(("id",), min_length=1, max_length=40)
    orientation: Literal[ORIENTATIONS] = "upright"  # "stored": the naive, tag-ignoring reader
    preprocess_version: int = Field(PREPROCESS_VERSION, ge=1)

    @model_validator(mode="after")
    def _sane(self) -> "InputContract":
        if self.size is not None and self.resize < self.size:
            raise ValueError(f"resize {self.resize} is smaller than the {self.size}-px window")
        if not all(math.isfinite(v) for v in self.mean + self.std) or not all(v > 0 for v in self.std):
            raise ValueError("mean and std need finite values, std > 0")
        if self.quantization is not None and not (self.dtype != "float32" and math.isfinite(self.quantization[0])
                                                  and self.quantization[0] > 0):
            raise ValueError("a quantised input is uint8 or int8 with a scale > 0")
        if self.dtype == "int8" and self.quantization is None:
            raise ValueError("an int8 input is a quantised one (scale, zero point)")
        return self

    # -- what consumers ask ---------------------------------------------------------------
    @property
    def orient(self) -> bool:
        """Apply the file's orientation when decoding (False: the pixels as stored)."""
        return self.orientation == "upright"

    @property
    def needs_picture(self) -> bool:
        """Some test view sits off centre: the decode keeps the whole resized picture."""
        return views.needs_picture(self.test_views)

    @property
    def scaling(self) -> str:
        """The scaling in words: "(x - 127) / 128", per channel when they differ, then the
        quantisation when there is one; or none (raw uint8 pixels)."""
        if self.dtype == "uint8" and self.quantization is None:
            return "none (uint8)"
        words = f"(x - {_fmt(self.mean)}) / {_fmt(self.std)}"
        if self.quantization is not None:
            words += f", quantised (scale {self.quantization[0]:g}, zero point {self.quantization[1]})"
        return words

    def replace(self, **changes) -> "InputContract":
        """A copy with some fields changed, validated again."""
        return type(self).model_validate({**self.model_dump(), **changes}, strict=False)

    # -- the contract in words and in the older shapes --------------------------------------
    def describe(self) -> str:
        """One line: how photos are fed (eval's "input_contract", `eval --onnx` output)."""
        size = "any size" if self.size is None else f"{self.size} x {self.size}"
        return (f"{self.layout.upper()} {self.dtype} {size}; short side resized to {self.resize} "
                f"({self.interpolation}), centre crop; scaling {self.scaling}")

    def describe_input(self) -> str:
        """The network input in one sentence (the ONNX input's description, `export --help`)."""
        return (f"float32 [batch, 3, {self.size}, {self.size}] RGB: the upright picture resized "
                f"({self.interpolation}) so its short side is {self.resize}, {self.crop}-cropped to "
                f"{self.size} x {self.size}, scaled {self.scaling}")

    def preprocessing(self) -> dict:
        """model.json "preprocessing" as upright 0.1.0 wrote it (derived from this contract)."""
        return {"version": self.preprocess_version, "features": _features(self.backbone),
                "resize_short_side": self.resize, "interpolation": self.interpolation, "crop": self.crop,
                "input_size": self.size, "scaling": self.scaling, "layout": "NCHW float32 RGB",
                "decode": "upright.imaging.open_image(path, size=resize_short_side)"}

    def onnx_input(self) -> dict:
        """model.json "onnx_input" as upright 0.1.0 wrote it (derived from this contract)."""
        return {"name": self.input_name, "shape": ["batch", 3, self.size, self.size], "dtype": self.dtype,
                "layout": "NCHW RGB", "scaling": self.scaling,
                "output": "probabilities [batch, n_labels], averaged over test_views"}

    def stored(self) -> dict:
        """model.json "input_contract": every field but the two model.json keeps at its top level
        ("test_views", "orientation_policy"), so each fact is written once."""
        return self.model_dump(mode="json", exclude=set(TOP_LEVEL))

    def model_json(self) -> dict:
        """Every model.json key that states the contract: "input_contract", "test_views",
        "orientation_policy" and the older keys derived from them, so readers of any version find
        what they know."""
        return {"input_contract": self.stored(), "embedding_dim": self.embedding_dim,
                "input_size": self.size, "preprocessing": self.preprocessing(),
                "orientation_policy": self.orientation, "test_views": list(self.test_views),
                "onnx_input": self.onnx_input()}

    def graph_metadata(self, in_graph: bool) -> dict:
        """An exported graph's "preprocessing" metadata: the contract in numbers (external.py reads it)."""
        d = {"input_size": self.size, "resize_short_side": self.resize, "interpolation": self.interpolation,
             "crop": self.crop, "mean": list(self.mean), "std": list(self.std), "scaling": self.scaling}
        if in_graph:
            return {**d, "input": "pixels", "layout": "nhwc", "dtype": "uint8", "any_size": True, "in_graph": True,
                    "resize_op": "ONNX Resize cubic (a=-0.5), antialias=1, exclude_outside=1, half_pixel; "
                                 "rounded to 8 bits; then centre crop and scaling"}
        return {**d, "input": self.input_name, "layout": self.layout, "dtype": self.dtype, "any_size": False,
                "in_graph": False}

    # -- where contracts come from -----------------------------------------------------------
    @classmethod
    def for_backbone(cls, name: str, *, test_views=("id",), orientation: str = "upright") -> "InputContract":
        """The contract of a model on backbone `name` (the registry's numbers, backbones.BackboneSpec)."""
        s = backbones.spec(name)
        return cls(backbone=s.name, size=s.size, resize=s.resize, interpolation=s.interpolation, crop=s.crop,
                   mean=(float(s.mean),) * 3, std=(float(s.std),) * 3, embedding_dim=s.dim,
                   test_views=tuple(test_views), orientation=orientation)

    def check_against(self, name: str) -> None:
        """ValueError naming the first field where this contract differs from what this version
        computes for backbone `name` with the same views and orientation."""
        want = type(self).for_backbone(name, test_views=self.test_views, orientation=self.orientation)
        for key in type(self).model_fields:
            have, need = getattr(self, key), getattr(want, key)
            if have != need:
                raise ValueError(f"{key} {_short(have)} is not {name}'s {_short(need)} (written by another "
                                 "upright version?)")


def _fmt(v: Triple) -> str:
    return f"{v[0]:g}" if len(set(v)) == 1 else "[" + ", ".join(f"{x:g}" for x in v) + "]"


def _short(v) -> str:
    return repr(v)[:60]


def _features(backbone: str | None) -> str:
    """The embedding in words, e.g. "efficientnet-lite0 global-average-pooled 1280-d"."""
    if backbone is None:
        return "the graph's own output"
    s = backbones.spec(backbone)
    return (" + ".join(f"{p} global-average-pooled {backbones.spec(p).dim}-d" for p in s.components)
            + (f", concatenated ({s.dim}-d), all on the same input" if s.parts else ""))


__all__ = ["DTYPES", "INTERPOLATIONS", "InputContract", "LAYOUTS", "ORIENTATIONS", "PREPROCESS_VERSION", "TOP_LEVEL",
           "View"]
