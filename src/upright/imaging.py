"""The one door for pixels: every image upright reads is decoded here.

`open_upright` returns the picture the way a photo viewer shows it: EXIF/XMP orientation
applied exactly once (TIFF and HEIF decoders apply their own; we never rotate twice),
colour-managed to sRGB, composited on white, 8-bit RGB. With `size`, JPEGs are decoded in
the DCT domain at the largest reduction that keeps the short side >= size.

No other module may call `Image.open`, `cv2.imread` or a decoder (tests enforce it).
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Iterator, Union

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from .errors import UnreadableImage, one_line
from .orientation import apply_orientation, store_as

try:  # HEIC/HEIF from iPhones; pillow-heif applies the container transform on open.
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_SUPPORTED = True
except ImportError:  # pragma: no cover - pillow-heif is a core dependency
    HEIF_SUPPORTED = False

Source = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]

ORIENTATION_TAG = 0x0112
#: Formats whose decoder applies the orientation itself (we must not apply it again).
DECODER_ORIENTS = {"TIFF", "HEIF"}

DEFAULT_MAX_PIXELS = 120_000_000  # above 108 MP phone sensors, far below a bomb
_max_pixels = int(os.environ.get("UPRIGHT_MAX_PIXELS", DEFAULT_MAX_PIXELS))
_lock = threading.Lock()


def set_max_pixels(limit: int) -> None:
    """Raise or lower the decompression-bomb limit (pixels per image) for this process."""
    global _max_pixels
    with _lock:
        _max_pixels = int(limit)
        if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS * 2 < _max_pixels:
            Image.MAX_IMAGE_PIXELS = _max_pixels  # Pillow errors at 2x its own limit


def get_max_pixels() -> int:
    return _max_pixels


set_max_pixels(_max_pixels)


@dataclass
class Orientation:
    """What the file says about its orientation and what must still be done about it."""

    tag: int | None = None  # the value found in the file (EXIF, XMP or HEIF), None if absent
    source: str | None = None  # "exif", "xmp", "heif" or None
    pending: int = 1  # transform still to apply after decoding (1 = none)
    problem: str | None = None  # why a tag was ignored, if it was


@dataclass
class Decoded:
    """An image read through the door, with what was learned on the way."""

    image: Image.Image
    orientation: Orientation
    stored_size: tuple[int, int]  # full-resolution pixel size as stored in the file
    format: str
    mode: str  # the file's pixel mode before conversion (e.g. "CMYK", "I;16", "P")
    notes: list[str] = field(default_factory=list)


def _name(source: Source) -> str | None:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return getattr(source, "name", None) if hasattr(source, "read") else None


def _reason_for_unidentified(data_head: bytes) -> str:
    if not data_head:
        return "empty file (0 bytes)"
    try:
        sample = data_head[:512].decode("utf-8")
        if sample.strip() and all(c.isprintable() or c.isspace() for c in sample):
            return "not an image: the file holds text"
    except UnicodeDecodeError:
        pass
    if data_head[:4] in (b"\x00\x00\x00\x18", b"\x00\x00\x00\x1c") and b"ftyp" in data_head[:12]:
        return "unsupported format: an ISO media file that is not a readable HEIF/AVIF image"
    return "not an image: unrecognised or unsupported format"


@contextmanager
def open_header(source: Source) -> Iterator[Image.Image]:
    """Open an image lazily (header only, no pixels decoded), with the bomb check applied.

    Raises UnreadableImage with a one-line reason.
    """
    name = _name(source)
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            fp: BinaryIO = io.BytesIO(bytes(source))
            close = True
        elif hasattr(source, "read"):
            fp, close = source, False  # type: ignore[assignment]
        else:
            path = Path(source)
            if not path.exists():
                raise UnreadableImage(name, "file not found")
            if path.is_dir():
                raise UnreadableImage(name, "is a folder, not an image file")
            fp, close = open(path, "rb"), True
    except OSError as exc:
        raise UnreadableImage(name, f"cannot read file: {one_line(exc)}") from exc
    try:
        head = fp.read(512)
        fp.seek(0)
        if not head:
            raise UnreadableImage(name, "empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                im = Image.open(fp)
            except UnidentifiedImageError as exc:
                raise UnreadableImage(name, _reason_for_unidentified(head)) from exc
            except Image.DecompressionBombError as exc:
                raise UnreadableImage(name, _bomb_reason(None, exc)) from exc
            except UnreadableImage:
                raise
            except Exception as exc:  # Pillow raises many types on hostile headers
                raise UnreadableImage(name, f"corrupt image header: {one_line(exc)}") from exc
        w, h = im.size
        if w <= 0 or h <= 0:
            raise UnreadableImage(name, f"invalid image size {w}x{h}")
        if w * h > _max_pixels:
            raise UnreadableImage(name, _bomb_reason((w, h), None))
        try:
            yield im
        finally:
            im.close()
    finally:
        if close:
            fp.close()


def _bomb_reason(size: tuple[int, int] | None, exc: BaseException | None) -> str:
    what = f"{size[0]}x{size[1]} = {size[0] * size[1]:,} pixels" if size else one_line(exc)
    return (
        f"decompression bomb guard: {what} exceeds the limit of {_max_pixels:,} pixels "
        "(raise it with UPRIGHT_MAX_PIXELS or upright.imaging.set_max_pixels)"
    )


def read_orientation(im: Image.Image) -> Orientation:
    """Read the orientation of a lazily opened image without decoding its pixels.

    EXIF first, then XMP tiff:Orientation (Pillow merges it in), then HEIF's record.
    Malformed values are treated as upright, with the reason kept in `problem`.
    """
    fmt = (im.format or "").upper()
    if fmt == "HEIF" or "original_orientation" in im.info:
        raw = im.info.get("original_orientation")
        tag = raw if isinstance(raw, int) and 1 <= raw <= 8 else None
        return Orientation(tag=tag, source="heif" if tag else None, pending=1)
    try:
        value = im.getexif().get(ORIENTATION_TAG)
    except Exception as exc:  # broken IFD, bad offsets, recursion
        return Orientation(problem=f"malformed EXIF ignored ({one_line(exc)})")
    if value is None:
        return Orientation()
    has_exif_block = bool(im.info.get("exif")) or "Raw profile type exif" in im.info or fmt == "TIFF"
    source = "exif" if has_exif_block else "xmp"
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int):
        return Orientation(source=source, problem=f"orientation tag has the wrong type ({value!r}); treated as upright")
    if not 1 <= value <= 8:
        return Orientation(tag=value, source=source, problem=f"orientation value {value} is not 1-8; treated as upright")
    pending = 1 if fmt in DECODER_ORIENTS else value
    return Orientation(tag=value, source=source, pending=pending)


@lru_cache(maxsize=32)
def _icc_transform(profile: bytes, mode: str):
    src = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    desc = (ImageCms.getProfileDescription(src) or "").strip().lower()
    if mode == "RGB" and desc.startswith("srgb"):
        return None  # already sRGB: nothing to do
    dst = ImageCms.createProfile("sRGB")
    return ImageCms.buildTransform(src, dst, mode, "RGB", renderingIntent=ImageCms.Intent.PERCEPTUAL)


def _to_rgb(im: Image.Image, notes: list[str]) -> Image.Image:
    """Any decoded mode -> 8-bit sRGB RGB, alpha composited on white."""
    mode = im.mode
    icc = im.info.get("icc_profile")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if mode == "F":
            top = 1.0 if arr.max(initial=0) <= 1.0 else 65535.0
        else:
            top = 65535.0 if (mode.startswith("I;16") or arr.max(initial=0) > 255) else 255.0
        arr = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info) or (
        mode in ("RGB", "L") and "transparency" in im.info
    ):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if icc and mode in ("RGB", "CMYK"):
        try:
            transform = _icc_transform(icc, mode)
            if transform is None:
                return im if mode == "RGB" else im.convert("RGB")
            return ImageCms.applyTransform(im, transform)
        except Exception as exc:
            notes.append(f"embedded colour profile ignored ({one_line(exc)})")
    return im if mode == "RGB" else im.convert("RGB")


def _target_size(w: int, h: int, short: int) -> tuple[int, int]:
    scale = short / min(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def open_image(source: Source, size: int | None = None, *, orient: bool = True) -> Decoded:
    """Decode `source` (path, bytes or binary file) to 8-bit RGB.

    size: when given, the short side of the result is exactly `size` (bicubic), decoded in
    the DCT domain for JPEG. orient=False returns the pixels as stored, ignoring the tag:
    what EXIF-ignoring tools (Pillow's plain open, Keras, tf.io, torchvision) feed a model.
    Raises UnreadableImage with a one-line reason.
    """
    name = _name(source)
    with open_header(source) as im:
        fmt = (im.format or "").upper()
        file_mode = im.mode
        orientation = read_orientation(im)
        stored_size = im.size
        if fmt in DECODER_ORIENTS and orientation.tag in (5, 6, 7, 8):
            stored_size = stored_size[::-1]  # these decoders report the size after their transform
        notes = [orientation.problem] if orientation.problem else []
        if size and fmt in ("JPEG", "MPO") and getattr(im, "draft", None):
            im.draft("RGB" if im.mode == "RGB" else None, _target_size(*stored_size, size))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im.load()
                rgb = _to_rgb(im, notes)
        except UnreadableImage:
            raise
        except Image.DecompressionBombError as exc:
            raise UnreadableImage(name, _bomb_reason(None, exc)) from exc
        except MemoryError as exc:
            raise UnreadableImage(name, "out of memory while decoding") from exc
        except Exception as exc:
            raise UnreadableImage(name, _decode_reason(exc)) from exc
        if fmt in DECODER_ORIENTS and not orient and orientation.tag and orientation.tag != 1:
            # The decoder already turned it upright; "as stored" means undoing that.
            rgb = store_as(rgb, orientation.tag)
        if size:
            w, h = rgb.size
            fw, fh = stored_size  # plan from full resolution: DCT scaling rounds sizes up
            if (w >= h) != (fw >= fh):
                fw, fh = fh, fw
            target = _target_size(fw, fh, size)
            if target != (w, h):
                rgb = rgb.resize(target, Image.Resampling.BICUBIC)
        if orient and orientation.pending != 1:
            rgb = apply_orientation(rgb, orientation.pending)
        if rgb is im:
            rgb = rgb.copy()  # detach from the file before it closes
        return Decoded(rgb, orientation, stored_size, fmt, file_mode, notes)


def _decode_reason(exc: BaseException) -> str:
    text = one_line(exc)
    if "truncated" in text.lower():
        return f"truncated image data ({text})"
    return f"corrupt image data: {text}"


def open_upright(source: Source, size: int | None = None) -> Image.Image:
    """The picture as a photo viewer shows it: RGB, upright; short side = size if given."""
    return open_image(source, size).image


def open_stored(source: Source, size: int | None = None) -> Image.Image:
    """The pixels as stored, orientation ignored: the view of EXIF-ignoring loaders."""
    return open_image(source, size, orient=False).image
