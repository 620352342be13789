"""Hostile images (issue 10): every failure is an UnreadableImage with one line, no corrupt
picture passes as real, container geometry is honoured, costs stay bounded.

Every input is made here, in code. Crashers found by fuzz/ live in FUZZ_FINDS at the end.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile
from fixtures import asym_picture, encode, exif_bytes, looks_upright, make_dataset, same_colour

from upright import UnreadableImage, describe, open_image, open_stored, open_upright
from upright import imaging
from upright.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
import families  # noqa: E402 - fuzz/families.py: ISO box surgery shared with the fuzz target


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos + 8 <= len(data):
        n, kind = struct.unpack_from(">I4s", data, pos)
        out.append((kind, data[pos + 8:pos + 8 + n]))
        pos += 12 + n
    return out


def png_from(chunks) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunk(k, d) for k, d in chunks)


def grey_png(w: int, h: int, bits: int = 8, colour: int = 0, extra=()) -> bytes:
    """A valid PNG of any size, rows of zeros (compresses ~1000:1)."""
    row = b"\x00" + b"\x00" * (w * bits // 8 * (3 if colour == 2 else 1))
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, bits, colour, 0, 0, 0)
    return png_from([(b"IHDR", ihdr), *extra, (b"IDAT", body), (b"IEND", b"")])


def noisy(w=96, h=64, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def one_line_reason(exc_info) -> str:
    reason = exc_info.value.reason
    assert "\n" not in reason and len(reason) < 300
    return reason


# ---- 1. thin images: a sized read must not stretch a strip into a giant picture ----------

@pytest.mark.parametrize("w,h", [(1, 5000), (1, 60000), (5000, 1)])
def test_thin_png_at_a_size_is_refused_in_one_line(w, h):
    data = grey_png(w, h)
    assert len(data) < 400
    with pytest.raises(UnreadableImage) as info:
        open_upright(data, size=224)
    assert "aspect" in one_line_reason(info)
    assert open_upright(data).size == (w, h)  # at full size it is a harmless strip


def test_thin_jpeg_at_a_size_is_refused_and_moderate_panoramas_pass():
    buf = io.BytesIO()
    Image.new("L", (65500, 16), 128).save(buf, "JPEG", quality=50)
    with pytest.raises(UnreadableImage, match="aspect"):
        open_upright(buf.getvalue(), size=224)
    pano = encode(noisy(800, 100), "PNG")  # 8:1, a phone panorama's shape
    assert open_upright(pano, size=32).size == (256, 32)


def test_a_huge_size_request_is_bounded_by_the_pixel_limit():
    with pytest.raises(UnreadableImage, match="decompression bomb guard"):
        open_upright(grey_png(10, 1000), size=100_000)  # 100,000 x 10,000,000 requested


# ---- 2. describe() never raises; audit and fix go on ---------------------------------------

def gif_with_truncated_second_frame() -> bytes:
    """A one-frame GIF, then a second image descriptor cut before its LZW code size byte."""
    buf = io.BytesIO()
    Image.new("P", (16, 16), 1).save(buf, "GIF")
    data = buf.getvalue()
    pos = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    while data[pos] == 0x21:  # skip extensions: label, then sub-blocks
        pos += 2
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    assert data[pos] == 0x2C and not data[pos + 9] & 0x80
    return data[:-1] + data[pos:pos + 10]


def tiff_whose_second_page_has_no_width() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 0, 0)).save(buf, "TIFF", save_all=True,
                                                 append_images=[Image.new("RGB", (8, 8))])
    data = bytearray(buf.getvalue())
    first = struct.unpack_from("<I", data, 4)[0]
    n = struct.unpack_from("<H", data, first)[0]
    second = struct.unpack_from("<I", data, first + 2 + 12 * n)[0]
    for i in range(struct.unpack_from("<H", data, second)[0]):
        entry = second + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == 256:  # ImageWidth -> an unknown tag
            struct.pack_into("<H", data, entry, 0xFE00)
    return bytes(data)


MALFORMED_HEADERS = {"gif": gif_with_truncated_second_frame, "tif": tiff_whose_second_page_has_no_width}


@pytest.mark.parametrize("ext", MALFORMED_HEADERS)
def test_describe_never_raises_on_malformed_headers(tmp_path, ext):
    path = tmp_path / f"bad.{ext}"
    path.write_bytes(MALFORMED_HEADERS[ext]())
    facts = describe(path)  # raised IndexError / TypeError("Missing dimensions") before
    assert facts.unreadable is None and facts.format == {"gif": "GIF", "tif": "TIFF"}[ext]
    assert facts.stored_size == {"gif": (16, 16), "tif": (8, 8)}[ext]
    assert open_upright(path).size == facts.stored_size  # the first picture is whole


def test_describe_turns_any_exception_into_an_unreadable_fact(tmp_path, monkeypatch):
    path = tmp_path / "a.jpg"
    path.write_bytes(encode(asym_picture(), "JPEG", 6))
    monkeypatch.setattr("upright.metadata.read_orientation", lambda im: (_ for _ in ()).throw(struct.error("x")))
    facts = describe(path)
    assert facts.unreadable and "x" in facts.unreadable


def _cli(capsys, *args) -> tuple[int, str]:
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code or 0
    return code, capsys.readouterr().out


def test_audit_and_fix_list_malformed_files_and_go_on(tmp_path, capsys):
    root = make_dataset(tmp_path / "d", n_per_class=4)
    (root / "cat" / "broken.gif").write_bytes(gif_with_truncated_second_frame())
    (root / "dog" / "broken.tif").write_bytes(tiff_whose_second_page_has_no_width())
    (root / "dog" / "text.jpg").write_text("not a photo")
    code, out = _cli(capsys, "audit", root, "--metadata-only", "--json")
    assert code == 0, out
    audit = json.loads(out)
    assert audit["n_images"] == 11
    assert [u["path"] for u in audit["unreadable"]] == [str(root / "dog" / "text.jpg")]
    code, out = _cli(capsys, "fix", root, "--out", tmp_path / "o", "--json")
    fixed = json.loads(out)
    assert len(fixed["files"]) == 11
    assert code == 0 and (tmp_path / "o" / "cat" / "broken.gif").read_bytes() == (root / "cat" / "broken.gif").read_bytes()


# ---- 3. PNG: metadata from the chunks before IDAT; corrupt data is never a picture --------

def test_corrupt_png_data_is_unreadable_not_a_half_filled_picture():
    data = encode(noisy(200, 150), "PNG")
    chunks = png_chunks(data)
    i = next(i for i, (k, _) in enumerate(chunks) if k == b"IDAT")
    body = bytearray(chunks[i][1])
    body[len(body) // 2:len(body) // 2 + 16] = b"\xff" * 16  # broken deflate stream, CRC fixed
    chunks[i] = (b"IDAT", bytes(body))
    with pytest.raises(UnreadableImage) as info:
        open_upright(png_from(chunks))
    one_line_reason(info)
    with pytest.raises(UnreadableImage, match="truncated"):
        open_upright(data[: len(data) // 2])  # cut in the middle of IDAT, no end chunk


def _png_with_exif(where: str) -> bytes:
    chunks = png_chunks(encode(asym_picture(), "PNG"))
    exif = (b"eXIf", exif_bytes(6)[6:] if exif_bytes(6).startswith(b"Exif") else exif_bytes(6))
    i = next(i for i, (k, _) in enumerate(chunks) if k == b"IDAT")
    chunks.insert(i if where == "before" else i + 1, exif)
    return png_from(chunks)


def test_exif_chunk_after_the_image_data_is_ignored():
    late = open_image(_png_with_exif("after"))  # web-platform-tests' F-exif-late.png
    assert late.orientation.tag is None and looks_upright(late.image)
    early = open_image(_png_with_exif("before"))
    assert early.orientation.tag == 6 and early.image.size == (64, 96)


def test_describe_png_reads_chunks_only(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    path.write_bytes(_png_with_exif("before"))
    calls = []
    real = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: calls.append(1) or real(self))
    facts = describe(path)
    assert facts.orientation == 6 and facts.has_exif and calls == []
    path.write_bytes(_png_with_exif("after"))
    assert describe(path).orientation_tag is None and calls == []


# ---- 4. HEIF/AVIF container geometry ---------------------------------------------------------

def heif_rotated_by_container_only() -> bytes:
    """A HEIF whose only rotation is the container's irot (EXIF Orientation patched to 1).
    pillow-heif writes irot from the EXIF tag but keeps the tag; bytes are patched here."""
    data = encode(asym_picture(96, 64), "HEIF", 6, quality=95)
    entry = struct.pack(">HHIH", 0x0112, 3, 1, 6)  # pillow-heif writes big-endian EXIF
    assert data.count(entry) == 1
    return data.replace(entry, struct.pack(">HHIH", 0x0112, 3, 1, 1))


def test_heif_container_rotation_without_exif(tmp_path):
    path = tmp_path / "nokia.heic"
    path.write_bytes(heif_rotated_by_container_only())
    facts = describe(path)
    assert facts.orientation == 6 and facts.orientation_source == "heif"
    assert facts.stored_size == (64, 96) and facts.upright_size == (96, 64)
    decoded = open_image(path)
    assert looks_upright(decoded.image) and decoded.stored_size == (64, 96)
    assert open_stored(path).size == (64, 96)


def avif_with_clap(data: bytes, width: int, height: int, h_off: int, v_off: int) -> bytes:
    """Insert a 'clap' property into a libavif-written AVIF (Pillow cannot write one)."""
    clap = families.box(b"clap", struct.pack(">IIIIiIiI", width, 1, height, 1, h_off, 1, v_off, 1))
    return families.avif_with_property(data, clap)


def test_avif_clean_aperture_crop_is_applied(tmp_path):
    picture = noisy(96, 64, seed=3)
    plain = encode(picture, "AVIF", None, quality=100)
    # The top-left 48x32: offsets are from the centre, (96-1)/2 - (48-1)/2 = 24 and 16.
    cropped = avif_with_clap(plain, 48, 32, -24, -16)
    assert open_upright(plain).size == (96, 64)  # the patch keeps the file readable
    img = open_upright(cropped)
    assert img.size == (48, 32)
    want = np.asarray(open_upright(plain).crop((0, 0, 48, 32)), np.int16)
    assert np.abs(np.asarray(img, np.int16) - want).mean() < 3
    path = tmp_path / "c.avif"
    path.write_bytes(cropped)
    facts = describe(path)
    assert facts.stored_size == (48, 32) and facts.upright_size == (48, 32)
    assert open_upright(cropped, size=16).size == (24, 16)


def test_avif_invalid_clap_is_ignored():
    plain = encode(noisy(96, 64), "AVIF", None, quality=90)
    assert open_upright(avif_with_clap(plain, 200, 32, 0, 0)).size == (96, 64)  # wider than the image


# ---- 5. costly inputs under the limit --------------------------------------------------------

def test_16_bit_png_is_converted_band_by_band_without_float64_copies():
    data = grey_png(4000, 3000, bits=16)  # 12 MP: the old float64 path held 96 MB + 96 MB
    tracemalloc.start()
    try:
        img = open_upright(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert img.size == (4000, 3000) and img.getpixel((5, 5)) == (0, 0, 0)
    assert peak < 60 << 20, peak


def test_16_bit_transparency_key_is_honoured():
    g = np.full((8, 8), 40000, np.uint16)
    g[0, 0] = 7
    raw = b"".join(b"\x00" + g[y].astype(">u2").tobytes() for y in range(8))
    grey = png_from([(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 16, 0, 0, 0, 0)), (b"tRNS", struct.pack(">H", 7)),
                     (b"IDAT", zlib.compress(raw)), (b"IEND", b"")])
    img = open_upright(grey)
    assert img.getpixel((0, 0)) == (255, 255, 255)  # transparent: white, like every other mode
    assert same_colour(img.getpixel((1, 0)), (156, 156, 156), 2)
    rgb = np.zeros((8, 8, 3), np.uint16)
    rgb[0, 0] = (1000, 2000, 3000)
    raw = b"".join(b"\x00" + rgb[y].astype(">u2").tobytes() for y in range(8))
    colour = png_from([(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 16, 2, 0, 0, 0)),
                       (b"tRNS", struct.pack(">HHH", 1000, 2000, 3000)), (b"IDAT", zlib.compress(raw)),
                       (b"IEND", b"")])
    img = open_upright(colour)
    assert img.getpixel((0, 0)) == (255, 255, 255) and img.getpixel((1, 0)) == (0, 0, 0)


def test_float_tiff_with_nan_is_read():
    arr = np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(48, 64)
    arr[0, 0] = np.nan
    buf = io.BytesIO()
    Image.fromarray(arr, "F").save(buf, "TIFF")
    img = open_upright(buf.getvalue())
    assert img.getpixel((0, 0)) == (0, 0, 0) and img.getpixel((63, 47))[0] == 255


def progressive_jpeg_with_extra_scans(extra: int, w=64, h=64, subsampling=2) -> bytes:
    buf = io.BytesIO()
    noisy(w, h).save(buf, "JPEG", progressive=True, quality=80, subsampling=subsampling)
    data = buf.getvalue()
    last = data.rfind(b"\xff\xda")
    return data[:-2] + data[last:-2] * extra + data[-2:]


def test_progressive_jpeg_with_thousands_of_scans_is_refused():
    with pytest.raises(UnreadableImage) as info:
        open_upright(progressive_jpeg_with_extra_scans(2000), size=32)
    assert "scans" in one_line_reason(info)
    assert open_upright(progressive_jpeg_with_extra_scans(0), size=32).size == (32, 32)


def test_progressive_jpeg_beyond_the_coefficient_budget_is_refused():
    data = bytearray(progressive_jpeg_with_extra_scans(0, subsampling=0))
    sof = data.index(b"\xff\xc2")
    struct.pack_into(">HH", data, sof + 5, 12000, 16000)  # 192 MP, 4:4:4: 1.1 GB of coefficients
    with pytest.raises(UnreadableImage, match="coefficients"):
        open_upright(bytes(data), size=224)


def srgb_profile(pad: int) -> bytes:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return profile + bytes([pad % 251]) * pad  # lcms reads the declared size; the rest is ballast


def test_huge_icc_profiles_are_ignored_and_the_cache_is_bounded():
    buf = io.BytesIO()
    asym_picture().save(buf, "JPEG", quality=95, icc_profile=srgb_profile(8 << 20))
    decoded = open_image(buf.getvalue())
    assert looks_upright(decoded.image) and any("profile" in n for n in decoded.notes)
    for i in range(12):  # 12 distinct 3 MB profiles, each under the per-profile limit
        buf = io.BytesIO()
        asym_picture().save(buf, "JPEG", quality=95, icc_profile=srgb_profile((3 << 20) + i))
        assert looks_upright(open_upright(buf.getvalue()))
    assert sum(n for _, n in imaging._ICC_CACHE.values()) <= imaging._ICC_CACHE_BYTES


MEMORY_PROBE = """
import sys
from upright import open_upright
def status(key):  # this process's own figures (ru_maxrss would include the parent's, from before exec)
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))
before = status("VmRSS")
img = open_upright(sys.argv[1], size=int(sys.argv[2]))
print(status("VmHWM") - before, img.size)
"""


@pytest.mark.slow
def test_sized_read_of_a_large_png_with_alpha_holds_one_decoded_copy(tmp_path):
    """4 bytes a pixel for the decoded file, then bands: the old path held 4 full copies."""
    w, h = 6000, 4000  # 24 MP grey+alpha: 96 MB decoded
    row = b"\x00" + b"\x80\xff" * w
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    path = tmp_path / "big.png"
    path.write_bytes(png_from([(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 4, 0, 0, 0)),
                               (b"IDAT", body), (b"IEND", b"")]))
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path), "224"], capture_output=True,
                         text=True, timeout=120)
    grew = int(out.stdout.split()[0])
    assert "(336, 224)" in out.stdout
    assert grew < 1.6 * 4 * w * h, grew


# ---- 6. the bomb limit admits 200 MP phones; one message per refusal -------------------------

def test_default_limit_admits_a_200_mp_phone_photo(tmp_path):
    assert imaging.DEFAULT_MAX_PIXELS == imaging.get_max_pixels()
    path = tmp_path / "samsung.png"
    path.write_bytes(grey_png(16320, 12240, bits=1))  # the 200 MP sensors' output size; ~0.4 MB
    facts = describe(path)
    assert facts.unreadable is None and facts.stored_size == (16320, 12240)


@pytest.mark.parametrize("w,h", [(16000, 16000), (60000, 60000)])
def test_bomb_refusal_quotes_one_limit(w, h):
    with pytest.raises(UnreadableImage) as info:
        open_upright(grey_png(w, h, bits=1) if w < 20000 else
                     png_from([(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)), (b"IEND", b"")]))
    reason = one_line_reason(info)
    assert reason.startswith("decompression bomb guard")
    assert reason.count("limit") == 1 and "could be decompression bomb" not in reason
    assert f"{w * h:,} pixels" in reason and f"{imaging.get_max_pixels():,}" in reason
