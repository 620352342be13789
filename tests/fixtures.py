"""Test fixtures made in code: asymmetric pictures, phone-like orientation, datasets.

Nothing here downloads anything. Every fixture writes real files with real encoders.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from upright.imaging import store_as

# Corner colours of the asymmetric picture, clockwise from top-left.
RED, GREEN, BLUE, YELLOW = (220, 30, 30), (30, 200, 40), (30, 40, 220), (240, 220, 30)
GREY = (128, 128, 128)


def asym_picture(w: int = 96, h: int = 64) -> Image.Image:
    """A landscape picture with a distinct colour block in each corner (upright reference)."""
    arr = np.full((h, w, 3), GREY, np.uint8)
    bh, bw = h // 3, w // 3
    arr[:bh, :bw] = RED
    arr[:bh, -bw:] = GREEN
    arr[-bh:, :bw] = BLUE
    arr[-bh:, -bw:] = YELLOW
    return Image.fromarray(arr, "RGB")


def corners(img: Image.Image) -> list[tuple[int, int, int]]:
    """The colours at the centres of the four corner blocks: TL, TR, BL, BR."""
    img = img.convert("RGB")
    w, h = img.size
    xs, ys = (w // 6, w - 1 - w // 6), (h // 6, h - 1 - h // 6)
    return [img.getpixel((x, y)) for y in ys for x in xs]


def same_colour(a, b, tol: int = 40) -> bool:
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a, b))


def looks_upright(img: Image.Image, tol: int = 40) -> bool:
    """True when img shows asym_picture the right way up (corner colours in place, landscape)."""
    got = corners(img)
    want = [RED, GREEN, BLUE, YELLOW]
    return img.size[0] > img.size[1] and all(same_colour(g, w, tol) for g, w in zip(got, want))


def exif_bytes(orientation: int | None = None, make: str | None = None, model: str | None = None) -> bytes:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    return exif.tobytes()


def encode(img: Image.Image, fmt: str = "JPEG", orientation: int | None = None,
           make: str | None = None, model: str | None = None, **kw) -> bytes:
    """Encode img as a camera stores it for `orientation` (the picture itself is upright)."""
    stored = store_as(img, orientation) if orientation and 1 <= orientation <= 8 else img
    if orientation is not None or make or model:
        kw["exif"] = exif_bytes(orientation, make, model)
    if fmt == "JPEG":
        kw.setdefault("quality", 95)
    buf = io.BytesIO()
    stored.save(buf, fmt, **kw)
    return buf.getvalue()


def write_photo(path: Path, img: Image.Image, orientation: int | None = None, fmt: str = "JPEG", **kw) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(img, fmt, orientation, **kw))
    return path


def class_picture(label_index: int, variant: int, w: int = 160, h: int = 120) -> Image.Image:
    """A picture whose content depends on the class (stripes of a class hue) plus a variant."""
    rng = np.random.default_rng(1000 * label_index + variant)
    y, x = np.mgrid[0:h, 0:w]
    hue = np.array([(230, 60, 40), (40, 90, 230), (50, 200, 70), (230, 200, 40), (160, 60, 200)][label_index % 5])
    period = 8 + 6 * label_index
    stripes = ((x + y * (label_index % 2) + variant * 3) // period) % 2
    arr = np.where(stripes[..., None] == 1, hue, 255 - hue // 2).astype(np.float64)
    arr += rng.normal(0, 12, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def make_dataset(root: Path, n_per_class: int = 8, classes=("cat", "dog"), orientation=None, w=160, h=120) -> Path:
    """A folder-per-class dataset of distinct synthetic JPEGs. orientation: None, an int, or
    a dict label -> int (the per-class shortcut of the soda-can story)."""
    root = Path(root)
    for ci, label in enumerate(classes):
        o = orientation.get(label) if isinstance(orientation, dict) else orientation
        for i in range(n_per_class):
            write_photo(root / label / f"{label}_{i:03d}.jpg", class_picture(ci, i, w, h), o)
    return root
