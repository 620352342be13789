"""The one door: every orientation in every format comes back upright, bad input fails cleanly."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, JpegImagePlugin
from fixtures import (BLUE, GREEN, RED, YELLOW, asym_picture, corners, encode, exif_bytes, looks_upright,
                      same_colour)

from upright import UnreadableImage, open_image, open_stored, open_upright
from upright import imaging

ORIENTATIONS = range(1, 9)
FORMATS = {
    "JPEG": {},
    "PNG": {},
    "WEBP": {"lossless": True},
    "TIFF": {},
    "TIFF-deflate": {"compression": "tiff_deflate"},
    "HEIF": {"quality": 95},
    "AVIF": {"quality": 95},
}


def _encode(fmt: str, orientation: int | None, img=None) -> bytes:
    img = img or asym_picture()
    return encode(img, fmt.split("-")[0], orientation, **FORMATS[fmt])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_every_orientation_every_format_is_upright(fmt, orientation):
    data = _encode(fmt, orientation)
    decoded = open_image(data)
    assert looks_upright(decoded.image), (fmt, orientation, corners(decoded.image))
    # A tag of 1 may be dropped by the encoder (HEIF, AVIF): absent and 1 mean the same.
    assert decoded.orientation.tag == orientation or (orientation == 1 and decoded.orientation.tag is None)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("orientation", [1, 6, 8, 3, 5])
def test_sized_decode_is_upright_with_exact_short_side(fmt, orientation):
    img = open_upright(_encode(fmt, orientation, asym_picture(480, 320)), size=64)
    assert min(img.size) == 64 and img.size == (96, 64)
    assert looks_upright(img)


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF", "HEIF"])
def test_stored_view_ignores_the_tag(fmt):
    data = _encode(fmt, 6)
    assert open_image(data).stored_size == (64, 96)
    stored = open_stored(data)
    assert stored.size == (64, 96)  # portrait pixels for a landscape picture
    assert not looks_upright(stored)
    assert looks_upright(stored.transpose(Image.Transpose.ROTATE_270))


def test_png_legacy_raw_profile_exif_text():
    img = imaging.store_as(asym_picture(), 6)
    hexdata = exif_bytes(6).hex()
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Raw profile type exif", f"\nexif\n{len(hexdata) // 2}\n{hexdata}\n")
    buf = io.BytesIO()
    img.save(buf, "PNG", pnginfo=info)
    assert looks_upright(open_upright(buf.getvalue()))


def _xmp(orientation: int) -> bytes:
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="{orientation}"/>'
        "</rdf:RDF></x:xmpmeta>"
    ).encode()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_xmp_orientation_when_there_is_no_exif_tag(fmt):
    img = imaging.store_as(asym_picture(), 8)
    buf = io.BytesIO()
    if fmt == "PNG":
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", _xmp(8).decode())
        img.save(buf, "PNG", pnginfo=info)
    else:
        img.save(buf, "JPEG", quality=95, xmp=_xmp(8))
    decoded = open_image(buf.getvalue())
    assert decoded.orientation.tag == 8 and decoded.orientation.source == "xmp"
    assert looks_upright(decoded.image)


def test_mpo_first_frame_upright():
    frames = [imaging.store_as(asym_picture(), 6), imaging.store_as(asym_picture(), 6)]
    buf = io.BytesIO()
    frames[0].save(buf, "MPO", save_all=True, append_images=frames[1:], exif=exif_bytes(6), quality=95)
    decoded = open_image(buf.getvalue())
    assert decoded.format == "MPO"
    assert looks_upright(decoded.image)
    assert looks_upright(open_upright(buf.getvalue(), size=32))


@pytest.mark.parametrize("bad", [0, 9, 65535])
def test_out_of_range_orientation_is_upright_with_a_reason(bad):
    exif = Image.Exif()
    exif[0x0112] = bad
    buf = io.BytesIO()
    asym_picture().save(buf, "JPEG", quality=95, exif=exif.tobytes())
    decoded = open_image(buf.getvalue())
    assert looks_upright(decoded.image)
    assert decoded.orientation.pending == 1
    assert any(str(bad) in n for n in decoded.notes)


def test_wrong_type_orientation_is_upright_with_a_reason():
    # Hand-made IFD: Orientation stored as ASCII "six" instead of a SHORT.
    ifd = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHI4s", 0x0112, 2, 4, b"six\x00") + b"\x00" * 4
    buf = io.BytesIO()
    asym_picture().save(buf, "JPEG", quality=95, exif=b"Exif\x00\x00" + ifd)
    decoded = open_image(buf.getvalue())
    assert looks_upright(decoded.image) and decoded.notes


def test_broken_exif_ifd_never_crashes():
    good = exif_bytes(6)
    # An IFD offset pointing far past the end and garbage entries.
    broken = good[:6] + b"MM\x00\x2a\xff\xff\xff\xf0" + b"\xde\xad" * 20
    buf = io.BytesIO()
    asym_picture().save(buf, "JPEG", quality=95, exif=broken)
    decoded = open_image(buf.getvalue())
    assert decoded.image.size == (96, 64)
    assert decoded.orientation.pending == 1


def test_dct_scaled_decode_matches_full_decode_and_uses_draft(monkeypatch):
    rng = np.random.default_rng(0)
    base = np.kron(rng.integers(0, 255, (6, 8, 3)), np.ones((250, 250, 1))).astype(np.uint8)  # 2000x1500
    big = Image.fromarray(base, "RGB")
    data = encode(big, "JPEG", 6)
    scales = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = real_draft(self, mode, size)
        scales.append(self.decoderconfig[0] if self.decoderconfig else 1)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    fast = open_upright(data, size=180)
    assert scales == [8]  # 1500 / 8 = 187 >= 180: the largest reduction that keeps the short side
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", real_draft)
    full = open_upright(data).resize(fast.size, Image.Resampling.BICUBIC)
    assert fast.size == (240, 180)
    diff = np.abs(np.asarray(fast, np.int16) - np.asarray(full, np.int16)).mean()
    assert diff < 4, diff


def test_cmyk_jpeg_including_adobe_inverted_comes_back_as_rgb():
    rgb = asym_picture()
    cmyk = rgb.convert("CMYK")
    buf = io.BytesIO()
    cmyk.save(buf, "JPEG", quality=95)  # Pillow writes an Adobe marker: inverted CMYK on disk
    decoded = open_image(buf.getvalue())
    assert decoded.mode == "CMYK" and decoded.image.mode == "RGB"
    assert looks_upright(decoded.image)


def test_16_bit_grey_is_scaled_not_clipped_white():
    ramp = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, "PNG")
    img = open_upright(buf.getvalue())
    arr = np.asarray(img)[..., 0].astype(int)
    assert img.mode == "RGB"
    assert arr.min() <= 2 and arr.max() >= 253
    assert 100 < arr[24, 32] < 160  # the middle of the ramp is mid-grey, not white


def test_palette_with_transparency_and_rgba_composite_on_white():
    rgba = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    rgba.paste((200, 0, 0, 255), (0, 0, 20, 30))
    for img in (rgba, rgba.convert("P")):
        buf = io.BytesIO()
        img.save(buf, "PNG")
        out = open_upright(buf.getvalue())
        assert same_colour(out.getpixel((35, 15)), (255, 255, 255), 5)
        assert same_colour(out.getpixel((5, 15)), (200, 0, 0), 10)
    la = Image.new("LA", (10, 10), (0, 0))
    buf = io.BytesIO()
    la.save(buf, "PNG")
    assert open_upright(buf.getvalue()).getpixel((5, 5)) == (255, 255, 255)


def test_grey_and_bilevel_become_rgb():
    for mode in ("L", "1"):
        buf = io.BytesIO()
        Image.new(mode, (8, 8), 1 if mode == "1" else 200).save(buf, "PNG")
        out = open_upright(buf.getvalue())
        assert out.mode == "RGB" and out.getpixel((1, 1))[0] == out.getpixel((1, 1))[2]


def test_animated_gif_gives_the_first_frame():
    frames = [Image.new("RGB", (20, 20), c) for c in [(250, 0, 0), (0, 0, 250)]]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    out = open_upright(buf.getvalue())
    assert out.getpixel((5, 5))[0] > 200 and out.getpixel((5, 5))[2] < 60


def test_icc_profiles_converted_and_broken_ones_ignored_with_a_note():
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buf = io.BytesIO()
    asym_picture().save(buf, "PNG", icc_profile=srgb)
    assert looks_upright(open_upright(buf.getvalue()))
    buf = io.BytesIO()
    asym_picture().save(buf, "JPEG", quality=95, icc_profile=b"not a profile at all" * 10)
    decoded = open_image(buf.getvalue())
    assert looks_upright(decoded.image)
    assert any("profile" in n for n in decoded.notes)


def test_cmyk_with_icc_profile_is_colour_managed():
    # A Lab profile stands in for a CMYK one here is not possible; use a CMYK JPEG whose
    # embedded profile is broken: it must still decode through the naive path.
    buf = io.BytesIO()
    asym_picture().convert("CMYK").save(buf, "JPEG", quality=95, icc_profile=b"\x00" * 200)
    decoded = open_image(buf.getvalue())
    assert looks_upright(decoded.image)


def _png_with_size(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _truncated_jpeg() -> bytes:
    data = encode(asym_picture(400, 300), "JPEG")
    return data[: len(data) // 2]


BAD_INPUTS = {
    "zero bytes": (b"", "empty"),
    "truncated jpeg": (_truncated_jpeg(), "truncated"),
    "text named .jpg": (b"hello, this is a text file\nnot a photo\n", "text"),
    "random bytes": (bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)), "not an image"),
    "decompression bomb": (_png_with_size(60000, 60000), "decompression bomb"),
    "jpeg header only": (encode(asym_picture(), "JPEG")[:200], ""),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_raises_one_line_reason(name, tmp_path):
    data, words = BAD_INPUTS[name]
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    with pytest.raises(UnreadableImage) as info:
        open_upright(path, size=64)
    reason = info.value.reason
    assert "\n" not in reason and len(reason) < 300
    assert words in reason.lower()
    assert info.value.path == str(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(UnreadableImage, match="not found"):
        open_upright(tmp_path / "nope.jpg")
    with pytest.raises(UnreadableImage, match="folder"):
        open_upright(tmp_path)


def test_bomb_limit_can_be_raised_and_lowered():
    data = encode(asym_picture(), "PNG")
    old = imaging.get_max_pixels()
    try:
        imaging.set_max_pixels(1000)
        with pytest.raises(UnreadableImage, match="UPRIGHT_MAX_PIXELS"):
            open_upright(data)
        imaging.set_max_pixels(10_000)
        assert open_upright(data).size == (96, 64)
    finally:
        imaging.set_max_pixels(old)


def test_real_world_exif_orientation_examples(shared_data):
    folder = shared_data / "exif-orientation-examples"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    for kind in ("Landscape", "Portrait"):
        ref = np.asarray(open_upright(folder / f"{kind}_1.jpg", size=64), np.int16)
        for i in range(0, 9):
            img = open_upright(folder / f"{kind}_{i}.jpg", size=64)
            got = np.asarray(img, np.int16)
            assert got.shape == ref.shape, (kind, i)
            assert np.abs(got - ref).mean() < 12, (kind, i)


def test_corner_colours_reference_is_asymmetric():
    # Guards the fixture itself: every flip or rotation changes the corners.
    img = asym_picture()
    assert corners(img) == [RED, GREEN, BLUE, YELLOW]
    for k in range(2, 9):
        assert not looks_upright(imaging.store_as(img, k).resize(img.size))
