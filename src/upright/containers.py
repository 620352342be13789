"""Walkers for container headers, on bytes only (no pixel decode, no decoder library).

They answer the questions a decoder library leaves open or answers at a high price:
the HEIF/AVIF primary item's transforms (irot, imir, clap), how many frames a GIF holds
(Pillow decodes every frame to count them), how many scans a JPEG holds (a progressive
JPEG with thousands of empty scans costs seconds of CPU), how many pages a TIFF chains, and
(`survey`) what a header declares before any decoder runs: the largest canvas, floods of
markers, chunks, tiles or tag values that Pillow would parse one by one in Python.

Every walker is bounded: by the input's length, and by the caps below, whatever the file
declares. `survey` and the counters raise `HeaderLimit` (its text is the one-line reason)
past a cap; the geometry walkers return a neutral answer on malformed input instead.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO, Iterator, NamedTuple

#: Parsing caps: far above what any camera, phone or editor writes, far below what makes
#: Pillow's Python header parsers slow (each is a loop in Python, or a quadratic join).
MAX_JPEG_MARKERS = 4096  # segments before the frame's first scan (ICC alone may use 255)
MAX_JPEG_EXIF_SEGMENTS = 64  # APP1 "Exif" segments, which Pillow joins one by one
MAX_JPEG_STRAY_BYTES = 65536  # fill (0xFF) and junk bytes between segments, read one at a time
MAX_JPEG_HEADER_BYTES = 32 << 20  # segments before the first scan, all held in memory
MAX_PNG_CHUNKS_BEFORE_IDAT = 4096
MAX_TIFF_ENTRIES = 4096  # tags in one IFD
MAX_TIFF_VALUES = 262_144  # numbers in the first IFD's tags (tile/strip tables: Python ints)
MAX_BOXES = 65536  # boxes walked in one ISO BMFF container level
#: Frames and pages are counted up to this many (a TIFF may chain 250,000 IFDs).
MAX_COUNTED_FRAMES = 10_000
_WINDOW = 65536


class CleanAperture(NamedTuple):
    """A HEIF/AVIF 'clap' box: the crop as exact fractions (ISO/IEC 14496-12 12.1.4)."""

    width: Fraction
    height: Fraction
    horiz_off: Fraction
    vert_off: Fraction

    def box(self, full_w: int, full_h: int) -> tuple[int, int, int, int] | None:
        """The crop as a pixel box (left, top, right, bottom), or None if it is not a valid,
        whole-pixel crop inside the image (such boxes are ignored, as browsers do)."""
        left = self.horiz_off + Fraction(full_w - 1, 2) - (self.width - 1) / 2
        top = self.vert_off + Fraction(full_h - 1, 2) - (self.height - 1) / 2
        parts = (left, top, self.width, self.height)
        if any(p.denominator != 1 for p in parts):
            return None
        x, y, w, h = (int(p) for p in parts)
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > full_w or y + h > full_h:
            return None
        return x, y, x + w, y + h


class ItemGeometry(NamedTuple):
    """What the container says about the primary image's geometry, in the file's order."""

    transforms: tuple  # ("irot", degrees anticlockwise) / ("imir", axis) / ("clap", CleanAperture)
    ispe: tuple[int, int] | None  # coded size before any transform


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) for each box in data[start:end]; stops at the first bad one."""
    pos, n = start, 0
    while pos + 8 <= end and n < MAX_BOXES:
        n += 1
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                return
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield kind, pos + header, pos + size
        pos += size


def _find(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    for k, s, e in _boxes(data, start, end):
        if k == kind:
            return s, e
    return None


def heif_geometry(data: bytes) -> ItemGeometry:
    """The primary item's irot/imir/clap (in association order) and ispe, from the 'meta' box.

    Returns no transforms for anything malformed: the decoder then decides, as it would anyway.
    """
    try:
        return _heif_geometry(data)
    except (struct.error, ZeroDivisionError, ValueError, IndexError):
        return ItemGeometry((), None)


def _heif_geometry(data: bytes) -> ItemGeometry:
    none = ItemGeometry((), None)
    meta = _find(data, 0, len(data), b"meta")
    if meta is None:
        return none
    ms, me = meta[0] + 4, meta[1]  # 'meta' is a full box: skip version and flags
    pitm, iprp = _find(data, ms, me, b"pitm"), _find(data, ms, me, b"iprp")
    if pitm is None or iprp is None:
        return none
    version = data[pitm[0]]
    primary = struct.unpack_from(">H" if version == 0 else ">I", data, pitm[0] + 4)[0]
    ipco = _find(data, iprp[0], iprp[1], b"ipco")
    if ipco is None:
        return none
    props = list(_boxes(data, ipco[0], ipco[1]))
    indices: list[int] = []
    for kind, s, e in _boxes(data, iprp[0], iprp[1]):
        if kind != b"ipma":
            continue
        version, flags = data[s], int.from_bytes(data[s + 1:s + 4], "big")
        count = struct.unpack_from(">I", data, s + 4)[0]
        pos = s + 8
        for _ in range(min(count, (e - pos) // 3 + 1, MAX_BOXES)):
            if version < 1:
                item = struct.unpack_from(">H", data, pos)[0]
                pos += 2
            else:
                item = struct.unpack_from(">I", data, pos)[0]
                pos += 4
            n = data[pos]
            pos += 1
            for _ in range(n):
                if flags & 1:
                    idx = struct.unpack_from(">H", data, pos)[0] & 0x7FFF
                    pos += 2
                else:
                    idx = data[pos] & 0x7F
                    pos += 1
                if item == primary:
                    indices.append(idx)
            if pos > e:
                return none
    transforms: list = []
    ispe = None
    for idx in indices:
        if not 1 <= idx <= len(props):
            continue
        kind, s, e = props[idx - 1]
        if kind == b"irot" and e > s:
            transforms.append(("irot", (data[s] & 3) * 90))
        elif kind == b"imir" and e > s:
            transforms.append(("imir", data[s] & 1))
        elif kind == b"clap" and e - s >= 32:
            wn, wd, hn, hd = struct.unpack_from(">IIII", data, s)
            hon, hod, von, vod = struct.unpack_from(">iIiI", data, s + 16)
            if 0 in (wd, hd, hod, vod):
                continue
            transforms.append(("clap", CleanAperture(Fraction(wn, wd), Fraction(hn, hd),
                                                     Fraction(hon, hod), Fraction(von, vod))))
        elif kind == b"ispe" and e - s >= 12:
            ispe = struct.unpack_from(">II", data, s + 4)
    return ItemGeometry(tuple(transforms), ispe)


def ispe_sizes(data: bytes) -> list[tuple[int, int]]:
    """Every 'ispe' (coded size) among the item properties of a HEIF/AVIF 'meta' box, whatever
    item it belongs to: a decoder may honour any of them (libavif reads the first one
    associated with the primary item, which need not be the real one)."""
    try:
        meta = _find(data, 0, len(data), b"meta")
        iprp = meta and _find(data, meta[0] + 4, meta[1], b"iprp")
        ipco = iprp and _find(data, iprp[0], iprp[1], b"ipco")
        if not ipco:
            return []
        return [struct.unpack_from(">II", data, s + 4) for kind, s, e in _boxes(data, ipco[0], ipco[1])
                if kind == b"ispe" and e - s >= 12]
    except struct.error:
        return []


# ---- bounded walks over a file object ----------------------------------------------------------

class HeaderLimit(Exception):
    """A header past one of the parsing caps; str() is the one-line reason."""


#: What a walker meets in a malformed header (an offset past the end, or past what seek takes).
_MALFORMED = (EOFError, struct.error, IndexError, OverflowError, OSError, ValueError)


class _Window:
    """Random reads of a file object through a small window: a walker that hops around
    reads each part of the file about once, never the whole file for a few fields."""

    def __init__(self, fp: BinaryIO, size: int = _WINDOW):
        self.fp, self.size = fp, size
        self.start, self.buf = 0, b""

    def get(self, pos: int, n: int) -> bytes:
        if pos < self.start or pos + n > self.start + len(self.buf):
            self.fp.seek(pos)
            self.buf, self.start = self.fp.read(max(n, self.size)), pos
        return self.buf[pos - self.start:pos - self.start + n]

    def unpack(self, fmt: str, pos: int) -> tuple:
        n = struct.calcsize(fmt)
        raw = self.get(pos, n)
        if len(raw) < n:
            raise EOFError
        return struct.unpack(fmt, raw)


@dataclass
class Survey:
    """What a header declares, read before any decoder runs (`survey`)."""

    kind: str | None  # "JPEG", "PNG", "TIFF", "WEBP", "GIF", "BMP", "ISOBMFF", or None (left to Pillow)
    canvas: tuple[int, int] | None = None  # the largest picture the header declares
    progressive: bool = False  # JPEG: a progressive frame (SOF2/6/10/14)
    body: int | None = None  # JPEG: offset of the first SOS marker; PNG: of the first IDAT chunk
    rle: bool = False  # BMP: RLE4/RLE8, which Pillow decodes in Python, pixel by pixel
    tables: int = 0  # TIFF: tile or strip entries of the first page (every plane: planar files have 3x)


def survey(fp: BinaryIO) -> Survey:
    """The header's declarations, walked within the caps (HeaderLimit past one). fp is left
    at 0. Unknown or malformed headers give what was read so far: the decoder then refuses."""
    head = fp.read(32)
    walker = None
    if head[:3] == b"\xff\xd8\xff":
        walker = _jpeg
    elif head[:8] == b"\x89PNG\r\n\x1a\n":
        walker = _png
    elif head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        walker = _tiff
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        walker = _webp
    elif head[:6] in (b"GIF87a", b"GIF89a"):
        walker = _gif
    elif head[:2] == b"BM":
        walker = _bmp
    elif head[4:8] == b"ftyp":
        walker = _isobmff
    try:
        return walker(_Window(fp)) if walker else Survey(None)
    except HeaderLimit:
        raise
    except _MALFORMED:
        return Survey(walker.__name__.strip("_").upper())  # malformed: the decoder's to refuse
    finally:
        fp.seek(0)


# ---- JPEG ----

_JPEG_MARKER = re.compile(rb"\xff[^\x00\xff]")  # a marker, past fill bytes (FF FF ...) and stuffing (FF 00)
_JPEG_SCAN_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # in entropy data restarts are no stop
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_NO_LENGTH = {0x01, 0xD8, *range(0xD0, 0xD8)}


_STRAY = (f"JPEG header with over {MAX_JPEG_STRAY_BYTES:,} fill or junk bytes between segments "
          "(a denial-of-service pattern)")
_MARKERS = f"JPEG with over {MAX_JPEG_MARKERS:,} segments (a denial-of-service pattern)"


def _next_marker(w: _Window, pos: int, pattern: re.Pattern, allowed: int, why: str) -> tuple[int, int]:
    """(position of the next marker's 0xFF, bytes skipped to reach it); HeaderLimit(why) when
    more than `allowed` bytes come first. Reads in chunks: the search itself runs in C.
    (Shaped for atheris 2.3, whose instrumentation mis-stores locals in some loops that raise.)"""
    skipped = 0
    while skipped <= allowed:
        chunk = w.get(pos, _WINDOW)
        m = pattern.search(chunk) if len(chunk) >= 2 else None
        if m is not None:
            pos += m.start()
            skipped += m.start()
            break
        if len(chunk) < 2:
            raise EOFError
        pos += len(chunk) - 1  # the last byte may be the 0xFF of a marker split across chunks
        skipped += len(chunk) - 1
    if skipped > allowed:
        raise HeaderLimit(why)
    return pos, skipped


def _jpeg(w: _Window) -> Survey:
    """Walk the segments before the first scan: what Pillow's header parser loops over."""
    out = Survey("JPEG")
    pos, markers, exif, stray = 2, 0, 0, 0
    while True:
        pos, skipped = _next_marker(w, pos, _JPEG_MARKER, MAX_JPEG_STRAY_BYTES - stray, _STRAY)
        stray += skipped
        marker = w.get(pos + 1, 1)[0]
        markers += 1
        if markers > MAX_JPEG_MARKERS:
            raise HeaderLimit(_MARKERS)
        if marker in _NO_LENGTH:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # EOI, or the first scan: the header is over
            out.body = pos if marker == 0xDA else None
            return out
        (length,) = w.unpack(">H", pos + 2)
        if marker == 0xE1 and w.get(pos + 4, 6) == b"Exif\x00\x00":
            exif += 1
            if exif > MAX_JPEG_EXIF_SEGMENTS:
                raise HeaderLimit(f"JPEG with over {MAX_JPEG_EXIF_SEGMENTS} EXIF segments "
                                  "(a denial-of-service pattern)")
        elif marker in _SOF and out.canvas is None:
            h, wd = w.unpack(">HH", pos + 5)
            out.canvas, out.progressive = (wd, h), marker in (0xC2, 0xC6, 0xCA, 0xCE)
        pos += 2 + max(length, 2)
        if pos > MAX_JPEG_HEADER_BYTES:
            raise HeaderLimit(f"JPEG header of over {MAX_JPEG_HEADER_BYTES >> 20} MB before the image data")


def jpeg_scan_count(fp: BinaryIO, start: int, max_scans: int, max_bytes: int) -> int:
    """Scans in a JPEG from its first SOS marker at `start` to EOI, walking the segments and
    skipping entropy-coded data in chunks (in C); stops early once past max_scans. HeaderLimit
    when the walk passes max_bytes (coded data far beyond what the picture can need) or
    MAX_JPEG_MARKERS segments. What follows EOI is never read."""
    w = _Window(fp, 1 << 20)
    too_far = (f"JPEG whose coded data runs past {max_bytes / 1e6:,.0f} MB, far more than its picture "
               "can need")
    pos, scans, markers = start, 0, 0
    try:
        while scans <= max_scans:
            marker = w.get(pos + 1, 1)[0]
            markers += 1
            if markers > MAX_JPEG_MARKERS:
                raise HeaderLimit(_MARKERS)
            if marker == 0xD9:
                break
            pos += 2 if marker in _NO_LENGTH else 2 + max(w.unpack(">H", pos + 2)[0], 2)
            if marker == 0xDA:
                scans += 1
                pos, _ = _next_marker(w, pos, _JPEG_SCAN_MARKER, max_bytes - (pos - start), too_far)
            else:
                pos, _ = _next_marker(w, pos, _JPEG_MARKER, MAX_JPEG_STRAY_BYTES, _STRAY)
    except _MALFORMED:
        pass  # the end of the file: the decoder says whether it is truncated
    finally:
        fp.seek(0)
    return scans


# ---- PNG ----

def _png(w: _Window) -> Survey:
    """Walk the chunks before the image data (what Pillow's header parser loops over)."""
    out = Survey("PNG")
    pos = 8
    for _ in range(MAX_PNG_CHUNKS_BEFORE_IDAT):
        length, kind = w.unpack(">I4s", pos)
        if kind == b"IHDR":
            out.canvas = w.unpack(">II", pos + 8)
        elif kind in (b"IDAT", b"IEND"):
            out.body = pos if kind == b"IDAT" else None
            return out
        pos += 12 + length
    raise HeaderLimit(f"PNG with over {MAX_PNG_CHUNKS_BEFORE_IDAT:,} chunks before the image data "
                      "(a denial-of-service pattern)")


def png_chunk_count(fp: BinaryIO, start: int, limit: int) -> int:
    """Chunks from the first IDAT at `start` to IEND (Pillow's decoder steps through them in
    Python); HeaderLimit past `limit`."""
    w = _Window(fp)
    pos, n = start, 0
    try:
        while n <= limit:
            length, kind = w.unpack(">I4s", pos)
            n += 1
            if kind == b"IEND":
                return n
            pos += 12 + length
    except _MALFORMED:
        return n
    finally:
        fp.seek(0)
    raise HeaderLimit(f"PNG with over {limit:,} chunks for its picture (a denial-of-service pattern)")


# ---- TIFF ----

_TIFF_BLOBS = {1, 2, 6, 7}  # BYTE, ASCII, SBYTE, UNDEFINED: read as bytes, not one number each


class _Tiff:
    """Byte order and offset width of a TIFF or BigTIFF, and its IFD reader."""

    def __init__(self, w: _Window):
        self.w = w
        head = w.get(0, 16)
        self.e = "<" if head[:2] == b"II" else ">"
        self.big = w.unpack(self.e + "H", 2)[0] == 43
        self.off = self.e + ("Q" if self.big else "I")
        self.first = w.unpack(self.off, 8 if self.big else 4)[0]

    def _layout(self, at: int) -> tuple[int, int, int]:
        """(entries, bytes per entry, the first entry's position) of the IFD at `at`."""
        n = self.w.unpack(self.e + ("Q" if self.big else "H"), at)[0]
        return (n, 20, at + 8) if self.big else (n, 12, at + 2)

    def next_ifd(self, at: int) -> int:
        """The offset of the IFD after the one at `at` (0: none), its entries not read."""
        n, size, start = self._layout(at)
        return self.w.unpack(self.off, start + size * n)[0]

    def entries(self, at: int) -> list[tuple[int, int, int, int]]:
        """[(tag, type, count, value field position)] of the IFD at `at`."""
        n, size, start = self._layout(at)
        if n > MAX_TIFF_ENTRIES:
            raise HeaderLimit(f"TIFF directory with {n:,} tags, over the limit of {MAX_TIFF_ENTRIES:,}")
        count_fmt = self.e + ("HHQ" if self.big else "HHI")
        out = []
        for i in range(n):
            tag, typ, count = self.w.unpack(count_fmt, start + size * i)
            out.append((tag, typ, count, start + size * i + (12 if self.big else 8)))
        return out

    def value(self, typ: int, pos: int) -> int:
        """The first number of a tag whose values fit in its entry."""
        fmt = {3: "H", 4: "I", 16: "Q"}.get(typ, "I")
        return self.w.unpack(self.e + fmt, pos)[0]


def _tiff(w: _Window) -> Survey:
    """The first page's size, layout and the numbers its tags hold (Pillow reads every one of
    them into Python objects on open: millions of tile offsets cost a GB)."""
    t = _Tiff(w)
    out = Survey("TIFF")
    entries = t.entries(t.first)
    fields, values = {}, 0
    for tag, typ, count, pos in entries:
        if typ not in _TIFF_BLOBS:
            values += count
        if tag in (256, 257) and count >= 1:
            fields[tag] = t.value(typ, pos)
        elif tag in (273, 324):  # StripOffsets, TileOffsets
            out.tables = max(out.tables, count)
    if values > MAX_TIFF_VALUES:
        raise HeaderLimit(f"TIFF whose first page holds {values:,} numbers in its tags ({out.tables:,} strips or "
                          f"tiles), over the limit of {MAX_TIFF_VALUES:,}")
    if 256 in fields and 257 in fields:
        out.canvas = (fields[256], fields[257])
    return out


def tiff_page_count(fp: BinaryIO, limit: int = MAX_COUNTED_FRAMES) -> int:
    """Pages in a TIFF's IFD chain, counted up to `limit` (Pillow's n_frames parses every page,
    and checks each offset against a list of all the previous ones)."""
    seen: set[int] = set()
    try:
        t = _Tiff(_Window(fp))
        at = t.first
        while at and at not in seen and len(seen) < limit:
            seen.add(at)
            at = t.next_ifd(at)
    except _MALFORMED:
        pass  # a broken link ends the chain where Pillow's would end too
    finally:
        fp.seek(0)
    return max(1, len(seen))


# ---- WebP, GIF, BMP, ISO BMFF ----

def _webp(w: _Window) -> Survey:
    """The canvas: libwebp allocates it whole, whatever the frames hold."""
    kind = w.get(12, 4)
    out = Survey("WEBP")
    if kind == b"VP8X":
        wd, h = w.get(24, 3), w.get(27, 3)
        out.canvas = (int.from_bytes(wd, "little") + 1, int.from_bytes(h, "little") + 1)
    elif kind == b"VP8L" and w.get(20, 1) == b"\x2f":
        bits = w.unpack("<I", 21)[0]
        out.canvas = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    elif kind == b"VP8 ":
        wd, h = w.unpack("<HH", 26)
        out.canvas = (wd & 0x3FFF, h & 0x3FFF)
    return out


def _gif(w: _Window) -> Survey:
    """The logical screen, grown by the first frame when it reaches beyond (as Pillow does)."""
    sw, sh, flags = w.unpack("<HHB", 6)
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    out = Survey("GIF", canvas=(sw, sh))
    for _ in range(MAX_COUNTED_FRAMES):
        if pos > 64 << 20:
            break
        block = w.get(pos, 1)[0]
        if block == 0x21:
            pos = _skip_sub_blocks(w, pos + 2)
        elif block == 0x2C:
            x, y, fw, fh = w.unpack("<HHHH", pos + 1)
            out.canvas = (max(sw, x + fw), max(sh, y + fh))
            break
        else:
            break
    return out


def _skip_sub_blocks(w: _Window, pos: int) -> int:
    while True:
        n = w.get(pos, 1)
        if not n:
            raise EOFError
        pos += 1 + n[0]
        if n[0] == 0:
            return pos


def gif_frame_count(fp: BinaryIO, limit: int = MAX_COUNTED_FRAMES, max_bytes: int = 64 << 20) -> int:
    """Images in a GIF, by walking its blocks (no LZW decode), counted up to `limit` frames
    or `max_bytes` into the file (what was counted so far). At least 1."""
    w = _Window(fp)
    frames = 0
    try:
        if w.get(0, 3) != b"GIF":
            return 1
        flags = w.get(10, 1)[0]
        pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
        while frames < limit and pos < max_bytes:
            block = w.get(pos, 1)
            if not block or block[0] == 0x3B:  # the end, or the trailer
                break
            if block[0] == 0x21:  # extension: label, then sub-blocks
                pos = _skip_sub_blocks(w, pos + 2)
            elif block[0] == 0x2C:  # image descriptor (+ local table), LZW code size, sub-blocks
                flags = w.get(pos + 9, 1)[0]
                pos += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
                frames += 1
                pos = _skip_sub_blocks(w, pos + 1)
            else:
                break
    except _MALFORMED:
        pass
    finally:
        fp.seek(0)
    return max(frames, 1)


def _bmp(w: _Window) -> Survey:
    """Size and compression: RLE4/RLE8 are decoded by Pillow in Python, pixel by pixel."""
    header = w.unpack("<I", 14)[0]
    if header == 12:
        wd, h = w.unpack("<HH", 18)
        return Survey("BMP", canvas=(wd, h))
    wd, h, _, _, compression = w.unpack("<iiHHI", 18)
    return Survey("BMP", canvas=(abs(wd), abs(h)), rle=compression in (1, 2))


def _isobmff(w: _Window) -> Survey:
    """The largest 'ispe' among the item properties (HEIF, AVIF)."""
    data = _read_meta(w)
    sizes = ispe_sizes(data)
    return Survey("ISOBMFF", canvas=max(sizes, key=lambda s: s[0] * s[1]) if sizes else None)


def _read_meta(w: _Window, limit: int = 16 << 20) -> bytes:
    """The top-level 'meta' box (at most `limit` bytes), skipping the boxes before it."""
    pos = 0
    for _ in range(64):
        header = w.get(pos, 16)
        if len(header) < 8:
            break
        size, kind = struct.unpack_from(">I4s", header)
        head = 8
        if size == 1 and len(header) == 16:
            size, head = struct.unpack_from(">Q", header, 8)[0], 16
        elif size == 0:
            size = limit
        if size < head:
            break
        if kind == b"meta":
            return w.get(pos, min(size, limit))
        pos += size
    return b""


def read_meta_box(fp: BinaryIO) -> bytes:
    """The top-level 'meta' box of a HEIF/AVIF file (at most 16 MB); b"" when there is none."""
    try:
        return _read_meta(_Window(fp))
    except _MALFORMED:
        return b""
    finally:
        fp.seek(0)
