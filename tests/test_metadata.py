"""describe(): per-file facts from headers, never a crash, no pixel decode for JPEG."""

from __future__ import annotations

from PIL import ImageFile
from fixtures import asym_picture, write_photo

from upright import describe


def test_describe_phone_photo(tmp_path):
    path = write_photo(tmp_path / "a.jpg", asym_picture(96, 64), 6, make="Apple", model="iPhone 15")
    facts = describe(path)
    assert facts.format == "JPEG" and facts.mode == "RGB"
    assert facts.orientation_tag == 6 and facts.orientation == 6 and facts.orientation_source == "exif"
    assert facts.stored_size == (64, 96) and facts.upright_size == (96, 64)
    assert facts.make == "Apple" and facts.camera == "Apple iPhone 15"
    assert facts.has_exif and facts.unreadable is None
    d = facts.to_dict()
    assert d["camera"] == "Apple iPhone 15" and d["file_size"] == path.stat().st_size


def test_describe_reads_headers_only(tmp_path, monkeypatch):
    path = write_photo(tmp_path / "a.jpg", asym_picture(), 8)
    calls = []
    real = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: calls.append(1) or real(self))
    facts = describe(path)
    assert facts.orientation == 8 and calls == []


def test_describe_no_exif_and_heif(tmp_path):
    facts = describe(write_photo(tmp_path / "plain.png", asym_picture(), None, fmt="PNG"))
    assert facts.orientation_tag is None and not facts.has_exif and facts.camera is None
    heic = describe(write_photo(tmp_path / "p.heic", asym_picture(96, 64), 6, fmt="HEIF", quality=90))
    assert heic.format == "HEIF" and heic.orientation_tag == 6
    assert heic.upright_size == (96, 64) and heic.stored_size == (64, 96)


def test_describe_bad_files_never_raise(tmp_path):
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("just words")
    assert "empty" in describe(tmp_path / "zero.jpg").unreadable
    assert "text" in describe(tmp_path / "text.jpg").unreadable
    assert "not found" in describe(tmp_path / "missing.jpg").unreadable


def test_describe_malformed_orientation_recorded(tmp_path):
    facts = describe(write_photo(tmp_path / "a.jpg", asym_picture(), 9))
    assert facts.orientation_tag == 9 and facts.orientation == 1 and "9" in facts.problem


def test_describe_tiff_sizes_follow_the_tag(tmp_path):
    facts = describe(write_photo(tmp_path / "t.tif", asym_picture(96, 64), 6, fmt="TIFF"))
    assert facts.orientation_tag == 6
    assert facts.stored_size == (64, 96) and facts.upright_size == (96, 64)
