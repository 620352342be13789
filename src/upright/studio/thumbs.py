"""Thumbnails, upright and as stored, cached by content hash in PROJECT/.upright-studio/thumbs/.

The page never decodes a photo: it shows these small JPEGs without orientation tags, made
from the one door's upright decode (and, for a tagged file, the same pixels turned back the
way the file stores them). Content-addressed, so a cached file is valid forever and a turned
photo (new bytes) simply gets new ones. A cache: deleting the folder loses nothing.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from PIL import Image

from ..atomic import atomic_write_bytes
from ..imaging import open_image, store_as
from ..serve.budget import turning_tag

THUMB_SHORT = 240  # the decode's short side
THUMB_LONG = 320  # the thumbnail's long side
QUALITY = 82
VIEWS = ("upright", "stored")
_SHA = re.compile(r"^[0-9a-f]{64}$")


def thumb_path(folder: Path, sha256: str, view: str = "upright") -> Path:
    if not _SHA.match(sha256) or view not in VIEWS:
        raise ValueError("not a thumbnail name")
    return folder / sha256[:2] / f"{sha256}.{view}.jpg"


def _jpeg(image: Image.Image) -> bytes:
    small = image.copy()
    small.thumbnail((THUMB_LONG, THUMB_LONG), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=QUALITY)
    return buf.getvalue()


def save_thumbs(folder: Path, sha256: str, upright: Image.Image, tag: int | None) -> None:
    """Write the upright thumbnail, and the stored one when a tag turns the picture (`tag`:
    serve.budget.turning_tag's answer)."""
    atomic_write_bytes(thumb_path(folder, sha256, "upright"), _jpeg(upright))
    if tag is not None:
        atomic_write_bytes(thumb_path(folder, sha256, "stored"), _jpeg(store_as(upright, tag)))


def thumb_to_make(folder: Path, sha256: str, view: str = "upright") -> tuple[Path, bool]:
    """(the thumbnail's path, whether the file must be decoded to make it). No stored view
    beside an upright one means the file is stored upright: nothing to make."""
    path = thumb_path(folder, sha256, view)
    made = path.is_file() or (view == "stored" and thumb_path(folder, sha256, "upright").is_file())
    return path, not made


def make_thumbs(folder: Path, sha256: str, source) -> None:
    """Decode `source` once through the door and write its thumbnails (raises when it cannot)."""
    d = open_image(source, size=THUMB_SHORT)
    save_thumbs(folder, sha256, d.image, turning_tag(d.orientation))
