"""Pixels -> network input: short side to `resize` (bicubic), centre crop `size`, TF scaling.

Reads go through imaging.py only (`open_image(path, size=resize, orient=...)`, which decodes
JPEG in the DCT domain and applies the orientation once). Dihedral variants are taken on the
square crop (for a square centre crop, cropping and rotating/flipping commute), so one
decode serves all eight variants.

PREPROCESS_VERSION is part of every embedding cache key: bump it whenever the pixels fed
to the network change.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .backbones import spec
from .imaging import open_image

PREPROCESS_VERSION = 1

# A variant is (flip, k): the upright picture mirrored left-right when flip, then rotated
# k quarter turns clockwise.
VARIANT_OPS: dict[str, tuple[bool, int]] = {
    "id": (False, 0), "flip": (True, 0), "r90": (False, 1), "r180": (False, 2), "r270": (False, 3),
    "flip_r90": (True, 1), "flip_r180": (True, 2), "flip_r270": (True, 3),
}
OPS_VARIANT = {v: k for k, v in VARIANT_OPS.items()}


def compose(first: str, then: str) -> str:
    """The variant equal to applying `first`, then `then`."""
    f1, k1 = VARIANT_OPS[first]
    f2, k2 = VARIANT_OPS[then]
    if f2:  # mirror after rotating by k1 = rotating by -k1 after mirroring
        f1, k1 = not f1, -k1
    return OPS_VARIANT[(f1, (k1 + k2) % 4)]


def variant_array(a: np.ndarray, variant: str) -> np.ndarray:
    """Variant of an HWC array (a view where possible)."""
    flip, k = VARIANT_OPS[variant]
    if flip:
        a = a[:, ::-1]
    if k:
        a = np.rot90(a, k=-k, axes=(0, 1))  # negative k = clockwise
    return a


def variant_pil(img: Image.Image, variant: str) -> Image.Image:
    flip, k = VARIANT_OPS[variant]
    if flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if k:  # PIL's ROTATE_n turn counter-clockwise
        img = img.transpose({1: Image.Transpose.ROTATE_270, 2: Image.Transpose.ROTATE_180,
                             3: Image.Transpose.ROTATE_90}[k])
    return img


def centre_crop(img: Image.Image, resize: int, size: int) -> np.ndarray:
    """Resize the short side to `resize` (bicubic, unless already there) and crop the centre square."""
    w, h = img.size
    if min(w, h) != resize:
        s = resize / min(w, h)
        img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.Resampling.BICUBIC)
        w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    a = np.asarray(img.convert("RGB") if img.mode != "RGB" else img)
    return a[top:top + size, left:left + size]


def image_crop(img: Image.Image, backbone: str) -> np.ndarray:
    """An upright PIL image -> uint8 [size, size, 3] network crop."""
    s = spec(backbone)
    return np.ascontiguousarray(centre_crop(img, s.resize, s.size))


def load_crop(source, backbone: str, orient: bool = True) -> tuple[np.ndarray, object]:
    """Decode through the one door at the size the network needs -> (uint8 crop, Decoded)."""
    s = spec(backbone)
    dec = open_image(source, size=s.resize, orient=orient)
    return np.ascontiguousarray(centre_crop(dec.image, s.resize, s.size)), dec


def variants_of(crop: np.ndarray, variants) -> np.ndarray:
    """uint8 [V, S, S, 3] stack of the requested variants of one crop."""
    return np.stack([variant_array(crop, v) for v in variants])


def to_input(batch_uint8: np.ndarray) -> np.ndarray:
    """uint8 [N, S, S, 3] -> float32 [N, 3, S, S] scaled (x - 127) / 128 (the ONNX input)."""
    x = np.asarray(batch_uint8, np.float32).transpose(0, 3, 1, 2)
    return np.ascontiguousarray((x - 127.0) / 128.0)


def describe(backbone: str) -> dict:
    """The preprocessing recipe, as recorded in model.json."""
    s = spec(backbone)
    return {
        "version": PREPROCESS_VERSION,
        "features": (" + ".join(f"{p} global-average-pooled 1280-d" for p in s.components)
                     + (f", concatenated ({s.dim}-d), all on the same input" if s.parts else "")),
        "resize_short_side": s.resize,
        "interpolation": "bicubic",
        "crop": "centre",
        "input_size": s.size,
        "scaling": "(x - 127) / 128",
        "layout": "NCHW float32 RGB",
        "decode": "upright.imaging.open_image(path, size=resize_short_side)",
    }
