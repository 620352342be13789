"""Hostile files by structure (issue 23): small files that declare huge work, made in code.

Each family is a function `name(**params) -> bytes` whose defaults make the file measured in
the issue; smaller parameters make the same structure for the fuzz target (`targets.py
families`), which draws them from the fuzzer's bytes. `write(path, name)` writes one file
(`jpeg_padded` is written sparse: its padding takes no disk).

    python fuzz/families.py DIR        # writes every family at its default size into DIR

Families: declared size against real data (`webp_lossless_canvas`, `webp_animated_canvas`,
`avif_extra_ispe`, `gif_canvas`), decoder paths priced wrong (`tiff_planar_tiles`,
`bmp_rle_rows`), floods (`jpeg_app1_flood`, `jpeg_fill_flood`, `jpeg_com_flood`,
`png_chunk_flood`), chains (`tiff_ifd_chain`) and padding a cost check used to read
(`jpeg_padded`).
"""

from __future__ import annotations

import functools
import io
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

W, H = 14000, 15000  # 210 MP: exactly the default pixel limit, so only the cost model stops them


# ---- WebP --------------------------------------------------------------------------------------

class _Bits:
    """A little-endian bit writer (the VP8L bitstream's order)."""

    def __init__(self):
        self.value, self.n = 0, 0

    def put(self, value: int, bits: int) -> None:
        self.value |= (value & ((1 << bits) - 1)) << self.n
        self.n += bits

    def bytes(self) -> bytes:
        return self.value.to_bytes((self.n + 7) // 8, "little")


def _vp8l(w: int, h: int) -> bytes:
    """A lossless WebP bitstream of w x h pixels that costs no bits per pixel: every prefix
    code is a 'simple' code of one symbol (zero-length codes)."""
    b = _Bits()
    b.put(0x2F, 8)
    b.put(w - 1, 14)
    b.put(h - 1, 14)
    b.put(1, 1)  # alpha used
    b.put(0, 3)  # version
    b.put(0, 1)  # no transform
    b.put(0, 1)  # no colour cache
    b.put(0, 1)  # no meta prefix codes
    for _ in range(5):  # green, red, blue, alpha, distance
        b.put(1, 1)  # simple code
        b.put(0, 1)  # one symbol
        b.put(0, 1)  # symbol in 1 bit
        b.put(0, 1)  # symbol 0
    return b.bytes()


def _chunk_riff(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) % 2 else b"")


def _riff_webp(chunks: bytes) -> bytes:
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks


def webp_lossless_canvas(w: int = W, h: int = H, pad: int = 0) -> bytes:
    """A valid lossless WebP of w x h transparent pixels in a few dozen bytes (plus an unknown
    chunk of `pad` bytes, which readers skip: the same canvas in a file that looks its size)."""
    extra = _chunk_riff(b"XPAD", bytes(pad)) if pad else b""
    return _riff_webp(_chunk_riff(b"VP8L", _vp8l(w, h)) + extra)


def _u24(v: int) -> bytes:
    return struct.pack("<I", v)[:3]


def webp_animated_canvas(w: int = W, h: int = H, frames: int = 4) -> bytes:
    """An animated WebP whose canvas is w x h and whose frames are 1 x 1 pixel."""
    vp8x = bytes([0x12, 0, 0, 0]) + _u24(w - 1) + _u24(h - 1)  # animation + alpha flags
    anim = struct.pack("<IH", 0xFFFFFFFF, 0)
    body = _chunk_riff(b"VP8X", vp8x) + _chunk_riff(b"ANIM", anim)
    for i in range(frames):
        frame = _u24(0) + _u24(0) + _u24(0) + _u24(0) + _u24(100) + bytes([0])
        body += _chunk_riff(b"ANMF", frame + _chunk_riff(b"VP8L", _vp8l(1, 1)))
    return _riff_webp(body)


# ---- AVIF (ISO boxes) ---------------------------------------------------------------------------

def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _children(data: bytes, start: int, end: int):
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        yield kind, pos, pos + size
        pos += size


def _shift_iloc(meta: bytearray, delta: int, after: int) -> None:
    """Move iloc extent offsets that point past `after` by `delta` (meta grew by it)."""
    fmt = {4: ">I", 8: ">Q"}
    for kind, s, _ in _children(bytes(meta), 12, len(meta)):
        if kind != b"iloc":
            continue
        version = meta[s + 8]
        off_size, len_size, base_size = meta[s + 12] >> 4, meta[s + 12] & 15, meta[s + 13] >> 4
        count = struct.unpack_from(">H", meta, s + 14)[0]
        pos = s + 16
        for _ in range(count):
            pos += 2 + (2 if version == 1 else 0) + 2  # item id, construction method, data ref
            if base_size:
                base = struct.unpack_from(fmt[base_size], meta, pos)[0]
                if base:
                    struct.pack_into(fmt[base_size], meta, pos, base + delta)
            pos += base_size
            extents = struct.unpack_from(">H", meta, pos)[0]
            pos += 2
            for _ in range(extents):
                if off_size:
                    off = struct.unpack_from(fmt[off_size], meta, pos)[0]
                    if off >= after:
                        struct.pack_into(fmt[off_size], meta, pos, off + delta)
                pos += off_size + len_size


def avif_with_property(data: bytes, prop: bytes, first: bool = False) -> bytes:
    """Associate one more property box with the primary item of a libavif-written AVIF (one
    item, version 0 ipma): a new ipco entry, the ipma association (first or last in the
    item's order), and the iloc offsets moved along."""
    top = {k: (s, e) for k, s, e in _children(data, 0, len(data))}
    ms, me = top[b"meta"]
    inner = {k: (s, e) for k, s, e in _children(data, ms + 12, me)}
    ps, pe = inner[b"iprp"]
    sub = {k: (s, e) for k, s, e in _children(data, ps + 8, pe)}
    ipco = data[sub[b"ipco"][0] + 8:sub[b"ipco"][1]]
    n_props = len(list(_children(ipco, 0, len(ipco))))
    ipma = bytearray(data[sub[b"ipma"][0] + 8:sub[b"ipma"][1]])
    assert ipma[0] == 0 and not ipma[3] & 1  # version 0, 8-bit indices: what libavif writes
    assert struct.unpack_from(">I", ipma, 4)[0] == 1  # one item
    ipma[10] += 1
    entry = bytes([0x80 | (n_props + 1)])
    ipma = ipma[:11] + entry + ipma[11:] if first else ipma + entry
    iprp = box(b"iprp", box(b"ipco", ipco + prop) + box(b"ipma", bytes(ipma)))
    meta = bytearray(box(b"meta", data[ms + 8:ps] + iprp + data[pe:me]))
    _shift_iloc(meta, len(meta) - (me - ms), me)
    return data[:ms] + bytes(meta) + data[me:]


def ispe(w: int, h: int) -> bytes:
    return box(b"ispe", struct.pack(">III", 0, w, h))


@functools.lru_cache(maxsize=1)
def _small_avif() -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buf, "AVIF", quality=60)
    return buf.getvalue()


def avif_extra_ispe(w: int = W, h: int = H, first: bool = True) -> bytes:
    """A 64x48 AVIF whose primary item carries a second 'ispe' declaring w x h (first: ahead of
    the real one, which is the one libavif reads)."""
    return avif_with_property(_small_avif(), ispe(w, h), first=first)


# ---- TIFF ---------------------------------------------------------------------------------------

def _ifd(entries: list[tuple[int, int, int, bytes]], at: int, next_ifd: int = 0) -> tuple[bytes, bytes]:
    """(IFD bytes placed at `at`, the out-of-line data that follows it). Entries are
    (tag, type, count, value bytes); values over 4 bytes go after the IFD."""
    entries = sorted(entries)
    head = struct.pack("<H", len(entries))
    extra = b""
    data_at = at + 2 + 12 * len(entries) + 4
    for tag, typ, count, value in entries:
        if len(value) <= 4:
            head += struct.pack("<HHI", tag, typ, count) + value.ljust(4, b"\x00")
        else:
            head += struct.pack("<HHII", tag, typ, count, data_at + len(extra))
            extra += value + (b"\x00" if len(value) % 2 else b"")
    return head + struct.pack("<I", next_ifd), extra


SHORT, LONG = 3, 4


def _short(v: int) -> bytes:
    return struct.pack("<H", v)


def _long(v: int) -> bytes:
    return struct.pack("<I", v)


def tiff_planar_tiles(w: int = W, h: int = H, tile: int = 16) -> bytes:
    """An RGB TIFF stored plane by plane (PlanarConfiguration 2) in tile x tile tiles: millions
    of tile offsets, every one pointing at the same uncompressed tile."""
    n = -(-w // tile) * -(-h // tile) * 3
    tile_at, tile_data = 8, bytes(i & 255 for i in range(tile * tile))
    ifd_at = tile_at + len(tile_data)
    n_entries, bits = 11, b"".join(_short(8) for _ in range(3))
    arrays_at = ifd_at + 2 + 12 * n_entries + 4 + len(bits)  # after the IFD and its one out-of-line value
    entries = [
        (256, LONG, 1, _long(w)), (257, LONG, 1, _long(h)), (258, SHORT, 3, bits),
        (259, SHORT, 1, _short(1)), (262, SHORT, 1, _short(2)), (277, SHORT, 1, _short(3)),
        (284, SHORT, 1, _short(2)), (322, SHORT, 1, _short(tile)), (323, SHORT, 1, _short(tile)),
        (324, LONG, n, _long(arrays_at)), (325, LONG, n, _long(arrays_at + 4 * n)),  # offsets, byte counts
    ]
    assert len(entries) == n_entries
    ifd, extra = _ifd(entries, ifd_at)
    offsets = np.full(n, tile_at, "<u4").tobytes()
    counts = np.full(n, tile * tile, "<u4").tobytes()
    return b"II*\x00" + _long(ifd_at) + tile_data + ifd + extra + offsets + counts


def tiff_ifd_chain(pages: int = 250_000) -> bytes:
    """A TIFF of `pages` 1x1 grey pages, each IFD pointing at the next."""
    pixel_at = 8
    first_ifd = 10
    entries = [(256, SHORT, 1, _short(1)), (257, SHORT, 1, _short(1)), (258, SHORT, 1, _short(8)),
               (259, SHORT, 1, _short(1)), (262, SHORT, 1, _short(1)), (273, LONG, 1, _long(pixel_at)),
               (277, SHORT, 1, _short(1)), (278, SHORT, 1, _short(1)), (279, LONG, 1, _long(1))]
    template, extra = _ifd(entries, first_ifd, 0)
    assert not extra
    size = len(template)
    table = np.frombuffer(template * pages, np.uint8).reshape(pages, size).copy()
    nexts = first_ifd + size * np.arange(1, pages + 1, dtype="<u4")
    nexts[-1] = 0
    table[:, size - 4:] = nexts.view(np.uint8).reshape(pages, 4)
    return b"II*\x00" + _long(first_ifd) + b"\x80\x00" + table.tobytes()


# ---- BMP, GIF -----------------------------------------------------------------------------------

def bmp_rle_rows(w: int = W, h: int = H) -> bytes:
    """An RLE8 BMP whose every row holds one pixel and an end-of-line (4 bytes a row)."""
    data = b"\x01\x01\x00\x00" * h + b"\x00\x01"
    palette = b"\x00\x00\x00\x00\xff\xff\xff\x00"
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 8, 1, len(data), 2835, 2835, 2, 2)
    return b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset) + info + palette + data


def gif_canvas(w: int = W, h: int = H) -> bytes:
    """A GIF whose logical screen is w x h and whose one frame is 1 x 1 pixel."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("P", (1, 1), 1).save(buf, "GIF")
    data = bytearray(buf.getvalue())
    struct.pack_into("<HH", data, 6, w, h)
    return bytes(data)


# ---- JPEG ---------------------------------------------------------------------------------------

def small_jpeg(w: int = 64, h: int = 48, **kw) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG", quality=80, **kw)
    return buf.getvalue()


def _after_soi(insert: bytes, jpeg: bytes | None = None) -> bytes:
    jpeg = jpeg or small_jpeg()
    return jpeg[:2] + insert + jpeg[2:]


def jpeg_app1_flood(segments: int = 300_000, payload: int = 32) -> bytes:
    """A JPEG with `segments` small APP1 "Exif" segments (Pillow joins them one by one)."""
    seg = b"\xff\xe1" + struct.pack(">H", 8 + payload) + b"Exif\x00\x00" + b"\x00" * payload
    return _after_soi(seg * segments)


def jpeg_fill_flood(fill: int = 20_000_000) -> bytes:
    """A JPEG with `fill` 0xFF fill bytes after SOI (legal padding before a marker)."""
    return _after_soi(b"\xff" * fill)


def jpeg_com_flood(markers: int = 5_000_000) -> bytes:
    """A JPEG with `markers` empty COM segments before the frame."""
    return _after_soi(b"\xff\xfe\x00\x02" * markers)


def jpeg_padded(padding: int = 1_300_000_000, w: int = 1600, h: int = 1200) -> bytes:
    """A progressive JPEG followed by `padding` zero bytes (written sparse by `write`)."""
    return small_jpeg(w, h, progressive=True) + bytes(padding)


# ---- PNG ----------------------------------------------------------------------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_chunk_flood(chunks: int = 2_000_000) -> bytes:
    """A 1x1 PNG with `chunks` empty private ancillary chunks before its image data."""
    ihdr = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    idat = _png_chunk(b"IDAT", zlib.compress(b"\x00\x80"))
    return b"\x89PNG\r\n\x1a\n" + ihdr + _png_chunk(b"prVt", b"") * chunks + idat + _png_chunk(b"IEND", b"")


FAMILIES = {
    "webp_lossless_canvas": webp_lossless_canvas,
    "webp_animated_canvas": webp_animated_canvas,
    "avif_extra_ispe": avif_extra_ispe,
    "gif_canvas": gif_canvas,
    "tiff_planar_tiles": tiff_planar_tiles,
    "tiff_ifd_chain": tiff_ifd_chain,
    "bmp_rle_rows": bmp_rle_rows,
    "jpeg_app1_flood": jpeg_app1_flood,
    "jpeg_fill_flood": jpeg_fill_flood,
    "jpeg_com_flood": jpeg_com_flood,
    "jpeg_padded": jpeg_padded,
    "png_chunk_flood": png_chunk_flood,
}
EXTENSIONS = {"webp": ".webp", "avif": ".avif", "gif": ".gif", "tiff": ".tif", "bmp": ".bmp", "jpeg": ".jpg",
              "png": ".png"}


#: What the fuzz target (targets.py `families`) varies in each family: name -> {param: (lo, hi)}.
#: Ranges keep one input's file under a few MB, so the fuzzer tries many per second.
FUZZ_RANGES = {
    "webp_lossless_canvas": {"w": (1, 16384), "h": (1, 16384), "pad": (0, 70000)},
    "webp_animated_canvas": {"w": (1, 16384), "h": (1, 16384), "frames": (1, 64)},
    "avif_extra_ispe": {"w": (1, 70000), "h": (1, 70000), "first": (0, 1)},
    "gif_canvas": {"w": (1, 65535), "h": (1, 65535)},
    "tiff_planar_tiles": {"w": (1, 4096), "h": (1, 4096), "tile": (1, 8)},
    "tiff_ifd_chain": {"pages": (1, 40000)},
    "bmp_rle_rows": {"w": (1, 20000), "h": (1, 20000)},
    "jpeg_app1_flood": {"segments": (1, 60000), "payload": (0, 64)},
    "jpeg_fill_flood": {"fill": (1, 1_000_000)},
    "jpeg_com_flood": {"markers": (1, 400_000)},
    "jpeg_padded": {"padding": (0, 1_000_000), "w": (8, 640), "h": (8, 480)},
    "png_chunk_flood": {"chunks": (1, 200_000)},
}


def draw(name: str, pick) -> dict:
    """Parameters of family `name` for the fuzzer: pick(lo, hi) returns an int in [lo, hi]."""
    params = {k: pick(lo, hi) for k, (lo, hi) in FUZZ_RANGES[name].items()}
    if name == "tiff_planar_tiles":
        params["tile"] *= 16  # TIFF tiles are multiples of 16
    if name == "avif_extra_ispe":
        params["first"] = bool(params["first"])
    return params


def write(folder: Path, name: str, **params) -> Path:
    """Write family `name` into folder (NAME.ext); `jpeg_padded`'s padding is a sparse hole."""
    path = Path(folder) / (name + EXTENSIONS[name.split("_")[0]])
    if name == "jpeg_padded":
        padding = params.pop("padding", 1_300_000_000)
        head = jpeg_padded(padding=0, **params)
        with open(path, "wb") as f:
            f.write(head)
            f.truncate(len(head) + padding)
        return path
    path.write_bytes(FAMILIES[name](**params))
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "fuzz/work/families")
    out.mkdir(parents=True, exist_ok=True)
    for family in FAMILIES:
        p = write(out, family)
        print(f"{p}  {p.stat().st_size:,} bytes")
