"""describe()'s capture facts (JPEG quality, capture day, software, GPS, colour profile, bit depth):
read from headers only, each from files made here, each with plain words in the audit."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile

from fixtures import class_picture, write_photo
from upright import describe
from upright.audit import run_audit
from upright.audit.leakage import ATTRIBUTE_WORDS, attributes_of, describe_value
from upright.imaging import open_image

EXIF_IFD, GPS_IFD = 0x8769, 0x8825


def exif_with(software=None, taken=None, gps=False) -> bytes:
    ex = Image.Exif()
    if software:
        ex[0x0131] = software
    if taken:
        ex.get_ifd(EXIF_IFD)[0x9003] = taken
    if gps:
        ex.get_ifd(GPS_IFD).update({1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)})
    return ex.tobytes()


def with_description(profile: bytes, text: str) -> bytes:
    """An ICC profile with its description ('desc', mluc) replaced: how an iPhone's Display P3 reads."""
    s = text.encode("utf-16-be")
    tag = b"mluc" + bytes(4) + struct.pack(">II", 1, 12) + b"enUS" + struct.pack(">II", len(s), 28) + s
    tag += bytes(-len(tag) % 4)
    body = bytearray(profile + bytes(-len(profile) % 4))
    offset = len(body)
    for i in range(struct.unpack(">I", profile[128:132])[0]):
        at = 132 + 12 * i
        if body[at:at + 4] == b"desc":
            body[at + 4:at + 12] = struct.pack(">II", offset, len(tag))
    body += tag
    body[0:4] = struct.pack(">I", len(body))
    return bytes(body)


SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
P3 = with_description(SRGB, "Display P3")


def picture(w=64, h=48):
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "RGB")


def save(path, img, fmt="JPEG", **kw):
    img.save(path, fmt, **kw)
    return path


@pytest.mark.parametrize("quality", [35, 70, 92, 100])
def test_jpeg_quality_from_the_quantisation_tables(tmp_path, quality):
    facts = describe(save(tmp_path / "q.jpg", picture(), quality=quality))
    assert facts.jpeg_quality == quality
    assert attributes_of(facts)["jpeg_quality"] == {35: "q<=50", 70: "q51-70", 92: "q91-95", 100: "q96-100"}[quality]


def test_jpeg_quality_of_custom_tables_and_of_other_formats(tmp_path):
    flat = [[3] * 64, [5] * 64]  # an encoder with its own tables (phones, editors)
    a = describe(save(tmp_path / "a.jpg", picture(), qtables=flat))
    b = describe(save(tmp_path / "b.jpg", picture(80, 60), qtables=flat))
    assert a.jpeg_quality is not None and 1 <= a.jpeg_quality <= 100 and a.jpeg_quality == b.jpeg_quality
    png = describe(save(tmp_path / "p.png", picture(), "PNG"))
    assert png.jpeg_quality is None and attributes_of(png)["jpeg_quality"] == "not JPEG"


def test_capture_day_software_and_gps(tmp_path):
    f = describe(save(tmp_path / "e.jpg", picture(), exif=exif_with("Adobe Photoshop 25.0 (Macintosh)",
                                                                        "2023:05:14 15:02:11", gps=True)))
    assert f.capture_date == "2023-05-14" and f.software == "Adobe Photoshop 25.0 (Macintosh)" and f.gps
    bare = describe(save(tmp_path / "n.jpg", picture()))
    assert bare.capture_date is None and bare.software is None and not bare.gps
    placeholder = describe(save(tmp_path / "z.jpg", picture(), exif=exif_with(taken="0000:00:00 00:00:00")))
    assert placeholder.capture_date is None  # cameras with no clock write zeros
    a = attributes_of(f)
    assert (a["capture_date"], a["software"], a["gps"]) == ("2023-05-14", "Adobe Photoshop 25.0 (Macintosh)", "yes")


def test_colour_profiles(tmp_path):
    p3 = describe(save(tmp_path / "p3.jpg", picture(), icc_profile=P3))
    srgb = describe(save(tmp_path / "s.jpg", picture(), icc_profile=SRGB))
    none = describe(save(tmp_path / "n.jpg", picture()))
    junk = describe(save(tmp_path / "j.jpg", picture(), icc_profile=b"not a profile" * 20))
    assert p3.color_profile == "Display P3" and srgb.color_profile == "sRGB built-in"
    assert none.color_profile is None and junk.color_profile == "ICC (unreadable)"
    assert open_image(tmp_path / "p3.jpg").image.size == (64, 48)  # the pixels still come through the door
    heif = describe(write_photo(tmp_path / "h.heic", picture(), None, fmt="HEIF", quality=80))
    assert heif.color_profile == "sRGB (nclx)" and heif.bit_depth == 8


def test_bit_depths(tmp_path):
    assert describe(save(tmp_path / "a.jpg", picture())).bit_depth == 8
    sixteen = Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20)
    assert describe(save(tmp_path / "b.png", sixteen, "PNG")).bit_depth == 16
    assert describe(save(tmp_path / "c.png", picture().convert("1"), "PNG")).bit_depth == 1
    assert describe(save(tmp_path / "d.png", picture().quantize(16), "PNG", bits=4)).bit_depth == 4
    assert describe(save(tmp_path / "e.tif", picture(), "TIFF")).bit_depth == 8


def test_capture_facts_read_no_pixels(tmp_path, monkeypatch):
    path = save(tmp_path / "a.jpg", picture(), quality=80, icc_profile=P3,
                exif=exif_with("16.5", "2024:01:02 03:04:05", gps=True))
    calls = []
    real = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: calls.append(1) or real(self))
    f = describe(path)
    assert calls == [] and (f.jpeg_quality, f.capture_date, f.software, f.gps, f.color_profile, f.bit_depth) == (
        80, "2024-01-02", "16.5", True, "Display P3", 8)


def test_every_attribute_has_plain_words():
    samples = {"jpeg_quality": "q91-95", "capture_date": "2023-05-14", "software": "Snapseed", "gps": "yes",
               "color_profile": "Display P3", "bit_depth": "16"}
    words = {a: describe_value(a, v) for a, v in samples.items()}
    assert words == {"jpeg_quality": "JPEG quality 91-95", "capture_date": "shot on 2023-05-14",
                     "software": "written by software 'Snapseed'", "gps": "with a GPS position",
                     "color_profile": "tagged with colour profile 'Display P3'", "bit_depth": "16 bits per channel"}
    assert all(a in ATTRIBUTE_WORDS for a in samples)


def _dataset(root, per=16, classes=("a", "b", "c"), **by_class):
    """JPEGs per class; by_class maps a label to save() keyword arguments for that class."""
    for ci, label in enumerate(classes):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per):
            kw = {"quality": 90, **by_class.get(label, {})}
            save(root / label / f"{label}_{i:03d}.jpg", class_picture(ci, i, 64, 48), **kw)
    return root


@pytest.mark.parametrize("attribute, kw, words", [
    ("software", {"exif": exif_with("Snapseed 2.0")}, "written by software 'Snapseed 2.0'"),
    ("capture_date", {"exif": exif_with(taken="2024:06:01 16:20:00")}, "shot on 2024-06-01"),
    ("jpeg_quality", {"quality": 60}, "JPEG quality 51-70"),
    ("color_profile", {"icc_profile": P3}, "tagged with colour profile 'Display P3'"),
    ("gps", {"exif": exif_with(gps=True)}, "with a GPS position"),
])
def test_one_class_apart_is_a_finding_in_plain_words(tmp_path, attribute, kw, words):
    r = run_audit(_dataset(tmp_path / "d", a=kw), content=False, progress=False)
    leaks = [f for f in r["findings"] if f["kind"] == "label_leak"]
    host = [f for f in leaks if f["attribute"] == attribute or attribute in f["also"]]
    assert host and host[0]["severity"] in ("warning", "error"), [f["message"] for f in leaks]
    f = [f for f in leaks if f["attribute"] == attribute]
    if f:  # named itself (not folded into an attribute carrying the same split)
        assert f"100% of 'a' photos are {words} vs 0% of the other 2 classes" in f[0]["message"]
        assert f[0]["class"] == "a"
