"""Walkers for container headers, on bytes only (no pixel decode, no decoder library).

They answer the questions a decoder library leaves open or answers at a high price:
the HEIF/AVIF primary item's transforms (irot, imir, clap), how many frames a GIF holds
(Pillow decodes every frame to count them), and how many scans a JPEG holds (a progressive
JPEG with thousands of empty scans costs seconds of CPU). Every walker is bounded by the
input's length and returns a neutral answer on malformed input rather than raising.
"""

from __future__ import annotations

import struct
from fractions import Fraction
from typing import Iterator, NamedTuple


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
    pos = start
    while pos + 8 <= end:
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
        for _ in range(min(count, (e - pos) // 3 + 1)):
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


def gif_frame_count(data: bytes) -> int:
    """How many images a GIF holds, by walking its blocks (no LZW decode). At least 1."""
    try:
        if data[:3] != b"GIF" or len(data) < 13:
            return 1
        pos = 13
        if data[10] & 0x80:
            pos += 3 << ((data[10] & 7) + 1)
        frames = 0
        while pos < len(data):
            block = data[pos]
            if block == 0x3B:  # trailer
                break
            if block == 0x21:  # extension: label, then sub-blocks
                pos = _skip_sub_blocks(data, pos + 2)
            elif block == 0x2C:  # image descriptor (+ local table), LZW code size, sub-blocks
                if pos + 10 > len(data):
                    break
                flags = data[pos + 9]
                pos += 10
                if flags & 0x80:
                    pos += 3 << ((flags & 7) + 1)
                frames += 1
                pos = _skip_sub_blocks(data, pos + 1)
            else:
                break
        return max(frames, 1)
    except IndexError:
        return 1


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    while pos < len(data):
        n = data[pos]
        pos += 1 + n
        if n == 0:
            break
    return pos


def jpeg_scan_count(data: bytes) -> int:
    """Start-of-scan markers in a JPEG. Entropy-coded data cannot hold FF DA (0xFF is stuffed
    as FF 00), so a byte count is exact up to scans of embedded thumbnails, a handful."""
    return data.count(b"\xff\xda")
