"""Taking a photo into a class: checked through the one door, stored as its original bytes.

    bytes -> mark    a capture from the page's camera (a canvas JPEG, no EXIF) gets an EXIF
                     segment whose Software says so (metadata.STUDIO_CAMERA): the audit's
                     "source" attribute, carried by the file wherever it is moved or copied
          -> known   hashed once (the hash travels to check and store); bytes the project
                     already holds are a duplicate at once (no decode)
          -> check   priced from its header, then it waits for `upright serve`'s decode budget
                     (serve.budget.decode_upload: one budget for every upload the studio and
                     its Test tab decode at once, so N phones cannot multiply the per-file
                     bound), then imaging.open_image(bytes, size=THUMB_SHORT) decodes it whole
                     (a hostile or unreadable file is refused, with the door's one-line reason,
                     and never written) and gives the thumbnails from the same decode
          -> store   under the project lock: a known content hash is a duplicate (said, not
                     stored); the quota is checked; the bytes are written atomically as
                     PROJECT/<class>/<sha256[:16]>.<ext> (ext from the decoded format)

Uploaded files keep every byte (their EXIF is the evidence the audit reads).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import shutil
from dataclasses import dataclass

from PIL import Image

from ..atomic import atomic_write_bytes
from ..imaging import open_image
from ..metadata import STUDIO_CAMERA
from ..serve.budget import DecodeBudget, decode_failure_reason, decode_upload, turning_tag
from .project import Project
from .thumbs import THUMB_SHORT, save_thumbs

EXTENSIONS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif", "HEIF": ".heic",
              "AVIF": ".avif", "BMP": ".bmp", "GIF": ".gif"}
DISK_MARGIN = 200_000_000  # bytes left free on the disk whatever the quota says


@dataclass
class Checked:
    """An upload that decoded: the bytes to store and what the thumbnails are made from."""

    data: bytes
    sha256: str
    format: str
    image: Image.Image  # upright, short side THUMB_SHORT
    tag: int | None


class Refused(Exception):
    """An upload the studio will not store; `reason` is one line for the phone."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def mark_captured(data: bytes) -> bytes:
    """The canvas JPEG with an EXIF segment (Software = STUDIO_CAMERA) after its JFIF header.

    Pixels and every other byte stay as they are. A JPEG that already carries EXIF did not
    come from the page's canvas: it is refused as a capture (send it as an upload)."""
    if data[:3] != b"\xff\xd8\xff":
        raise Refused("a capture from the page's camera must be a JPEG")
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF and 0xE0 <= data[pos + 1] <= 0xEF:
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if data[pos + 1] == 0xE1 and data[pos + 4:pos + 10] == b"Exif\x00\x00":
            raise Refused("this JPEG already carries EXIF, so it is not a capture from the page: upload it as a file")
        if data[pos + 1] != 0xE0:
            break
        pos += 2 + length
    exif = Image.Exif()
    exif[0x0131] = STUDIO_CAMERA
    payload = exif.tobytes()
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    return data[:pos] + segment + data[pos:]


def marked(data: bytes, captured: bool = False) -> bytes:
    """The bytes to store: refused when empty; a capture gets its EXIF marker."""
    if not data:
        raise Refused("empty file (0 bytes)")
    return mark_captured(data) if captured else data


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes, sha256: str | None = None) -> Checked:
    """Decode once through the door (refusing what it refuses, Refused). `sha256`: the bytes'
    content hash when the caller has it already (else computed here)."""
    try:
        d = open_image(data, size=THUMB_SHORT)
    except Exception as exc:  # noqa: BLE001 - a hostile upload is refused, never a crash
        raise Refused(decode_failure_reason(exc)) from None
    if d.format not in EXTENSIONS:
        raise Refused(f"unsupported format {d.format}")
    return Checked(data, sha256 or sha256_of(data), d.format, d.image, turning_tag(d.orientation))


async def check_upload(data: bytes, *, budget: DecodeBudget, pool: concurrent.futures.Executor,
                       sha256: str | None = None) -> Checked:
    """`decode` for a server (after `marked`; `sha256` from `known`): priced from the header in
    `pool`, decoded there once the shared budget has room for it."""
    try:
        return await decode_upload(data, THUMB_SHORT, budget=budget, pool=pool,
                                   decode=functools.partial(decode, sha256=sha256))
    except Refused:
        raise
    except Exception as exc:  # noqa: BLE001 - the door refused it from its header, or worse
        raise Refused(decode_failure_reason(exc)) from None


async def known(project: Project, data: bytes, pool: concurrent.futures.Executor) -> tuple[str, str | None]:
    """The bytes' content hash (computed in `pool`, once per upload: check_upload and store take
    it from here) and the photo that already holds exactly these bytes, or None."""
    sha = await asyncio.get_running_loop().run_in_executor(pool, sha256_of, data)
    return sha, project.duplicate_of(sha)


def _room(project: Project, n: int, quota: int) -> None:
    used = project.bytes_used()
    if used + n > quota:
        raise Refused(f"the project is full: {used / 1e9:.2f} GB of its {quota / 1e9:.1f} GB quota used "
                      "(upright studio --quota-gb; the trash counts too)")
    if shutil.disk_usage(project.root).free < n + DISK_MARGIN:
        raise Refused("the disk is nearly full: nothing more is stored")


def store(project: Project, label: str, checked: Checked, quota: int) -> dict:
    """Write a checked upload into `label` (which must exist). Returns the outcome for the page:
    {"stored": id} or {"duplicate": id of the photo that already holds these bytes}."""
    with project.lock:
        split, base = project.upload_folder()
        folder = base / label
        if label not in project.classes() or not folder.is_dir():
            raise Refused(f"no class '{label}' (deleted meanwhile?)")
        known = project.duplicate_of(checked.sha256)
        if known is not None:
            return {"duplicate": known}
        _room(project, len(checked.data), quota)
        ext = EXTENSIONS[checked.format]
        path = folder / f"{checked.sha256[:16]}{ext}"
        if path.exists():  # 64 bits of hash in common with other bytes: use the whole hash
            path = folder / f"{checked.sha256}{ext}"
        atomic_write_bytes(path, checked.data)
        photo = project.add(path, label, split, sha256=checked.sha256)
    save_thumbs(project.cache_dir("thumbs"), checked.sha256, checked.image, checked.tag)
    return {"stored": photo.id}
