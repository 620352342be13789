"""Per-file facts read from headers only (no pixel decode): what the audit reasons about."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from .errors import UnreadableImage, one_line
from .imaging import DECODER_ORIENTS, MAX_ICC_BYTES, crop_box, frame_count, header_exif, open_header, read_orientation
from .orientation import SWAPS_AXES

MAKE_TAG, MODEL_TAG = 0x010F, 0x0110
#: Bump when `describe` reads a fact differently: the facts recorded in the cache
#: (known_files.py) under another version are read again.
DESCRIBE_VERSION = 1
#: EXIF Software of a photo taken with `upright studio`'s camera (a browser canvas, no EXIF of its
#: own): the audit's "source" attribute tells these from uploaded files (audit/leakage.py).
STUDIO_CAMERA = "upright studio: captured in the page"


@dataclass
class FileFacts:
    """What a file says about itself. `unreadable` is set (and the rest mostly empty) on failure."""

    path: str
    file_size: int = 0
    format: str | None = None
    mode: str | None = None
    stored_size: tuple[int, int] | None = None  # (width, height) of the pixels as stored
    upright_size: tuple[int, int] | None = None  # (width, height) as a viewer shows it
    orientation_tag: int | None = None  # raw value found (EXIF/XMP/HEIF), None if absent
    orientation: int = 1  # the transform upright applies (1-8; malformed values -> 1)
    orientation_source: str | None = None
    make: str | None = None
    model: str | None = None
    has_exif: bool = False
    has_icc: bool = False
    n_frames: int = 1
    # what phones and editors write (read by `_capture_facts`; None/False when absent or malformed)
    jpeg_quality: int | None = None  # IJG-equivalent quality 1-100, estimated from the quantisation tables
    capture_date: str | None = None  # YYYY-MM-DD, from EXIF DateTimeOriginal
    software: str | None = None  # EXIF Software (phone firmware version or editor)
    gps: bool = False  # a GPS IFD with at least one entry
    color_profile: str | None = None  # ICC profile description ("Display P3", "sRGB IEC61966-2.1"), or nclx
    bit_depth: int | None = None  # bits per channel as stored (1, 8, 10, 12, 16...)
    problem: str | None = None  # what was odd but survivable (malformed orientation, ...)
    unreadable: str | None = None  # one-line reason when the header cannot be read

    @property
    def camera(self) -> str | None:
        parts = [p for p in (self.make, self.model) if p]
        if not parts:
            return None
        if self.make and self.model and self.model.lower().startswith(self.make.lower()):
            return self.model
        return " ".join(parts)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["camera"] = self.camera
        return d


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = " ".join(str(value).replace("\x00", " ").split())
    return text or None


def describe(path: str | os.PathLike) -> FileFacts:
    """Read a file's facts from its header. Never raises for bad files: sets `unreadable`.

    Header only for every format: PNG metadata comes from the chunks before the image data,
    GIF frames are counted without decoding them, HEIF/AVIF geometry from the container.
    """
    facts = FileFacts(path=os.fspath(path))
    try:
        facts.file_size = Path(path).stat().st_size
    except OSError:
        pass
    try:
        with open_header(path) as im:
            facts.format = (im.format or "").upper() or None
            facts.mode = im.mode
            crop = crop_box(im)  # AVIF clean aperture: the picture is the cropped part
            facts.stored_size = (crop[2] - crop[0], crop[3] - crop[1]) if crop else tuple(im.size)
            facts.n_frames = frame_count(im)
            facts.has_icc = bool(im.info.get("icc_profile"))
            _capture_facts(im, facts)
            orient = read_orientation(im)
            facts.orientation_tag = orient.tag
            facts.orientation_source = orient.source
            facts.problem = orient.problem
            # A problem means the tag was ignored, except for HEIF: there it is about EXIF, and the
            # container's turn (the tag) is what libheif applies.
            ok = not orient.problem or orient.source == "heif"
            applied = orient.tag if orient.tag and 1 <= orient.tag <= 8 and ok else 1
            facts.orientation = applied
            try:
                exif = header_exif(im)
                facts.has_exif = len(exif) > 0 or bool(im.info.get("exif"))
                facts.make = _text(exif.get(MAKE_TAG))
                facts.model = _text(exif.get(MODEL_TAG))
            except Exception:
                facts.has_exif = bool(im.info.get("exif"))
            w, h = facts.stored_size
            if facts.format in DECODER_ORIENTS:
                # pillow-heif and Pillow's TIFF plugin report the size after their transform.
                facts.upright_size = (w, h)
                facts.stored_size = (h, w) if applied in SWAPS_AXES else (w, h)
            else:
                facts.upright_size = (h, w) if applied in SWAPS_AXES else (w, h)
    except UnreadableImage as exc:
        facts.unreadable = exc.reason
    except Exception as exc:  # a hostile header past the decoder's checks: one file, never the run
        facts.unreadable = f"corrupt image header: {one_line(exc)}"
    return facts


# ---- what phones and editors write: header-only, each fact on its own, never raising ----------

SOFTWARE_TAG, EXIF_IFD, GPS_IFD, DATETIME_ORIGINAL = 0x0131, 0x8769, 0x8825, 0x9003
# The IJG (libjpeg) base tables in natural order; quality q scales them (jpeg_set_quality).
_IJG_LUMA = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
             14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
             49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
_IJG_CHROMA = (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
               47, 66, 99, 99, 99, 99, 99, 99) + (99,) * 32
#: nclx colour primaries (ISO/IEC 23091-2) of HEIF files without an ICC profile
_NCLX_PRIMARIES = {1: "sRGB (nclx)", 9: "BT.2020 (nclx)", 11: "DCI-P3 (nclx)", 12: "Display P3 (nclx)"}


@lru_cache(maxsize=1)
def _ijg_tables():
    import numpy as np

    q = np.arange(1, 101)
    scale = np.where(q < 50, 5000 // q, 200 - 2 * q)[:, None]
    luma = np.clip((np.array(_IJG_LUMA)[None] * scale + 50) // 100, 1, 255)
    chroma = np.clip((np.array(_IJG_CHROMA)[None] * scale + 50) // 100, 1, 255)
    return luma, chroma


def estimate_jpeg_quality(tables: dict) -> int | None:
    """The IJG quality (1-100) whose tables are nearest the file's (Pillow's `im.quantization`).

    Exact for files written by libjpeg-based encoders (Pillow, OpenCV, GIMP...); for phones and
    editors with their own tables, the nearest equivalent, stable per device and setting.
    """
    luma_t, chroma_t = tables.get(0), tables.get(1)
    return _nearest_quality(tuple(luma_t) if luma_t is not None else None,
                            tuple(chroma_t) if chroma_t is not None else None)


@lru_cache(maxsize=256)  # keys are two tables of 64 small ints: under 2 MB in all
def _nearest_quality(luma_t: tuple | None, chroma_t: tuple | None) -> int | None:
    import numpy as np

    if luma_t is None or len(luma_t) != 64:
        return None
    luma, chroma = _ijg_tables()
    err = np.abs(luma - np.asarray(luma_t, dtype=np.int64)[None]).sum(axis=1)
    if chroma_t is not None and len(chroma_t) == 64:
        err = err + np.abs(chroma - np.asarray(chroma_t, dtype=np.int64)[None]).sum(axis=1)
    return int(np.argmin(err)) + 1


#: Descriptions of the profiles seen, keyed by the profile's digest: 32 bytes + at most 80
#: characters an entry, so 256 entries hold under 64 KB whatever the profiles weigh (the old
#: cache kept the profiles themselves: 70 profiles of 16 MB took a process to 1.1 GB).
_ICC_DESCRIPTIONS: OrderedDict[bytes, str | None] = OrderedDict()
_ICC_DESCRIPTIONS_MAX = 256
_icc_lock = threading.Lock()


def icc_description(profile: bytes) -> str | None:
    """The ICC profile's description ('Display P3'), read by Pillow's LittleCMS binding."""
    from PIL import ImageCms

    key = hashlib.sha256(profile).digest()
    with _icc_lock:
        if key in _ICC_DESCRIPTIONS:
            _ICC_DESCRIPTIONS.move_to_end(key)
            return _ICC_DESCRIPTIONS[key]
    desc = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile)))
    found = _text(desc)[:80] if _text(desc) else None
    with _icc_lock:
        _ICC_DESCRIPTIONS[key] = found
        while len(_ICC_DESCRIPTIONS) > _ICC_DESCRIPTIONS_MAX:
            _ICC_DESCRIPTIONS.popitem(last=False)
    return found


def _capture_date(exif) -> str | None:
    raw = _text(exif.get_ifd(EXIF_IFD).get(DATETIME_ORIGINAL))
    if not raw or len(raw) < 10:
        return None
    y, m, d = raw[0:4], raw[5:7], raw[8:10]
    if not (y.isdigit() and m.isdigit() and d.isdigit()) or not (1 <= int(m) <= 12 and 1 <= int(d) <= 31):
        return None  # "0000:00:00 00:00:00" and other placeholders
    if int(y) < 1900:
        return None
    return f"{y}-{m}-{d}"


def _bit_depth(im) -> int | None:
    fmt = (im.format or "").upper()
    if fmt in ("JPEG", "MPO"):
        return int(getattr(im, "bits", 8) or 8)
    if fmt == "HEIF" and im.info.get("bit_depth"):
        return int(im.info["bit_depth"])
    if fmt == "TIFF":
        bits = im.tag_v2.get(258)
        if bits:
            return int(max(bits) if isinstance(bits, (tuple, list)) else bits)
    tile = getattr(im, "tile", None) or []
    raw = tile[0].args if tile and isinstance(tile[0].args, str) else None
    if raw and ";" in raw:
        digits = "".join(ch for ch in raw.split(";", 1)[1] if ch.isdigit())
        if digits:
            return int(digits)
    return {"1": 1, "I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16, "I": 32, "F": 32}.get(im.mode, 8)


def _capture_facts(im, facts: FileFacts) -> None:
    """JPEG quality, capture day, software, GPS, colour profile, bit depth: headers only, no decode.

    Each fact is read on its own: a malformed block leaves that one empty and the rest intact.
    """
    def exif():
        return header_exif(im)  # PNG: the chunks before the image data, no pixel decode

    def profile():
        icc = im.info.get("icc_profile")
        if icc and len(icc) > MAX_ICC_BYTES:
            return "ICC (too large: ignored)"  # as the decoder ignores it
        if icc:
            try:
                return icc_description(bytes(icc)) or "ICC (no description)"
            except Exception:  # LittleCMS refuses it; the decoder will ignore it too
                return "ICC (unreadable)"
        nclx = im.info.get("nclx_profile")
        if isinstance(nclx, dict):
            return _NCLX_PRIMARIES.get(nclx.get("color_primaries"))
        return None

    readers = {  # bit depth first: it reads the tile, which a PNG getexif() consumes
        "bit_depth": lambda: _bit_depth(im),
        "jpeg_quality": lambda: estimate_jpeg_quality(im.quantization) if getattr(im, "quantization", None) else None,
        "capture_date": lambda: _capture_date(exif()),
        "software": lambda: (_text(exif().get(SOFTWARE_TAG)) or "")[:80] or None,
        "gps": lambda: bool(exif().get_ifd(GPS_IFD)),
        "color_profile": profile,
    }
    for name, read in readers.items():
        try:
            setattr(facts, name, read())
        except Exception:  # malformed EXIF/ICC: this fact stays empty
            pass
