"""The decode stage: a source -> the canvas a model's views are cut from, by its input contract
(upright.contract.InputContract): short side to `resize` (`interpolation`), then either the
whole resized picture (for views off centre) or its centre `size` window.

Reads go through imaging.py only (`open_image(source, size=resize, orient=...)`, which decodes
JPEG in the DCT domain and applies the orientation once). Dihedral variants are taken on the
square crop (for a square centre crop, cropping and rotating/flipping commute), so one decode
serves all eight variants (orientation.variant_array) and every corner view (upright.views).
`to_input` is the last step before the network: the contract's scaling and layout.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..contract import InputContract
from ..imaging import Decoded, open_image
from ..views import window


def resized_picture(img: Image.Image, c: InputContract) -> np.ndarray:
    """uint8 [H, W, 3]: the picture with its short side resized to `c.resize` (unless already
    there; neither side under `c.size`), the canvas every view is cut from (upright.views)."""
    w, h = img.size
    if min(w, h) != c.resize:
        scale = c.resize / min(w, h)
        least = c.size or 1
        img = img.resize((max(least, round(w * scale)), max(least, round(h * scale))),
                         Image.Resampling[c.interpolation.upper()])
    return np.asarray(img.convert("RGB") if img.mode != "RGB" else img)


def centre_crop(img: Image.Image, c: InputContract) -> np.ndarray:
    """Resize the short side to `c.resize` (unless already there) and cut the centre square
    (a contract without a fixed `size` keeps the resized picture)."""
    picture = resized_picture(img, c)
    return np.ascontiguousarray(picture if c.size is None else window(picture, "centre", c.size))


def image_canvas(img: Image.Image, c: InputContract, picture: bool = False) -> np.ndarray:
    """What views are cut from: the whole resized picture when `picture` (views off centre need
    it), else its centre crop."""
    return np.ascontiguousarray(resized_picture(img, c)) if picture else centre_crop(img, c)


def load_canvas(source, c: InputContract, picture: bool = False) -> tuple[np.ndarray, Decoded]:
    """Decode through the one door at the size the contract needs -> (uint8 canvas, Decoded);
    upright unless the contract reads pixels as stored."""
    dec = open_image(source, size=c.resize, orient=c.orient)
    return image_canvas(dec.image, c, picture), dec


def to_input(batch_uint8: np.ndarray, c: InputContract) -> np.ndarray:
    """uint8 [N, H, W, 3] -> the network input the contract names: float32 scaled
    (x - mean) / std; a quantised input round(((x - mean) / std) / scale) + zero point in its
    integer type; or the raw uint8 pixels; NCHW or NHWC."""
    x = np.asarray(batch_uint8)
    if c.dtype == "float32" or c.quantization is not None:
        x = (x.astype(np.float32) - np.float32(c.mean)) / np.float32(c.std)
    if c.quantization is not None:
        scale, zero = c.quantization
        info = np.iinfo(c.dtype)
        x = np.clip(np.round(x / np.float32(scale)) + zero, info.min, info.max).astype(c.dtype)
    if c.layout == "nchw":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x)


__all__ = ["centre_crop", "image_canvas", "load_canvas", "resized_picture", "to_input"]
