"""`upright fix`: write upright copies of photos, keeping every other piece of metadata.

What a fixed file is: its pixels are stored the way the picture is meant to be seen, and its
orientation says so (EXIF Orientation = 1, XMP tiff:Orientation = 1). Everything else is kept:
EXIF (Make, Model, DateTime, GPS, ...), the ICC profile, XMP.

How, per format:

- JPEG: lossless, with libjpeg-turbo's `jpegtran -copy all -perfect` (the DCT coefficients are
  moved, not re-quantised), then the orientation is patched to 1 in the EXIF and XMP bytes of
  the output (same length, nothing else touched; EXIF's PixelX/YDimension are swapped when the
  axes swap). When the width or height is not a multiple of the JPEG block (8 or 16 px) a
  perfect transform is impossible (or jpegtran is missing): the file is re-encoded at quality
  95 with the same chroma subsampling and metadata, and the per-file note says so.
- PNG, TIFF, WebP: decoded and re-encoded losslessly (WebP as lossless WebP), same mode, ICC,
  EXIF (patched) and text/XMP chunks.
- AVIF: re-encoded at quality 95 (said per file). HEIF/HEIC: left as is; the rotation lives
  in the container and every reader (pillow-heif, libheif, browsers, phones) applies it.
- Files that need no change are copied byte for byte (`--out`) or left alone (`--in-place`).
  Unreadable files are copied unchanged and reported.

Reporting: each file gets one outcome (OUTCOMES: "fixed", "already fixed", "copied as is",
"already copied", "left as is", "skipped", "failed"); the summary counts exactly those, and
`--verbose` rows show the same words, so a copy is never called a fix and a re-run says
"already fixed" in its rows and its summary alike.

`--out OUT` mirrors the tree (non-image files are copied too; hidden files and folders are
skipped). A destination that already holds the same bytes is not rewritten, so running fix
twice changes nothing the second time; fixing a fixed tree copies every file byte for byte.

`--in-place` replaces each file atomically (temp file beside it, fsync, rename: a crash at
any moment leaves every file either old or new). The way back: before a file is replaced,
its original is hard-linked (or copied) to DATA/.upright-originals/<same relative path>, and
a line is appended to DATA/.upright-originals/manifest.jsonl. `upright fix DATA --undo`
(`undo_fix`) puts every original back byte for byte (the hard link itself is renamed back,
so mode and times are the original's too) and removes .upright-originals/, leaving DATA
exactly as it was; a file changed since the fix is left alone and named, and the run says
(and `--undo` exits 1) whenever it restores fewer originals than the manifest lists.
`undo_fix(DATA, paths=[...])` undoes only some files (the studio's per-photo undo); files
moved after the fix keep their way back when their mover calls `relocate_originals` (the
manifest's line follows the file; its original stays where it is kept).

Symbolic links: `--in-place` never writes through a link that leads outside DATA (a file
reached through a linked folder there is "skipped") and never turns a linked file into a
plain file ("skipped": its target is fixed where it lives when it is inside DATA); `--out`
never writes through a link inside OUT ("failed"). Any failed write (a full disk) leaves the
file, the backup folder and the manifest as they were.

A run killed with SIGKILL can leave hidden temp files of its atomic writes; every run that
writes (not --dry-run) first removes those that are provably a dead run's own (atomic.py).

Reads go through imaging.py (`open_header`, `open_pixels`, `describe`); jpegtran gets file paths.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, JpegImagePlugin, PngImagePlugin

from .atomic import atomic_path, atomic_write_text, clean_leftovers
from .audit import run_audit
from .console import progress as progress_bar
from .errors import UnreadableImage, UprightError
from .files import file_sha256, is_image_name, remove_empty_folders, walk_files
from .imaging import open_header, open_pixels, read_orientation
from .metadata import describe
from . import words
from .parallel import ordered_map
from .results import Result
from .orientation import (EXIF_UPRIGHT, ROTATIONS, SWAPS_AXES, apply_orientation, compose, exif_orientation,
                          inverse, turn_back)

BACKUP_DIR = ".upright-originals"
MANIFEST = "manifest.jsonl"
JPEGTRAN_OPS = {
    2: ["-flip", "horizontal"], 3: ["-rotate", "180"], 4: ["-flip", "vertical"], 5: ["-transpose"],
    6: ["-rotate", "90"], 7: ["-transverse"], 8: ["-rotate", "270"],
}
JPEG_QUALITY = 95
#: What to run for lossless JPEG turns (the summary says it when jpegtran is missing).
JPEGTRAN_INSTALL = ("sudo apt-get install libjpeg-turbo-progs (Debian/Ubuntu), "
                    "brew install jpeg-turbo (macOS)")
#: Why a JPEG was re-encoded instead of turned losslessly (FileResult.reencoded); "avif": no
#: lossless turn exists for the format.
NO_JPEGTRAN, IMPERFECT, JPEGTRAN_FAILED, AVIF = "no-jpegtran", "imperfect", "jpegtran-failed", "avif"
#: `--rotate-sideways`: the sideways probability needed to turn a picture back.
ROTATE_MIN_CONFIDENCE = 0.9
#: Descriptive TIFF tags carried over when a TIFF is rewritten (ImageDescription, Make, Model,
#: Software, DateTime, Artist, Copyright).
_TIFF_KEEP = (270, 271, 272, 305, 306, 315, 33432)


@dataclass
class FileResult(Result):
    path: str
    dest: str | None
    action: str  # "rotated", "retagged", "copied", "unchanged", "skipped", "failed"
    method: str | None = None  # "jpegtran-lossless", "reencode-jpeg-q95", "png-lossless", ...
    orientation: int = 1  # the orientation transform applied to the stored pixels (1 = none)
    turned: int = 0  # extra turn back for sideways content (degrees clockwise it looked turned)
    note: str | None = None
    changed: bool = False  # bytes written (or that would be, in a dry run)
    need: str | None = None  # what the file needed: "rotate", "retag", "none", "unreadable", "not an image"
    outcome: str | None = None  # the words rows and summary share (see OUTCOMES)
    reencoded: str | None = None  # why it is not lossless: NO_JPEGTRAN, IMPERFECT, JPEGTRAN_FAILED, AVIF


@dataclass
class FixResult(Result):
    """`upright fix` (not --undo): what was written where; to_dict() is the JSON contract."""

    data: str
    out: str | None
    in_place: bool
    dry_run: bool
    files: list[FileResult] = field(default_factory=list)
    counts: dict = field(default_factory=dict)  # by action
    changed: int = 0  # files written (or that would be, dry run)
    outcomes: dict = field(default_factory=dict)  # by OUTCOMES word, in that order
    lossy: list[str] = field(default_factory=list)  # re-encoded, not lossless
    backup: str | None = None  # DATA/.upright-originals with --in-place
    leftovers_removed: list[str] = field(default_factory=list)  # temp files of a killed run

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["files"] = [f.to_dict() for f in self.files]
        return d


# --------------------------------------------------------------------------- byte patches


def _patch_tiff_orientation(buf: bytearray, start: int, swap: bool) -> bool:
    """Set Orientation=1 in the TIFF/EXIF structure at buf[start:] (in place). True if found."""
    head = bytes(buf[start:start + 8])
    if head[:4] == b"II*\x00":
        e = "<"
    elif head[:4] == b"MM\x00*":
        e = ">"
    else:
        return False
    found = False

    def ifd_entries(off):
        pos = start + off
        if off <= 0 or pos + 2 > len(buf):
            return []
        (n,) = struct.unpack_from(e + "H", buf, pos)
        return [pos + 2 + 12 * i for i in range(n) if pos + 2 + 12 * i + 12 <= len(buf)]

    (ifd0,) = struct.unpack_from(e + "I", buf, start + 4)
    exif_ifd = None
    for entry in ifd_entries(ifd0):
        tag, typ, count = struct.unpack_from(e + "HHI", buf, entry)
        if tag == 0x0112 and typ == 3 and count == 1:
            struct.pack_into(e + "H", buf, entry + 8, 1)
            found = True
        elif tag == 0x8769 and count == 1:
            (exif_ifd,) = struct.unpack_from(e + "I", buf, entry + 8)
    if swap and exif_ifd:
        dims = {}
        for entry in ifd_entries(exif_ifd):
            tag, typ, count = struct.unpack_from(e + "HHI", buf, entry)
            if tag in (0xA002, 0xA003) and count == 1 and typ in (3, 4):
                dims[tag] = (entry, typ)
        if len(dims) == 2:
            vals = {}
            for tag, (entry, typ) in dims.items():
                vals[tag] = struct.unpack_from(e + ("H" if typ == 3 else "I"), buf, entry + 8)[0]
            for tag, other in ((0xA002, 0xA003), (0xA003, 0xA002)):
                entry, typ = dims[tag]
                if typ == 3 and vals[other] > 0xFFFF:
                    continue
                struct.pack_into(e + ("H" if typ == 3 else "I"), buf, entry + 8, vals[other])
    return found


_XMP_ATTR = re.compile(rb"(tiff:Orientation\s*=\s*[\"'])([0-9])([\"'])")
_XMP_ELEM = re.compile(rb"(<tiff:Orientation>\s*)([0-9])(\s*</tiff:Orientation>)")


def patch_xmp(data: bytes) -> bytes:
    """XMP packet with tiff:Orientation set to 1 (same length)."""
    data = _XMP_ATTR.sub(rb"\g<1>1\g<3>", data)
    return _XMP_ELEM.sub(rb"\g<1>1\g<3>", data)


def patch_exif_blob(blob: bytes, swap: bool = False) -> bytes:
    """An EXIF blob (with or without the 'Exif\\0\\0' prefix) with Orientation set to 1."""
    buf = bytearray(blob)
    start = 6 if buf[:6] == b"Exif\x00\x00" else 0
    try:
        _patch_tiff_orientation(buf, start, swap)
    except struct.error:
        pass
    return bytes(buf)


def patch_jpeg_orientation(data: bytes, swap: bool = False) -> bytes:
    """Set the orientation to 1 in every EXIF and XMP APP1 segment of a JPEG (same length)."""
    buf = bytearray(data)
    pos = 2
    if buf[:2] != b"\xff\xd8":
        return data
    while pos + 4 <= len(buf):
        if buf[pos] != 0xFF:
            break
        marker = buf[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD9, 0xDA):  # EOI, SOS: metadata is over
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", buf, pos + 2)
        seg_start, seg_end = pos + 4, pos + 2 + length
        if marker == 0xE1:
            seg = bytes(buf[seg_start:seg_end])
            if seg.startswith(b"Exif\x00\x00"):
                try:
                    _patch_tiff_orientation(buf, seg_start + 6, swap)
                except struct.error:
                    pass
            elif seg.startswith(b"http://ns.adobe.com/xap/1.0/"):
                buf[seg_start:seg_end] = patch_xmp(seg)
        pos = seg_end
    return bytes(buf)


# --------------------------------------------------------------------------- per format


def _jpegtran() -> str | None:
    return shutil.which("jpegtran")


def _run_jpegtran(path: str, e: int) -> tuple[bytes | None, str | None, str | None]:
    """(the turned JPEG, None, None), or (None, why code, why in words) when jpegtran is
    missing, refuses a perfect transform, or fails."""
    exe = _jpegtran()
    if exe is None:
        return None, NO_JPEGTRAN, "jpegtran not found (install libjpeg-turbo-progs)"
    try:
        r = subprocess.run([exe, "-copy", "all", "-perfect", *JPEGTRAN_OPS[e], path],
                           capture_output=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, JPEGTRAN_FAILED, f"jpegtran failed ({exc})"
    if r.returncode != 0 or not r.stdout:
        why = " ".join(r.stderr.decode("utf-8", "replace").split()) or f"exit {r.returncode}"
        if "not perfect" in why:
            return None, IMPERFECT, "width/height not a multiple of the JPEG block, so a lossless turn is impossible"
        return None, JPEGTRAN_FAILED, f"jpegtran failed ({why})"
    return r.stdout, None, None


def _save_kwargs(im: Image.Image, swap: bool) -> dict:
    kw = {}
    if im.info.get("icc_profile"):
        kw["icc_profile"] = im.info["icc_profile"]
    exif = im.info.get("exif")
    if exif:
        kw["exif"] = patch_exif_blob(exif, swap)
    return kw


def _xmp_of(im: Image.Image) -> bytes | None:
    x = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if isinstance(x, str):
        x = x.encode("utf-8")
    return x or None


@dataclass
class _Stored:
    """A file's pixels turned upright in its own mode, with the metadata its writer keeps."""

    pixels: Image.Image
    info: dict
    kw: dict  # icc_profile and the patched EXIF, as Pillow's writers take them
    xmp: bytes | None
    sampling: int | None = None  # JPEG chroma subsampling
    text: dict | None = None  # PNG text chunks
    tiff_exif: Image.Exif | None = None


def _read_stored(path: str, e: int, fmt: str, turned: int) -> _Stored:
    """Decode through the door (pixels as stored, no colour conversion) and turn them upright."""
    with open_pixels(path) as im:
        info = dict(im.info)
        sampling = JpegImagePlugin.get_sampling(im) if fmt in ("JPEG", "MPO") else None
        text = dict(getattr(im, "text", {}) or {}) if fmt == "PNG" else {}
        # TIFF: Pillow applied the orientation on load (DECODER_ORIENTS) and dropped the tag.
        if fmt == "TIFF":
            pixels = turn_back(im, turned) if turned else im
        else:
            pixels = apply_orientation(im, e)
        if pixels is im:
            pixels = im.copy()
        pixels.info = info
        tiff_exif = im.getexif() if fmt == "TIFF" else None
    return _Stored(pixels, info, _save_kwargs(pixels, e in SWAPS_AXES), _xmp_of(pixels), sampling, text, tiff_exif)


def _write_jpeg(s: _Stored, buf: io.BytesIO) -> str:
    kw = dict(s.kw)
    if s.sampling is not None and s.sampling >= 0:
        kw["subsampling"] = s.sampling
    if s.xmp:
        kw["xmp"] = patch_xmp(s.xmp)
    pixels = s.pixels if s.pixels.mode in ("RGB", "L", "CMYK") else s.pixels.convert("RGB")
    pixels.save(buf, "JPEG", quality=JPEG_QUALITY, **kw)
    return f"reencode-jpeg-q{JPEG_QUALITY}"


def _write_png(s: _Stored, buf: io.BytesIO) -> str:
    pnginfo = PngImagePlugin.PngInfo()
    for k, v in (s.text or {}).items():
        if k == "XML:com.adobe.xmp":
            v = patch_xmp(v.encode("utf-8") if isinstance(v, str) else v).decode("utf-8", "replace")
            pnginfo.add_itxt(k, v)
        elif k.startswith("Raw profile type"):
            continue  # legacy EXIF text; the eXIf chunk carries it
        else:
            pnginfo.add_text(k, v if isinstance(v, str) else str(v))
    kw = dict(s.kw, **{key: s.info[key] for key in ("transparency", "dpi", "gamma") if key in s.info})
    s.pixels.save(buf, "PNG", pnginfo=pnginfo, **kw)
    return "png-lossless"


def _write_webp(s: _Stored, buf: io.BytesIO) -> str:
    kw = dict(s.kw, **({"xmp": patch_xmp(s.xmp)} if s.xmp else {}))
    s.pixels.save(buf, "WEBP", lossless=True, exact=True, quality=100, method=4, **kw)
    return "webp-lossless"


def _write_tiff(s: _Stored, buf: io.BytesIO) -> str:
    # Only descriptive tags: the structural ones (size, strips, compression) are the new file's.
    exif = Image.Exif()
    for tag in _TIFF_KEEP:
        if s.tiff_exif is not None and tag in s.tiff_exif:
            exif[tag] = s.tiff_exif[tag]
    for ifd in (0x8769, 0x8825):
        sub = s.tiff_exif.get_ifd(ifd) if s.tiff_exif is not None else {}
        if sub:
            exif.get_ifd(ifd).update(sub)
    kw = {"compression": "tiff_lzw", "exif": exif}
    if s.kw.get("icc_profile"):
        kw["icc_profile"] = s.kw["icc_profile"]
    s.pixels.save(buf, "TIFF", **kw)
    return "tiff-lossless"


def _write_avif(s: _Stored, buf: io.BytesIO) -> str:
    s.pixels.save(buf, "AVIF", quality=JPEG_QUALITY, **s.kw)
    return f"reencode-avif-q{JPEG_QUALITY}"


#: How each format is written back: a writer takes the upright pixels and returns the method name.
WRITERS = {"JPEG": _write_jpeg, "MPO": _write_jpeg, "PNG": _write_png, "WEBP": _write_webp,
           "TIFF": _write_tiff, "AVIF": _write_avif}


def _reencode(path: str, e: int, fmt: str, turned: int = 0) -> tuple[bytes, str]:
    """Decode through the door (pixels as stored, no colour conversion) and re-encode upright."""
    writer = WRITERS.get(fmt)
    if writer is None:
        raise UprightError(f"{path}: cannot rewrite {fmt} files")
    buf = io.BytesIO()
    method = writer(_read_stored(path, e, fmt, turned), buf)
    return buf.getvalue(), method


def _check_output(data: bytes, want_size: tuple[int, int]) -> None:
    """The new bytes must read back upright with no pending orientation, at the upright size."""
    with open_header(data) as im:
        o = read_orientation(im)
        if o.pending != 1 or tuple(im.size) != tuple(want_size):
            raise UprightError(f"fixed copy failed its check (orientation {o.tag}, size {im.size})")


def fixed_bytes(path: str, facts, turned: int = 0) -> tuple[bytes | None, FileResult]:
    """The bytes of the upright copy of `path` (None: copy as is) and what was done."""
    res = FileResult(path, None, "copied", need="none")
    if facts.unreadable:
        res.action, res.note, res.need = "copied", f"unreadable ({facts.unreadable})", "unreadable"
        return None, res
    fmt = facts.format or ""
    if fmt == "HEIF":
        if turned:
            res.note = "HEIF: the sideways turn cannot be applied without re-encoding; left as is"
        return None, res
    # one transform: turn the stored pixels upright, then turn content that looks turned back
    e = exif_orientation(compose(EXIF_UPRIGHT[facts.orientation], inverse(ROTATIONS[turned])))
    tag = facts.orientation_tag
    needs_retag = tag is not None and tag != 1 and not facts.problem
    res.orientation, res.turned = facts.orientation, turned
    if e == 1 and not needs_retag:
        return None, res
    if fmt not in WRITERS:
        res.note = f"{fmt} files carry no orientation to fix"
        return None, res
    swap = e in SWAPS_AXES
    shown = facts.upright_size  # the size a viewer shows
    want = (shown[1], shown[0]) if turned in (90, 270) else shown
    data = None
    if fmt in ("JPEG", "MPO"):
        if e == 1:
            data = patch_jpeg_orientation(Path(path).read_bytes(), False)
            res.method, res.action, res.need = "retag", "retagged", "retag"
        else:
            data, code, why = _run_jpegtran(path, e)
            if data is not None:
                data = patch_jpeg_orientation(data, swap)
                res.method, res.action, res.need = "jpegtran-lossless", "rotated", "rotate"
                if fmt == "MPO":
                    res.note = "MPO: only the first picture is kept"
            else:
                data, res.method = _reencode(path, e, fmt, turned)
                res.action, res.need, res.reencoded = "rotated", "rotate", code
                res.note = f"re-encoded at quality {JPEG_QUALITY}, not lossless: {why}"
    else:
        data, res.method = _reencode(path, e, fmt, turned)
        res.action = "rotated" if e != 1 else "retagged"
        res.need = "rotate" if e != 1 else "retag"
        if fmt == "AVIF":
            res.note = f"AVIF re-encoded at quality {JPEG_QUALITY} (no lossless rotation available)"
            res.reencoded = AVIF
    _check_output(data, want)
    return data, res


# --------------------------------------------------------------------------- tree walking


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha(path: Path) -> str | None:
    """The file's sha256, or None when it cannot be read."""
    try:
        return file_sha256(path)
    except OSError:
        return None


def _backup(root: Path, path: Path) -> tuple[str, bool]:
    """Keep the original at root/.upright-originals/<rel> (hard link, else copy). Never
    overwrites, never writes through a link. (where, whether this call made it)."""
    rel = path.relative_to(root)
    dest = root / BACKUP_DIR / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not _inside(dest.parent, root / BACKUP_DIR) or dest.is_symlink():
        raise UprightError(f"{dest}: a symbolic link inside {BACKUP_DIR}/; originals are kept only in real folders")
    if dest.exists():
        if _file_sha(dest) == _file_sha(path):
            return str(dest), False
        n = 1
        while (alt := dest.with_name(f"{dest.name}.{n}")).exists():
            n += 1
        dest = alt
    try:
        os.link(path, dest)
    except OSError:
        with atomic_path(dest) as tmp:
            shutil.copy2(path, tmp)
    return str(dest), True


def _append_manifest(root: Path, entry: dict) -> None:
    """One line appended and synced; on failure (a full disk) the manifest is cut back to
    what it was, so no half line is ever left."""
    m = root / BACKUP_DIR / MANIFEST
    m.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(entry) + "\n").encode("utf-8")
    fd = os.open(m, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


def sideways_turns(data, *, min_confidence: float, cache_dir=None, progress: bool = True) -> dict[str, int]:
    """{path: degrees the content looks turned clockwise} from the audit's sideways check (run alone)."""
    result = run_audit(data, cache_dir=cache_dir, progress=progress, checks=["sideways"],
                       sideways_threshold=min_confidence)
    turns = {}
    for f in result["findings"]:
        if f["kind"] == "sideways":
            for it in f.get("items", []):
                turns[os.path.realpath(it["path"])] = int(it["rotation"])
    return turns


def _check_folders(root: Path, out_root: Path | None, in_place: bool) -> None:
    """Refuse an OUT inside DATA (or around it), and a backup folder that is a link."""
    root_r = root.resolve()
    if out_root is not None:
        o = out_root.resolve()
        if o == root_r or root_r in o.parents:
            raise UprightError(f"--out {out_root} is inside {root}; choose a folder outside the data")
        if o in root_r.parents:
            raise UprightError(f"--out {out_root} contains {root}; choose a separate folder")
    if in_place and (root / BACKUP_DIR).is_symlink():
        raise UprightError(f"{root / BACKUP_DIR} is a symbolic link; upright keeps originals only in a real "
                           "folder inside DATA (remove the link)")


def run_fix(data, *, out=None, in_place: bool = False, dry_run: bool = False, rotate_sideways: bool = False,
            min_confidence: float = ROTATE_MIN_CONFIDENCE, cache_dir=None, progress: bool = True) -> FixResult:
    """Fix a tree (see the module docstring): a FixResult, whose to_dict() is the JSON."""
    root = Path(data)
    if not root.is_dir():
        raise UprightError(f"{root}: no such folder")
    if bool(out) == bool(in_place):
        raise UprightError("choose one of --out OUT (write upright copies) or --in-place (replace files)")
    out_root = Path(out) if out else None
    _check_folders(root, out_root, in_place)
    # temp files a killed run left beside photos (and in the backup or --out tree)
    leftovers = [str(p) for folder in (root, out_root) if folder is not None
                 for p in clean_leftovers(folder, recursive=True, dry_run=dry_run)]
    files = walk_files(root, exclude=(out_root,) if out_root is not None else ())
    turns = sideways_turns(root, min_confidence=min_confidence, cache_dir=cache_dir, progress=progress) \
        if rotate_sideways else {}
    images = [p for p in files if is_image_name(p)]
    with progress_bar(len(images), "reading headers", progress) as advance:
        headers = dict(zip(images, ordered_map(describe, images, advance=advance)))  # never raises
    results: list[FileResult] = []
    with progress_bar(len(files), "fixing" if not dry_run else "planning", progress) as advance:
        for p in files:
            results.append(_fix_one(root, p, out_root, in_place, dry_run, turns, headers.get(p)))
            advance()
    counts: dict[str, int] = {}
    outcomes: dict[str, int] = {}
    for r in results:
        counts[r.action] = counts.get(r.action, 0) + 1
        r.outcome = outcome(r, in_place)
        outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
    return FixResult(
        data=str(root), out=str(out_root) if out_root else None, in_place=in_place, dry_run=dry_run,
        files=results, counts=counts, changed=sum(1 for r in results if r.changed),
        outcomes={k: outcomes[k] for k in OUTCOMES if k in outcomes},
        lossy=[r.path for r in results if r.method and r.method.startswith("reencode")],
        backup=str(root / BACKUP_DIR) if in_place else None, leftovers_removed=leftovers)


def _inside(path: str | Path, folder: Path) -> bool:
    """True when `path`, all links resolved, is `folder` (resolved) or under it."""
    return Path(os.path.realpath(path)).is_relative_to(folder.resolve())


def _link_refusal(root: Path, p: Path, dest: Path, out_root: Path | None) -> str | None:
    """Why writing this file would go through a symbolic link (the note), or None. upright fix
    never writes outside DATA (or OUT), and never silently turns a link into a file."""
    if out_root is None:  # --in-place
        if p.is_symlink():
            return ("a symbolic link: left as is (fix never replaces a link with a file; fix its target "
                    "where it lives)")
        if not _inside(p, root):
            return "reached through a symbolic link that leads outside DATA: left as is (fix never writes there)"
        return None
    if dest.is_symlink():
        return "its destination in OUT is a symbolic link: not replaced (remove the link)"
    if not _inside(dest.parent, out_root):
        return "a folder in OUT on its way is a symbolic link leading outside OUT: not written"
    return None


def _fix_one(root: Path, p: Path, out_root: Path | None, in_place: bool, dry_run: bool, turns,
             facts=None) -> FileResult:
    rel = p.relative_to(root)
    dest = (out_root / rel) if out_root is not None else p
    is_image = is_image_name(p)
    if is_image or not in_place:
        why = _link_refusal(root, p, dest, out_root)
        if why:
            return FileResult(str(p), str(dest), "skipped" if in_place else "failed", note=why)
    if not is_image:
        if in_place:
            return FileResult(str(p), str(dest), "skipped", note="not an image", need="not an image")
        return _copy(p, dest, dry_run, FileResult(str(p), str(dest), "copied", note="not an image",
                                                  need="not an image"))
    facts = facts if facts is not None else describe(p)
    try:
        data, res = fixed_bytes(str(p), facts, turns.get(os.path.realpath(p), 0))
    except (UprightError, UnreadableImage, OSError) as exc:
        return FileResult(str(p), str(dest), "failed", note=" ".join(str(exc).split()))
    except Exception as exc:  # one bad file never stops the run
        return FileResult(str(p), str(dest), "failed", note=f"{type(exc).__name__}: {' '.join(str(exc).split())}")
    res.dest = str(dest)
    if data is None:
        if in_place:
            res.action = "unchanged"
            return res
        return _copy(p, dest, dry_run, res)
    if dest.exists() and _file_sha(dest) == _sha(data):
        res.action, res.changed = "unchanged", False
        return res
    res.changed = True
    if dry_run:
        return res
    if in_place:
        _replace(root, p, data, res)
    else:
        with atomic_path(dest) as tmp:
            tmp.write_bytes(data)
            shutil.copystat(p, tmp)
    return res


def _replace(root: Path, p: Path, data: bytes, res: FileResult) -> None:
    """Replace p by `data` atomically, its original kept and listed first. Any failure (a full
    disk...) leaves p, the backup folder and the manifest as they were."""
    rel = p.relative_to(root)
    before = _file_sha(p)
    with atomic_path(p) as tmp:
        tmp.write_bytes(data)
        backup, made = _backup(root, p)
        try:
            _append_manifest(root, {"path": str(rel), "backup": str(Path(backup).relative_to(root)),
                                    "sha256_before": before, "sha256_after": _sha(data), "method": res.method,
                                    "orientation": res.orientation, "turned": res.turned})
        except BaseException:
            if made:
                Path(backup).unlink(missing_ok=True)
            raise


def fix_one_in_place(data, path, turned: int = 0) -> FileResult:
    """`fix --in-place` for one file of DATA (same backup and manifest, so `--undo` brings it
    back), also turning content that looks `turned` degrees clockwise back (0, 90, 180, 270)."""
    root, p = Path(data), Path(path)
    return _fix_one(root, p, None, True, False, {os.path.realpath(p): turned} if turned else {})


def _copy(src: Path, dest: Path, dry_run: bool, res: FileResult) -> FileResult:
    if dest.exists() and _file_sha(dest) == _file_sha(src):
        res.action = "unchanged"
        return res
    res.changed = True
    if not dry_run:
        with atomic_path(dest) as tmp:
            shutil.copy2(src, tmp)
    return res


#: What happened to a file, in the words both the rows (--verbose) and the summary use.
OUTCOMES = ("fixed", "already fixed", "copied as is", "already copied", "left as is", "skipped", "failed")
_DRY = {"fixed": "to fix", "copied as is": "to copy as is"}


def outcome(r: FileResult, in_place: bool) -> str:
    """One of OUTCOMES: a fixed picture is never counted as copied, a copy never as a fix."""
    if r.action in ("failed", "skipped"):
        return r.action
    if r.need in ("rotate", "retag"):
        return "fixed" if r.changed else "already fixed"
    if in_place:
        return "left as is"
    return "copied as is" if r.changed else "already copied"


def _details(files: list[dict], name: str, dry: bool = False) -> str:
    """(2 rotated, 1 retagged) / (1 unreadable, 2 not images) for one outcome."""
    mine = [f for f in files if f["outcome"] == name]
    parts: dict[str, int] = {}
    for f in mine:
        key = {"rotate": "rotated", "retag": "retagged", "unreadable": "unreadable",
               "not an image": "not an image"}.get(f["need"] or "")
        if key:
            parts[key] = parts.get(key, 0) + 1
    lossy = sum(1 for f in mine if (f["method"] or "").startswith("reencode"))
    lossy_words = "to re-encode, not lossless" if dry else "re-encoded, not lossless"
    if lossy:
        parts[lossy_words] = lossy
    order = ("rotated", "retagged", lossy_words, "unreadable", "not an image")
    shown = [words.count(parts[k], k, "not images" if k == "not an image" else k) for k in order if k in parts]
    return f" ({', '.join(shown)})" if shown else ""


def reencoded_lines(result: dict) -> list[str]:
    """What the summary says of files re-encoded instead of turned losslessly, by cause, in
    the dry run's words when nothing was written: jpegtran missing (and what installing it
    changes), a JPEG that no lossless turn fits, jpegtran failing, AVIF."""
    counts: dict[str, int] = {}
    for f in result["files"]:
        if f.get("reencoded") and f["changed"]:
            counts[f["reencoded"]] = counts.get(f["reencoded"], 0) + 1

    def were(n: int, thing: str) -> str:
        verb = "would be" if result["dry_run"] else words.verb(n, "was", "were")
        return f"{words.count(n, thing)} {verb} re-encoded at quality {JPEG_QUALITY}"

    lines = []
    if counts.get(NO_JPEGTRAN):
        redo = (f" To redo them losslessly: upright fix {result['data']} --undo, install jpegtran, then fix "
                "again." if result["in_place"] and not result["dry_run"] else "")
        lines.append(f"{were(counts[NO_JPEGTRAN], 'JPEG')}, not turned losslessly: jpegtran is not installed. "
                     "With it, fix turns a JPEG without re-encoding it (the compressed picture is moved, nothing "
                     f"is lost): {JPEGTRAN_INSTALL}.{redo}")
    if counts.get(IMPERFECT):
        lines.append(f"{were(counts[IMPERFECT], 'JPEG')}: a width or height that is not a multiple of the JPEG "
                     "block (8 or 16 px) leaves no lossless turn (jpegtran -perfect refuses it).")
    if counts.get(JPEGTRAN_FAILED):
        lines.append(f"{were(counts[JPEGTRAN_FAILED], 'JPEG')}: jpegtran failed (why: --verbose).")
    if counts.get(AVIF):
        lines.append(f"{were(counts[AVIF], 'AVIF file')} (AVIF has no lossless turn).")
    return lines


def print_summary(result: dict, console=None, verbose: bool = False) -> None:
    """A summary by default; with `verbose` one row per file first, in the summary's words."""
    from rich.markup import escape
    from rich.table import Table

    from .console import err, out

    console = console or out
    dry = result["dry_run"]
    files = result["files"]
    word = (lambda o: _DRY.get(o, o)) if dry else (lambda o: o)
    if verbose and files:
        table = Table(expand=True)
        for col in ("file", "result", "method", "note"):
            table.add_column(col, ratio=2 if col in ("file", "note") else None)
        for f in files:
            table.add_row(escape(f["path"]), word(f["outcome"]), f["method"] or "", escape(f["note"] or ""))
        console.print(table)
    for f in files:
        if f["outcome"] == "failed":
            err.print(f"[red]failed[/red] {escape(f['path'])}: {escape(f['note'] or '')}")
    where = f"-> {result['out']}" if result["out"] else "in place"
    parts = [f"{n} {word(k)}{_details(files, k, dry)}" for k, n in result["outcomes"].items()]
    head = f"upright fix {where}{' (dry run: nothing written)' if dry else ''}: "
    if not files:
        console.print(head + "no files.")
        return
    if not result["changed"] and not dry:
        console.print(head + "nothing written; " + ", ".join(parts) + ".")
    else:
        console.print(head + ", ".join(parts) + ".")
    for line in reencoded_lines(result):
        console.print(f"[yellow]{escape(line)}[/yellow]")
    if result.get("leftovers_removed"):
        console.print(f"{'Would remove' if dry else 'Removed'} {words.count(len(result['leftovers_removed']), 'temp file')} "
                      "left by an interrupted run.")
    if result["in_place"] and result["changed"] and not dry:
        console.print(f"Originals kept in {escape(result['backup'])} (same relative paths, manifest.jsonl lists "
                      f"them). To undo: upright fix {escape(result['data'])} --undo")
    elif not verbose and any(f["note"] for f in files):
        console.print("Per-file rows and notes: --verbose (or --json).")


# --------------------------------------------------------------------------- the way back


def _manifest_entries(root: Path) -> tuple[list[dict], list[str]]:
    """The manifest's entries whose paths stay inside DATA (each with its line number `_line`),
    and notes on the lines skipped."""
    backup_root = (root / BACKUP_DIR).resolve()
    root_r = root.resolve()
    entries, notes = [], []
    m = root / BACKUP_DIR / MANIFEST
    if not m.is_file():
        return entries, notes
    for n, line in enumerate(m.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            e = json.loads(line)
            path, backup = (root / e["path"]).resolve(), (root / e["backup"]).resolve()
            if not (isinstance(e["path"], str) and isinstance(e["backup"], str)):
                raise ValueError
        except (ValueError, KeyError, TypeError, RecursionError):
            notes.append(f"{MANIFEST} line {n}: unreadable (a run killed while writing it?); skipped")
            continue
        if root_r not in path.parents or backup_root not in backup.parents:
            notes.append(f"{MANIFEST} line {n}: points outside {root}; skipped")
            continue
        entries.append({**e, "_path": path, "_backup": backup, "_line": n})
    return entries, notes


def _restore(backup: Path, dest: Path) -> None:
    """Put the original back: rename the kept hard link over the file (same inode, bytes,
    mode and times), or copy it atomically when the rename is impossible."""
    try:
        os.replace(backup, dest)
    except OSError:
        with atomic_path(dest) as tmp:
            shutil.copy2(backup, tmp)
        backup.unlink()


def _resolved(root: Path, path) -> Path:
    """A file of DATA named relative to DATA (or absolute), resolved as the manifest's are."""
    return (root / path).resolve()


def _by_path(root: Path, entries: list[dict], wanted: set[Path] | None) -> dict[Path, list[dict]]:
    """The manifest's entries grouped by file, in manifest order (only `wanted` files, if given)."""
    by_path: dict[Path, list[dict]] = {}
    for e in entries:
        if wanted is None or e["_path"] in wanted:
            by_path.setdefault(e["_path"], []).append(e)
    return by_path


def _put_back(root: Path, by_path: dict[Path, list[dict]], dry_run: bool):
    """Restore each file's first original. (restored, already original, conflicts, backups used:
    restored, or redundant once the file holds its original)."""
    restored, already, conflicts = [], [], []
    used: set[Path] = set()
    for path, es in by_path.items():
        rel = str(path.relative_to(root.resolve()))
        original, first_backup = es[0].get("sha256_before"), es[0]["_backup"]
        known = {x.get("sha256_before") for x in es} | {x.get("sha256_after") for x in es}
        now = _file_sha(path)
        if now is not None and now == original:
            already.append(rel)
            used.update(x["_backup"] for x in es)
            continue
        if now is not None and now not in known:
            conflicts.append({"path": rel, "reason": "changed since upright fixed it; left as it is"})
            continue
        if _file_sha(first_backup) != original:
            conflicts.append({"path": rel, "reason": f"its original in {BACKUP_DIR} is missing or altered"})
            continue
        if not dry_run:
            _restore(first_backup, path)
        restored.append(rel)
        used.update(x["_backup"] for x in es)
    return restored, already, conflicts, used


def _unlisted(root: Path, entries: list[dict], used: set[Path]) -> list[str]:
    """Originals kept without a manifest line (a run killed between the two): redundant (added
    to `used`) when the file in DATA holds the same bytes, else kept and named."""
    backup_dir = root / BACKUP_DIR
    kept = []
    listed = {x["_backup"] for x in entries}
    for p in sorted(backup_dir.rglob("*")):
        if not p.is_file() or p.name == MANIFEST or p.resolve() in listed:
            continue
        twin = root / p.relative_to(backup_dir)
        if twin.is_file() and _file_sha(twin) == _file_sha(p):
            used.add(p.resolve())
        else:
            kept.append(str(p))
    return kept + [str(x["_backup"]) for x in entries if x["_backup"] not in used and x["_backup"].exists()
                   and str(x["_backup"]) not in kept]


def _rewrite_manifest(root: Path, keep: list[str] | None) -> bool:
    """The manifest holds exactly the lines `keep` (None: removed, with the backup folder when
    nothing else is left in it). True when the folder was removed."""
    backup_dir = root / BACKUP_DIR
    if keep is None:
        (backup_dir / MANIFEST).unlink(missing_ok=True)
    else:
        atomic_write_text(backup_dir / MANIFEST, "".join(line + "\n" for line in keep))
    return remove_empty_folders(backup_dir)


def _lines_left(root: Path, entries: list[dict], used: set[Path], everything: bool, untidy: bool) -> list[str] | None:
    """What the manifest keeps after an undo. Everything undone: the entries whose originals
    are still needed (None when nothing is, and nothing went wrong). Some files: every line but
    those of the originals used (unreadable ones too: they are not this run's business)."""
    if everything:
        rest = [json.dumps({k: v for k, v in e.items() if not k.startswith("_")}) for e in entries
                if e["_backup"].exists()]
        return rest if (rest or untidy) else None
    gone = {e["_line"] for e in entries if e["_backup"] in used}
    m = root / BACKUP_DIR / MANIFEST
    lines = m.read_text(encoding="utf-8", errors="replace").splitlines() if m.is_file() else []
    return [line for n, line in enumerate(lines, 1) if n not in gone and line.strip()] or None


def undo_fix(data, *, dry_run: bool = False, paths=None) -> dict:
    """Undo `fix --in-place` on DATA from DATA/.upright-originals (module docstring).

    paths: only these files of DATA (relative to DATA, or absolute); the manifest keeps every
    other line, and a path it does not list is a conflict ("nothing to undo")."""
    root = Path(data)
    if not root.is_dir():
        raise UprightError(f"{root}: no such folder")
    backup_dir = root / BACKUP_DIR
    if not backup_dir.is_dir():
        raise UprightError(f"{root}: nothing to undo (no {BACKUP_DIR}/ folder: fix --in-place was not run here)")
    everything = paths is None
    leftovers = [str(p) for p in clean_leftovers(root, recursive=True, dry_run=dry_run)]
    entries, notes = _manifest_entries(root)
    wanted = None if everything else {_resolved(root, p) for p in paths}
    by_path = _by_path(root, entries, wanted)
    restored, already, conflicts, used = _put_back(root, by_path, dry_run)
    for missing in sorted(wanted - by_path.keys()) if wanted is not None else ():
        conflicts.append({"path": os.path.relpath(missing, root.resolve()),
                          "reason": f"not in {BACKUP_DIR}/{MANIFEST}: nothing to undo"})
    kept = _unlisted(root, entries, used) if everything else []
    removed = False
    if not dry_run:
        for b in used:
            if b.exists() and b.is_file():
                b.unlink()
        removed = _rewrite_manifest(root, _lines_left(root, entries, used, everything,
                                                      bool(conflicts or kept or notes)))
    listed = len(by_path) + (len(notes) if everything else len(wanted - by_path.keys()))
    return {"data": str(root), "undo": True, "dry_run": dry_run, "restored": restored,
            "already_original": already, "conflicts": conflicts, "kept": kept,
            "notes": notes if everything else [], "backup_removed": removed, "leftovers_removed": leftovers,
            "listed": listed, "complete": len(restored) + len(already) == listed}


def fixed_paths(data) -> set[str]:
    """The files of DATA with a way back in the manifest (paths relative to DATA, "/"-separated)."""
    root = Path(data)
    entries, _ = _manifest_entries(root)
    return {e["_path"].relative_to(root.resolve()).as_posix() for e in entries}


def relocate_originals(data, moves: dict) -> int:
    """Files of DATA moved (or renamed, or whole folders of them) after `fix --in-place`: their
    manifest lines follow them, so `--undo` puts each original back where the file is now,
    never where it was. `moves`: {old path: new path}, relative to DATA (a folder moves every
    file below it). The originals stay where they are kept; the manifest is rewritten
    atomically. Returns the number of lines changed."""
    root = Path(data)
    m = root / BACKUP_DIR / MANIFEST
    if not m.is_file() or not moves:
        return 0
    root_r = root.resolve()
    pairs = [(_resolved(root, old), _resolved(root, new)) for old, new in moves.items()]
    entries, _ = _manifest_entries(root)
    changed: dict[int, str] = {}
    for e in entries:
        for old, new in pairs:
            if e["_path"] == old or old in e["_path"].parents:
                moved = new / e["_path"].relative_to(old)
                line = {k: v for k, v in e.items() if not k.startswith("_")}
                changed[e["_line"]] = json.dumps({**line, "path": moved.relative_to(root_r).as_posix()})
                break
    if changed:
        lines = m.read_text(encoding="utf-8", errors="replace").splitlines()
        atomic_write_text(m, "".join(changed.get(n, line) + "\n" for n, line in enumerate(lines, 1) if line.strip()))
    return len(changed)


def print_undo_summary(result: dict) -> None:
    from .console import out as console

    for c in result["conflicts"]:
        console.print(f"[yellow]not restored[/yellow] {c['path']}: {c['reason']}")
    for n in result["notes"]:
        console.print(f"[yellow]note[/yellow] {n}")
    verb = "would restore" if result["dry_run"] else "restored"
    missing = result["listed"] - len(result["restored"]) - len(result["already_original"])
    console.print(f"upright fix --undo: {words.count(len(result['restored']), 'original')} {verb} in {result['data']} "
                  f"({len(result['already_original'])} already original, {missing} of the {result['listed']} "
                  "listed not restored).")
    if result["backup_removed"]:
        console.print(f"{BACKUP_DIR}/ removed: {result['data']} is as it was before upright fix.")
    elif not result["dry_run"] and (result["kept"] or result["conflicts"]):
        console.print(f"{BACKUP_DIR}/ kept: it still holds {words.count(len(result['kept']), 'original')} not put back.")
