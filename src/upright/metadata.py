"""Per-file facts read from headers only (no pixel decode): what the audit reasons about."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import UnreadableImage, one_line
from .imaging import DECODER_ORIENTS, crop_box, frame_count, header_exif, open_header, read_orientation

MAKE_TAG, MODEL_TAG = 0x010F, 0x0110
#: Orientation values that swap width and height.
SWAPS_AXES = {5, 6, 7, 8}


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
