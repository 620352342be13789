"""The one door for pixels: every image upright reads is decoded here.

`open_upright` returns the picture the way a photo viewer shows it: EXIF/XMP orientation
applied exactly once (TIFF and HEIF decoders apply their own; we never rotate twice),
colour-managed to sRGB, composited on white, 8-bit RGB. With `size`, JPEGs are decoded in
the DCT domain at the largest reduction that keeps the short side >= size, and other
formats are box-reduced band by band right after decoding, so memory stays bounded.

Hostile files get a one-line `UnreadableImage`, bounded time and bounded memory: before
Pillow parses a header, a walk of it within caps (containers.survey: segment, chunk, tag and
box counts); before any pixel buffer exists, a pixel limit on what the file declares and one
cost model for every decoder path against a memory budget (cost.py); an aspect limit on what
a sized read returns, limits on progressive-JPEG scans, on ICC profile size, and only the
formats below are opened (Pillow knows ~40 more, e.g. EPS, which would run Ghostscript).

No other module may call `Image.open`, `cv2.imread` or a decoder (tests enforce it).
"""

from __future__ import annotations

import hashlib
import io
import operator
import os
import re
import threading
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Union

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from . import containers, cost
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

#: The only formats opened. Pillow identifies many more; none of them is a phone or web photo.
SUPPORTED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "TIFF", "HEIF", "AVIF", "BMP", "GIF")

#: Pixels a file may declare. 210 MP admits every phone sensor shipping (200 MP Samsung,
#: Xiaomi, Motorola, Honor: 16320x12240 = 199.8 MP) with 5% to spare, refuses bombs, and keeps
#: the memory contract: a decoded picture costs at most 4 bytes a pixel (0.84 GB at the limit).
DEFAULT_MAX_PIXELS = 210_000_000
#: A sized read returns short side = size: a 1x5000 strip would become 224x1,120,000.
MAX_ASPECT = 100
#: Progressive JPEG: each scan is a pass over every block, even an empty one.
MAX_JPEG_SCANS = 100
MAX_JPEG_SCAN_MEGAPIXELS = 3000  # scans x megapixels: 10 scans of a 200 MP photo pass
#: libjpeg holds all DCT coefficients (2 bytes each) of a progressive or multi-scan JPEG.
MAX_JPEG_COEFFICIENT_BYTES = 640 << 20
#: Real embedded profiles are a few KB (matrix) to ~2 MB (printer LUTs).
MAX_ICC_BYTES = 4 << 20
#: Conversions run on bands of about this many pixels (8 MB as RGB).
BAND_PIXELS = 1 << 21
#: A sized non-JPEG read box-reduces first while the short side stays >= size x this gap
#: (Pillow's `reducing_gap`: at 3 the result matches a plain bicubic resize).
REDUCING_GAP = 3

Image.init()  # register every plugin, then open only ours (AVIF needs Pillow's libavif build)
_OPEN_FORMATS = tuple(f for f in SUPPORTED_FORMATS if f in Image.OPEN)

_max_pixels = int(os.environ.get("UPRIGHT_MAX_PIXELS", DEFAULT_MAX_PIXELS))
#: Bytes one file's decode may hold (cost.py prices every read against it before decoding).
_decode_budget = int(os.environ.get("UPRIGHT_MAX_DECODE_MB", cost.DEFAULT_BUDGET >> 20)) << 20
_lock = threading.Lock()


def set_max_pixels(limit: int) -> None:
    """Raise or lower the decompression-bomb limit (pixels per image) for this process."""
    global _max_pixels
    with _lock:
        _max_pixels = int(limit)
        if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < _max_pixels:
            Image.MAX_IMAGE_PIXELS = _max_pixels  # Pillow errors at 2x its own limit: ours comes first


def get_max_pixels() -> int:
    return _max_pixels


def set_decode_budget(nbytes: int) -> None:
    """Raise or lower the memory one file's decode may take (bytes) for this process."""
    global _decode_budget
    _decode_budget = int(nbytes)


def get_decode_budget() -> int:
    return _decode_budget


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


@dataclass
class _Opened:
    """A header opened through the door: Pillow's lazy image and what the walk declared."""

    im: Image.Image
    survey: containers.Survey
    file_size: int
    name: str | None

    @property
    def canvas(self) -> tuple[int, int]:
        """The largest picture the file declares (AVIF may declare more than Pillow reports)."""
        declared = self.survey.canvas or (0, 0)
        return max(tuple(self.im.size), declared, key=lambda s: s[0] * s[1])


@contextmanager
def _source_file(source: Source) -> Iterator[tuple[BinaryIO, int]]:
    """(binary file, its size) for a path, bytes or an open binary file; one-line errors."""
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
        size = fp.seek(0, io.SEEK_END)
        fp.seek(0)
    except OSError as exc:
        raise UnreadableImage(name, f"cannot read file: {one_line(exc)}") from exc
    try:
        yield fp, size
    finally:
        if close:
            fp.close()


def _survey(fp: BinaryIO, file_size: int, name: str | None) -> containers.Survey:
    """Walk the header within the caps and refuse on its declarations alone, before Pillow
    parses it (Pillow's WebP plugin allocates the canvas as it opens the file)."""
    try:
        found = containers.survey(fp)
    except containers.HeaderLimit as exc:
        raise UnreadableImage(name, str(exc)) from None
    if found.kind in cost.READ_WHOLE and file_size > _decode_budget:
        raise UnreadableImage(name, f"a {file_size / 1e6:,.0f} MB {found.kind.lower()} file, which its decoder reads "
                                    f"whole, over the memory budget of {_decode_budget >> 20:,} MB for one file")
    if found.canvas:
        w, h = found.canvas
        if w * h > _max_pixels:
            raise UnreadableImage(name, _bomb_reason((w, h), None))
        why = cost.declared_reason(found.canvas, found, file_size) if w and h else None
        if why:
            raise UnreadableImage(name, why)
    return found


@contextmanager
def _open(source: Source) -> Iterator[_Opened]:
    """The door's first step: header walked within caps, then opened lazily by Pillow."""
    name = _name(source)
    with _source_file(source) as (fp, file_size):
        head = fp.read(512)
        fp.seek(0)
        if not head:
            raise UnreadableImage(name, "empty file (0 bytes)")
        found = _survey(fp, file_size, name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bomb warnings, EXIF and palette warnings
            try:
                im = Image.open(fp, formats=_OPEN_FORMATS)
            except UnidentifiedImageError as exc:
                raise UnreadableImage(name, _reason_for_unidentified(head)) from exc
            except Image.DecompressionBombError as exc:
                raise UnreadableImage(name, _bomb_reason(None, exc)) from exc
            except UnreadableImage:
                raise
            except Exception as exc:  # Pillow raises many types on hostile headers
                raise UnreadableImage(name, _header_reason(exc)) from exc
        try:
            w, h = im.size
            if w <= 0 or h <= 0:
                raise UnreadableImage(name, f"invalid image size {w}x{h}")
            if w * h > _max_pixels:
                raise UnreadableImage(name, _bomb_reason((w, h), None))
            yield _Opened(im, found, file_size, name)
        finally:
            im.close()


@contextmanager
def open_header(source: Source) -> Iterator[Image.Image]:
    """Open an image lazily (header only, no pixels decoded), with the bomb check applied.

    Raises UnreadableImage with a one-line reason. Never `.load()` the result (a test
    forbids it): decoding goes through `open_image` or `open_pixels`, which price it first.
    """
    with _open(source) as opened:
        yield opened.im


def _header_reason(exc: BaseException) -> str:
    text = one_line(exc)
    if "security limit" in text.lower():  # libheif's own guard against huge grids and items
        return _bomb_reason(None, exc)
    return f"corrupt image header: {text}"


def _bomb_reason(size: tuple[int, int] | None, exc: BaseException | None) -> str:
    """One message per refusal, quoting upright's limit only."""
    if size:
        what = f"{size[0]}x{size[1]} = {size[0] * size[1]:,} pixels"
    else:
        m = re.search(r"\((\d+) pixels\)", str(exc))  # Pillow: "Image size (N pixels) exceeds limit..."
        what = f"{int(m[1]):,} pixels" if m else f"the declared size ({one_line(exc, 120)})"
    return (
        f"decompression bomb guard: {what} exceeds the limit of {_max_pixels:,} pixels "
        "(raise it with UPRIGHT_MAX_PIXELS or upright.imaging.set_max_pixels)"
    )


def header_exif(im: Image.Image) -> Image.Exif:
    """The EXIF a file declares ahead of its pixel data, read without decoding pixels.

    Pillow's PNG `getexif()` decodes the whole image to look for an eXIf chunk after the
    image data; such a late chunk is ignored by browsers and ImageMagick, and by us.
    """
    if (im.format or "").upper() == "PNG":
        return Image.Image.getexif(im)
    return im.getexif()


def read_orientation(im: Image.Image) -> Orientation:
    """Read the orientation of a lazily opened image without decoding its pixels.

    EXIF first, then XMP tiff:Orientation (Pillow merges it in); for HEIF the container's
    irot/imir (what libheif applies). Malformed values are treated as upright, with the
    reason kept in `problem`.
    """
    fmt = (im.format or "").upper()
    if fmt == "HEIF":
        return _heif_orientation(im)
    try:
        value = header_exif(im).get(ORIENTATION_TAG)
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


def container_geometry(im: Image.Image) -> containers.ItemGeometry:
    """The HEIF/AVIF primary item's transforms (irot/imir/clap), read from the 'meta' box."""
    fp = getattr(im, "fp", None)
    if fp is None or (im.format or "").upper() not in ("HEIF", "AVIF"):
        return containers.ItemGeometry((), None)
    try:
        pos = fp.tell()
        try:
            return containers.heif_geometry(containers.read_meta_box(fp))
        finally:
            fp.seek(pos)
    except (OSError, ValueError):
        return containers.ItemGeometry((), None)


def orientation_of(transforms) -> int:
    """The EXIF Orientation value equal to a sequence of irot/imir transforms (1 if none)."""
    ops = []
    for t in transforms:
        if t[0] == "irot" and t[1] % 360:
            ops.append({90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180,
                        270: Image.Transpose.ROTATE_270}[t[1] % 360])
        elif t[0] == "imir":  # axis 0: top and bottom exchanged; 1: left and right
            ops.append(Image.Transpose.FLIP_TOP_BOTTOM if t[1] == 0 else Image.Transpose.FLIP_LEFT_RIGHT)
    if not ops:
        return 1
    probe = Image.frombytes("L", (3, 2), bytes(range(6)))
    turned = probe
    for op in ops:
        turned = turned.transpose(op)
    for value in range(1, 9):
        if apply_orientation(probe, value).tobytes() == turned.tobytes() and \
                apply_orientation(probe, value).size == turned.size:
            return value
    return 1  # pragma: no cover - the eight values cover every rotation and mirror


def _heif_orientation(im: Image.Image) -> Orientation:
    """libheif turns the picture by the container's irot/imir and ignores EXIF Orientation
    (as the HEIF standard says). Phones write both, in agreement; when they differ or the
    container has none, the EXIF value is reported as a problem, not applied."""
    raw = im.info.get("original_orientation")
    exif_tag = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
    turn = orientation_of(container_geometry(im).transforms)
    problem = None
    if exif_tag is not None and exif_tag != 1 and exif_tag != turn:
        problem = (f"EXIF orientation {exif_tag} ignored: the HEIF container "
                   + (f"turns the picture as {turn}" if turn != 1 else "does not turn the picture"))
    if turn != 1:
        return Orientation(tag=turn, source="heif", pending=1, problem=problem)
    return Orientation(tag=1 if exif_tag == 1 else None, source="heif" if exif_tag == 1 else None,
                       pending=1, problem=problem)


def crop_box(im: Image.Image) -> tuple[int, int, int, int] | None:
    """AVIF's clean-aperture crop as a pixel box on the stored pixels (libavif reports it but
    leaves it to the caller; libheif applies it for HEIF itself). None when absent or invalid."""
    if (im.format or "").upper() != "AVIF":
        return None
    for t in container_geometry(im).transforms:
        if t[0] == "clap":
            box = t[1].box(*im.size)
            return None if box == (0, 0, *im.size) else box
    return None


def frame_count(im: Image.Image) -> int:
    """Frames in a lazily opened file, without decoding them, counted up to
    containers.MAX_COUNTED_FRAMES (Pillow's GIF `n_frames` decodes every frame to count, its
    TIFF `n_frames` parses every page). 1 when the header cannot say."""
    try:
        fmt = (im.format or "").upper()
        if fmt in ("GIF", "TIFF"):
            fp = im.fp
            pos = fp.tell()
            try:
                count = containers.gif_frame_count if fmt == "GIF" else containers.tiff_page_count
                return count(fp)
            finally:
                fp.seek(pos)
        return max(1, min(int(getattr(im, "n_frames", 1) or 1), containers.MAX_COUNTED_FRAMES))
    except Exception:
        return 1


# Colour transforms keyed by the profile's digest, bounded in count and in profile bytes
# (an LRU keyed by the profile itself held 32 x 8 MB profiles, ~0.5 GB).
_ICC_CACHE: OrderedDict[tuple[str, str], tuple[object, int]] = OrderedDict()
_ICC_CACHE_MAX = 32
_ICC_CACHE_BYTES = 16 << 20


def _icc_transform(profile: bytes, mode: str):
    if len(profile) > MAX_ICC_BYTES:
        raise ValueError(f"profile of {len(profile):,} bytes is larger than {MAX_ICC_BYTES:,}")
    key = (hashlib.sha256(profile).hexdigest(), mode)
    with _lock:
        if key in _ICC_CACHE:
            _ICC_CACHE.move_to_end(key)
            return _ICC_CACHE[key][0]
    src = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    desc = (ImageCms.getProfileDescription(src) or "").strip().lower()
    if mode == "RGB" and desc.startswith("srgb"):
        transform = None  # already sRGB: nothing to do
    else:
        dst = ImageCms.createProfile("sRGB")
        transform = ImageCms.buildTransform(src, dst, mode, "RGB", renderingIntent=ImageCms.Intent.PERCEPTUAL)
    with _lock:
        _ICC_CACHE[key] = (transform, len(profile))
        while len(_ICC_CACHE) > _ICC_CACHE_MAX or sum(n for _, n in _ICC_CACHE.values()) > _ICC_CACHE_BYTES:
            _ICC_CACHE.popitem(last=False)
    return transform


_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _wide_top(im: Image.Image) -> float:
    """The value that maps to white for 16-bit, 32-bit integer and float pictures."""
    if im.mode.startswith("I;16"):
        return 65535.0
    lo, hi = im.getextrema()
    if im.mode == "F":
        return 1.0 if not hi > 1.0 else 65535.0  # NaN counts as "not above 1"
    return 65535.0 if hi > 255 else 255.0


def _wide_to_rgb(band: Image.Image, top: float) -> Image.Image:
    """A band of a 16/32-bit or float picture -> 8-bit RGB, in float32 (never float64 of the
    whole picture: a 231 KB 16-bit PNG used to cost 3 GB that way)."""
    arr = np.asarray(band)
    out = np.asarray(arr, dtype=np.float32) * np.float32(255.0 / top)
    out = np.clip(np.rint(np.nan_to_num(out, nan=0.0)), 0, 255).astype(np.uint8)
    key = band.info.get("transparency")
    if isinstance(key, int) and not isinstance(key, bool):
        out[arr == key] = 255  # transparent where the key matches: white, like every other mode
    return Image.fromarray(out, "L").convert("RGB")


def _to_rgb(im: Image.Image, notes: list[str], top: float | None = None) -> Image.Image:
    """Any decoded mode -> 8-bit sRGB RGB, alpha composited on white."""
    mode = im.mode
    icc = im.info.get("icc_profile")
    if mode in _WIDE_MODES:
        return _wide_to_rgb(im, top if top is not None else _wide_top(im))
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
            note = f"embedded colour profile ignored ({one_line(exc)})"
            if note not in notes:
                notes.append(note)
    return im if mode == "RGB" else im.convert("RGB")


def _is_plain_rgb(mode: str, info: dict) -> bool:
    return mode == "RGB" and "transparency" not in info and not info.get("icc_profile")


def _convert(band_at: Callable[[tuple[int, int, int, int]], Image.Image], mode: str, info: dict,
             box: tuple[int, int, int, int], k: int, notes: list[str], top: float | None) -> Image.Image:
    """Convert the pixels in `box` to RGB band by band, box-reducing each band by `k`: memory
    is the decoded file plus one band plus the result, never a second full-size copy."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    out = Image.new("RGB", (-(-w // k), -(-h // k)))
    rows = max(k, (BAND_PIXELS // max(w, 1)) // k * k)
    for y in range(y0, y1, rows):
        band = band_at((x0, y, x1, min(y + rows, y1)))
        band.info = dict(info)
        rgb = _to_rgb(band, notes, top)
        if k > 1:
            rgb = rgb.reduce(k)
        out.paste(rgb, (0, (y - y0) // k))
    return out


def _target_size(w: int, h: int, short: int) -> tuple[int, int]:
    scale = short / min(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _check_output(name: str | None, stored: tuple[int, int], size: int) -> None:
    """Refuse sized reads whose result would be huge: short side = size stretches thin strips."""
    w, h = stored
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise UnreadableImage(name, f"too thin to read at size {size}: {w}x{h} is beyond the "
                                    f"{MAX_ASPECT}:1 aspect limit")
    tw, th = _target_size(w, h, size)
    if tw * th > _max_pixels:
        raise UnreadableImage(name, _bomb_reason((tw, th), None) + f" (the picture at size {size})")


def _jpeg_coefficients(opened: _Opened) -> int:
    """Bytes of DCT coefficients libjpeg will hold (0 for a single-scan baseline file), after
    refusing JPEGs whose scans would cost far more time than their pixels suggest."""
    im, name = opened.im, opened.name
    progressive = bool(im.info.get("progressive"))
    w, h = im.size
    if not progressive and w * h <= 16_000_000:
        return 0  # baseline: one pass; a few non-interleaved scans at most
    if opened.survey.body is None:
        return 0  # no scan found: the decoder will call it truncated
    coded = 2 * w * h * max(len(getattr(im, "layer", None) or ()), 1) + (64 << 20)
    try:
        scans = containers.jpeg_scan_count(im.fp, opened.survey.body, MAX_JPEG_SCANS, coded)
    except containers.HeaderLimit as exc:
        raise UnreadableImage(name, str(exc)) from None
    mp = w * h / 1e6
    if progressive and (scans > MAX_JPEG_SCANS or scans * mp > MAX_JPEG_SCAN_MEGAPIXELS):
        raise UnreadableImage(name, f"progressive JPEG with {scans}{'+' if scans > MAX_JPEG_SCANS else ''} scans "
                                    f"over {mp:.1f} MP: beyond the limit of {MAX_JPEG_SCANS} scans and "
                                    f"{MAX_JPEG_SCAN_MEGAPIXELS} scan-megapixels (a denial-of-service pattern)")
    if not (progressive or scans > 1):
        return 0
    coef = cost.coefficient_bytes(w, h, getattr(im, "layer", None) or [])
    if coef > MAX_JPEG_COEFFICIENT_BYTES:
        raise UnreadableImage(name, f"JPEG of {mp:.1f} MP in {scans} scans needs {coef / 2**30:.2f} GiB "
                                    f"of DCT coefficients, above the {MAX_JPEG_COEFFICIENT_BYTES >> 20} MiB "
                                    "memory budget")
    return coef


def _png_chunks(opened: _Opened) -> None:
    """Refuse PNGs whose image data comes in more chunks than their picture could need
    (Pillow's decoder steps through them in Python): 1 KB of raw pixels a chunk at least,
    or 65,536 chunks for small pictures."""
    if opened.survey.body is None:
        return
    w, h = opened.im.size
    limit = max(65536, w * h * cost.storage(opened.im.mode) // 1024)
    try:
        containers.png_chunk_count(opened.im.fp, opened.survey.body, limit)
    except containers.HeaderLimit as exc:
        raise UnreadableImage(opened.name, str(exc)) from None


def _price(opened: _Opened, size: int | None) -> cost.Cost:
    """What this read will hold, decided before any pixel buffer exists; UnreadableImage
    when it is over the budget (or a cap on scans or chunks refuses the file first)."""
    im = opened.im
    fmt = (im.format or "").upper()
    coefficients = _jpeg_coefficients(opened) if fmt in ("JPEG", "MPO") else 0
    if fmt == "PNG":
        _png_chunks(opened)
    depth = im.info.get("bit_depth") if fmt == "HEIF" else 8
    found = cost.price(fmt, im.mode, im.info, opened.canvas, size, survey=opened.survey,
                       file_size=opened.file_size, gap=REDUCING_GAP, coefficients=coefficients,
                       bit_depth=depth if isinstance(depth, int) else 8)
    if found.over(_decode_budget):
        raise UnreadableImage(opened.name, cost.over_budget_reason(found, opened.canvas, _decode_budget))
    return found


def estimate(source: Source, size: int | None = None) -> cost.Cost:
    """The memory `open_image(source, size)` will hold, from the header alone (a server
    reserves it from a shared budget before decoding). UnreadableImage when the read would
    be refused for its cost or its header."""
    with _open(source) as opened:
        return _price(opened, _checked_size(size))


def _heif_pixels(im: Image.Image):
    """Decode a HEIF with pillow-heif directly: its buffer is read band by band, sparing the
    full-size copy that Pillow's plugin makes (600 MB + 800 MB for a 200 MP photo)."""
    fp = im.fp
    fp.seek(0)
    heif = pillow_heif.open_heif(fp, convert_hdr_to_8bit=True, remove_stride=False)
    frame = heif[heif.primary_index]
    data = memoryview(frame.data)  # decodes (libheif applies irot/imir/clap)
    mode, (w, h), stride = frame.mode, frame.size, frame.stride

    def band_at(box):
        x0, y0, x1, y1 = box
        band = Image.frombuffer(mode, (w, y1 - y0), data[y0 * stride:y1 * stride], "raw", mode, stride, 1)
        return band if (x0, x1) == (0, w) else band.crop((x0, 0, x1, y1 - y0))

    return mode, (w, h), band_at


def _checked_size(size) -> int | None:
    if size is None:
        return None
    try:
        size = operator.index(size)  # ints, numpy ints; not floats
    except TypeError:
        raise ValueError(f"size must be a positive integer, not {size!r}") from None
    if size < 0:
        raise ValueError(f"size must be a positive integer, not {size!r}")
    return size or None  # 0 meant "full size" before, keep it so


@contextmanager
def _decode_errors(name: str | None) -> Iterator[None]:
    """Every failure while decoding as one UnreadableImage line."""
    try:
        yield
    except UnreadableImage:
        raise
    except Image.DecompressionBombError as exc:
        raise UnreadableImage(name, _bomb_reason(None, exc)) from exc
    except MemoryError as exc:
        raise UnreadableImage(name, "out of memory while decoding") from exc
    except Exception as exc:
        raise UnreadableImage(name, _decode_reason(exc)) from exc


def open_image(source: Source, size: int | None = None, *, orient: bool = True) -> Decoded:
    """Decode `source` (path, bytes or binary file) to 8-bit RGB.

    size: when given, the short side of the result is exactly `size` (bicubic), decoded in
    the DCT domain for JPEG. orient=False returns the pixels as stored, ignoring the tag:
    what EXIF-ignoring tools (Pillow's plain open, Keras, tf.io, torchvision) feed a model.
    Raises UnreadableImage with a one-line reason.
    """
    name = _name(source)
    size = _checked_size(size)
    with _open(source) as opened:
        im = opened.im
        fmt, file_mode = (im.format or "").upper(), im.mode
        orientation = read_orientation(im)
        notes = [orientation.problem] if orientation.problem else []
        crop = crop_box(im)
        stored_size = (crop[2] - crop[0], crop[3] - crop[1]) if crop else im.size
        if fmt in DECODER_ORIENTS and orientation.tag in (5, 6, 7, 8):
            stored_size = stored_size[::-1]  # these decoders report the size after their transform
        if size:
            _check_output(name, stored_size, size)
        with _decode_errors(name):
            _price(opened, size)
            if size and fmt in ("JPEG", "MPO") and getattr(im, "draft", None):
                im.draft("RGB" if im.mode == "RGB" else None, _target_size(*stored_size, size))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rgb = _decode_rgb(im, fmt, crop, stored_size, size, notes)
            rgb = _finish(rgb, im, fmt, orientation, stored_size, size, orient)
        return Decoded(rgb, orientation, stored_size, fmt, file_mode, notes)


def _finish(rgb: Image.Image, im: Image.Image, fmt: str, orientation: Orientation, stored_size, size, orient):
    """The decoded picture at its final size and orientation, detached from the file."""
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
        rgb = im._new(im.im)  # detach from the file before it closes, without a copy
    return rgb


@contextmanager
def open_pixels(source: Source) -> Iterator[Image.Image]:
    """The file's own pixels at full size, in its own mode (no orientation, no colour
    conversion), with its header info: what `fix` re-encodes. Priced and decoded by the door
    like every read; the image is valid inside the `with` block."""
    name = _name(source)
    with _open(source) as opened:
        with _decode_errors(name), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _price(opened, None)
            opened.im.load()
        yield opened.im


def _decode_rgb(im: Image.Image, fmt: str, crop, stored_size, size: int | None, notes: list[str]) -> Image.Image:
    """Decode and convert to RGB; with `size`, box-reduced by the largest whole factor that
    keeps the short side >= size x REDUCING_GAP (JPEG is already DCT-reduced by draft)."""
    if fmt == "HEIF" and HEIF_SUPPORTED:
        mode, dims, band_at = _heif_pixels(im)
        info = im.info
    else:
        key = im.info.get("transparency")
        raw = getattr(getattr(im, "png", None), "im_rawmode", "") or ""
        if isinstance(key, tuple) and raw.endswith(";16B"):
            im.info["transparency"] = tuple(v >> 8 for v in key)  # Pillow keeps 8 of the 16 bits
        im.load()
        mode, dims, info = im.mode, im.size, im.info
        band_at = im.crop
    box = crop if crop and crop[2] <= dims[0] and crop[3] <= dims[1] else (0, 0, *dims)
    w, h = box[2] - box[0], box[3] - box[1]
    k = max(1, min(w, h) // (size * REDUCING_GAP)) if size else 1
    if mode in _WIDE_MODES:
        top = _wide_top(im) if fmt != "HEIF" else 65535.0
    else:
        top = None
    if fmt != "HEIF" and _is_plain_rgb(mode, info):
        if k == 1 and box == (0, 0, *dims):
            return im  # nothing to convert: no copy
        return im.reduce(k, box) if k > 1 else im.crop(box)
    return _convert(band_at, mode, info, box, k, notes, top)


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
