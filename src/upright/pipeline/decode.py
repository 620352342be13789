"""Pixels -> network input, by the backbone spec's input contract (backbones.BackboneSpec):
short side to `resize` (`interpolation`), centre crop `size`, scaled `(x - mean) / std`.

Reads go through imaging.py only (`open_image(path, size=resize, orient=...)`, which decodes
JPEG in the DCT domain and applies the orientation once). Dihedral variants are taken on the
square crop (for a square centre crop, cropping and rotating/flipping commute), so one
decode serves all eight variants (orientation.variant_array).

PREPROCESS_VERSION is part of every embedding cache key: bump it whenever the pixels fed
to the network change.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..backbones import DEFAULT, BackboneSpec, spec
from ..imaging import Decoded, open_image
from ..views import window

PREPROCESS_VERSION = 1


def resized_picture(img: Image.Image, s: BackboneSpec) -> np.ndarray:
    """uint8 [H, W, 3]: the picture with its short side resized to `s.resize` (unless already
    there; neither side under `s.size`), the canvas every view is cut from (upright.views)."""
    w, h = img.size
    if min(w, h) != s.resize:
        scale = s.resize / min(w, h)
        img = img.resize((max(s.size, round(w * scale)), max(s.size, round(h * scale))),
                         Image.Resampling[s.interpolation.upper()])
    return np.asarray(img.convert("RGB") if img.mode != "RGB" else img)


def centre_crop(img: Image.Image, s: BackboneSpec) -> np.ndarray:
    """Resize the short side to `s.resize` (unless already there) and crop the centre square."""
    return np.ascontiguousarray(window(resized_picture(img, s), "centre", s.size))


def image_crop(img: Image.Image, backbone: str) -> np.ndarray:
    """An upright PIL image -> uint8 [size, size, 3] network crop."""
    return centre_crop(img, spec(backbone))


def image_canvas(img: Image.Image, backbone: str, whole: bool) -> np.ndarray:
    """What views are cut from: the resized picture when `whole` (corner views), else the centre crop."""
    s = spec(backbone)
    return np.ascontiguousarray(resized_picture(img, s)) if whole else centre_crop(img, s)


def load_canvas(source, backbone: str, orient: bool = True, whole: bool = False) -> tuple[np.ndarray, Decoded]:
    """load_crop, or with `whole` the resized picture (for views off centre, upright.views)."""
    dec = open_image(source, size=spec(backbone).resize, orient=orient)
    return image_canvas(dec.image, backbone, whole), dec


def load_crop(source, backbone: str, orient: bool = True) -> tuple[np.ndarray, Decoded]:
    """Decode through the one door at the size the network needs -> (uint8 crop, Decoded)."""
    return load_canvas(source, backbone, orient, whole=False)


def to_input(batch_uint8: np.ndarray, backbone: str = DEFAULT) -> np.ndarray:
    """uint8 [N, S, S, 3] -> float32 [N, 3, S, S] scaled by the backbone's contract (the ONNX input)."""
    s = spec(backbone)
    x = np.asarray(batch_uint8, np.float32).transpose(0, 3, 1, 2)
    return np.ascontiguousarray((x - s.mean) / s.std)


def describe(backbone: str) -> dict:
    """The preprocessing recipe, as recorded in model.json."""
    s = spec(backbone)
    return {
        "version": PREPROCESS_VERSION,
        "features": (" + ".join(f"{p} global-average-pooled {spec(p).dim}-d" for p in s.components)
                     + (f", concatenated ({s.dim}-d), all on the same input" if s.parts else "")),
        **s.input_contract(),
        "decode": "upright.imaging.open_image(path, size=resize_short_side)",
    }
