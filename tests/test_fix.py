"""`upright fix`: upright copies, lossless where possible, metadata kept, atomic in place."""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from fixtures import asym_picture, class_picture, encode, looks_upright, write_photo
from upright.fix import BACKUP_DIR, JPEGTRAN_OPS, fixed_bytes, run_fix
from upright.imaging import open_header, open_image, open_upright
from upright.metadata import describe
from upright.orientation import EXIF_UPRIGHT, ROTATIONS, exif_orientation, inverse, store_as, variant_image

needs_jpegtran = pytest.mark.skipif(shutil.which("jpegtran") is None, reason="jpegtran not installed")


def sha(p: Path) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def tree_hashes(root: Path) -> dict:
    return {str(p.relative_to(root)): sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


def pixels(img) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.int16)


def rich_jpeg(path: Path, orientation: int, size=(160, 128)) -> Path:
    """A camera-like JPEG: Make/Model/DateTime/GPS in EXIF, an ICC profile, XMP with the orientation."""
    img = asym_picture(*size)
    stored = store_as(img, orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Apple"
    exif[0x0110] = "iPhone 12"
    exif[0x0132] = "2024:05:01 12:00:00"
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (52.0, 31.0, 12.0)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="%d"/></rdf:RDF>'
           b"</x:xmpmeta>" % orientation)
    path.parent.mkdir(parents=True, exist_ok=True)
    stored.save(path, "JPEG", quality=92, exif=exif.tobytes(), icc_profile=icc, xmp=xmp)
    return path


@needs_jpegtran
@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_jpeg_lossless_rotation(tmp_path, orientation):
    src = write_photo(tmp_path / "d" / "a" / "x.jpg", class_picture(1, 2, 160, 128), orientation)
    r = run_fix(tmp_path / "d", out=tmp_path / "o", progress=False)
    (f,) = r["files"]
    assert f["method"] == "jpegtran-lossless" and f["action"] == "rotated" and f["note"] is None
    out = tmp_path / "o" / "a" / "x.jpg"
    d = open_image(out)
    assert d.orientation.pending == 1 and d.orientation.tag == 1
    # what a viewer shows is unchanged (libjpeg's integer IDCT is not exactly rotation-
    # equivariant, so decoded pixels may differ by a few levels; see the round trip below)
    diff = np.abs(pixels(d.image) - pixels(open_upright(src)))
    assert diff.max() <= 4 and diff.mean() < 0.5
    # lossless: turning the fixed file back with jpegtran gives the original pixels exactly
    undo = exif_orientation(inverse(EXIF_UPRIGHT[orientation]))
    back = subprocess.run(["jpegtran", "-perfect", *JPEGTRAN_OPS[undo], str(out)],
                          capture_output=True, check=True).stdout
    assert np.array_equal(pixels(open_image(back, orient=False).image), pixels(open_image(src, orient=False).image))


@needs_jpegtran
def test_metadata_kept_and_orientation_patched(tmp_path):
    src = rich_jpeg(tmp_path / "d" / "a" / "p.jpg", 6)
    run_fix(tmp_path / "d", out=tmp_path / "o", progress=False)
    out = tmp_path / "o" / "a" / "p.jpg"
    facts = describe(out)
    assert (facts.make, facts.model, facts.orientation_tag, facts.has_icc) == ("Apple", "iPhone 12", 1, True)
    assert facts.stored_size == facts.upright_size == describe(src).upright_size
    with open_header(out) as im, open_header(src) as orig:
        exif, oexif = im.getexif(), orig.getexif()
        assert exif[0x0132] == "2024:05:01 12:00:00"
        assert exif.get_ifd(0x8825) == oexif.get_ifd(0x8825) and exif.get_ifd(0x8825)
        assert im.info["icc_profile"] == orig.info["icc_profile"]
        xmp = im.info.get("xmp")
        assert xmp and b'tiff:Orientation="1"' in xmp
    assert looks_upright(open_upright(out)) and looks_upright(open_image(out, orient=False).image)


@needs_jpegtran
def test_jpeg_not_block_aligned_is_reencoded_and_said(tmp_path):
    src = rich_jpeg(tmp_path / "d" / "a" / "odd.jpg", 6, size=(100, 70))
    r = run_fix(tmp_path / "d", out=tmp_path / "o", progress=False)
    (f,) = r["files"]
    assert f["method"] == "reencode-jpeg-q95" and "not lossless" in f["note"] and r["lossy"] == [str(src)]
    out = tmp_path / "o" / "a" / "odd.jpg"
    assert looks_upright(open_image(out, orient=False).image)
    facts = describe(out)
    assert (facts.make, facts.orientation_tag, facts.has_icc) == ("Apple", 1, True)


@pytest.mark.parametrize("fmt,ext", [("PNG", "png"), ("WEBP", "webp"), ("TIFF", "tif")])
def test_other_formats_lossless(tmp_path, fmt, ext):
    kw = {"lossless": True} if fmt == "WEBP" else {}
    src = tmp_path / "d" / "a" / f"x.{ext}"
    src.parent.mkdir(parents=True)
    src.write_bytes(encode(asym_picture(), fmt, 6, make="Canon", model="EOS", **kw))
    r = run_fix(tmp_path / "d", out=tmp_path / "o", progress=False)
    (f,) = r["files"]
    assert f["action"] == "rotated" and f["method"].endswith("-lossless"), f
    out = tmp_path / "o" / "a" / f"x.{ext}"
    assert np.array_equal(pixels(open_upright(out)), pixels(open_upright(src)))
    assert np.array_equal(pixels(open_image(out, orient=False).image), pixels(open_upright(src)))
    facts = describe(out)
    assert facts.orientation == 1 and facts.make == "Canon" and facts.model == "EOS"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF"])
@pytest.mark.parametrize("tag", [1, 3, 5, 6, 8])
@pytest.mark.parametrize("turned", [90, 180, 270])
def test_sideways_content_is_turned_back_in_one_transform(tmp_path, fmt, tag, turned):
    """`--rotate-sideways`: a picture whose content looks turned `turned` degrees clockwise,
    stored with any tag, comes out upright (the tag's transform and the turn back as one)."""
    if fmt == "JPEG" and shutil.which("jpegtran") is None:
        pytest.skip("jpegtran not installed")
    looks_turned = variant_image(asym_picture(160, 128), ROTATIONS[turned])
    src = tmp_path / f"x.{fmt.lower()}"
    src.write_bytes(encode(looks_turned, fmt, tag))
    data, res = fixed_bytes(str(src), describe(src), turned)
    assert res.turned == turned and res.orientation == tag
    assert open_image(data).orientation.pending == 1
    assert looks_upright(open_image(data, orient=False).image)


def test_upright_files_copied_byte_for_byte_and_tree_mirrored(tmp_path):
    d = tmp_path / "d"
    write_photo(d / "a" / "up.jpg", asym_picture(), None)
    write_photo(d / "a" / "one.jpg", asym_picture(), 1)
    (d / "README.txt").write_text("notes")
    (d / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    r = run_fix(d, out=tmp_path / "o", progress=False)
    assert tree_hashes(d) == tree_hashes(tmp_path / "o")
    broken = [f for f in r["files"] if f["path"].endswith("broken.jpg")][0]
    assert "unreadable" in broken["note"]


@needs_jpegtran
def test_idempotent_dry_run_and_originals_untouched(tmp_path):
    d = tmp_path / "d"
    for o in (None, 3, 6, 8):
        write_photo(d / "a" / f"o{o}.jpg", class_picture(0, o or 0, 160, 128), o)
    before = tree_hashes(d)
    dry = run_fix(d, out=tmp_path / "o", dry_run=True, progress=False)
    assert dry["changed"] == 4 and not (tmp_path / "o").exists()
    first = run_fix(d, out=tmp_path / "o", progress=False)
    assert first["changed"] == 4 and tree_hashes(d) == before
    second = run_fix(d, out=tmp_path / "o", progress=False)
    assert second["changed"] == 0 and set(second["counts"]) == {"unchanged"}
    again = run_fix(tmp_path / "o", out=tmp_path / "o2", progress=False)
    assert set(again["counts"]) == {"copied"} and tree_hashes(tmp_path / "o") == tree_hashes(tmp_path / "o2")
    # in place: a dry run writes nothing, a run changes 3 files, a second run none
    assert run_fix(d, in_place=True, dry_run=True, progress=False)["changed"] == 3 and tree_hashes(d) == before
    assert run_fix(d, in_place=True, progress=False)["changed"] == 3
    assert run_fix(d, in_place=True, progress=False)["changed"] == 0
    for p in (d / "a").iterdir():
        got = open_image(p)
        assert got.orientation.pending == 1 and got.stored_size == (160, 128)


@needs_jpegtran
def test_in_place_keeps_a_way_back(tmp_path):
    d = tmp_path / "d"
    for i, o in enumerate((6, 3, None)):
        write_photo(d / "a" / f"{i}.jpg", class_picture(0, i, 160, 128), o)
    before = tree_hashes(d)
    run_fix(d, in_place=True, progress=False)
    backup = d / BACKUP_DIR
    manifest = (backup / "manifest.jsonl").read_text().splitlines()
    assert len(manifest) == 2
    assert sha(backup / "a" / "0.jpg") == before["a/0.jpg"]
    # undo as documented: cp -a DATA/.upright-originals/. DATA/
    subprocess.run(["cp", "-a", f"{backup}/.", f"{d}/"], check=True)
    shutil.rmtree(backup)
    (d / "manifest.jsonl").unlink()
    assert tree_hashes(d) == before


def _old_or_new(path: Path, old_sha: str) -> bool:
    if sha(path) == old_sha:
        return True
    d = open_image(path)
    return d.orientation.pending == 1 and d.stored_size == (128, 160)  # upright portrait


@needs_jpegtran
def test_interrupted_in_place_leaves_every_file_old_or_new(tmp_path, monkeypatch):
    d = tmp_path / "d"
    for i in range(6):
        write_photo(d / "a" / f"{i}.jpg", class_picture(0, i, 128, 160), 6)
    before = tree_hashes(d)
    real_replace, calls = os.replace, []

    def failing_replace(a, b):
        calls.append(b)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if killed mid-rename
        return real_replace(a, b)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(KeyboardInterrupt):
        run_fix(d, in_place=True, progress=False)
    monkeypatch.setattr(os, "replace", real_replace)
    states = {rel: sha(d / rel) == h for rel, h in before.items()}
    assert sum(not old for old in states.values()) == 2  # two done, the third left old
    assert all(_old_or_new(d / rel, h) for rel, h in before.items())
    assert not [p for p in (d / "a").iterdir() if p.name.endswith(".tmp")]
    r = run_fix(d, in_place=True, progress=False)
    assert r["changed"] == 4
    assert all(open_image(d / rel).orientation.pending == 1 for rel in before)


@needs_jpegtran
@pytest.mark.slow
def test_sigkill_mid_run_leaves_every_file_old_or_new(tmp_path):
    d = tmp_path / "d"
    for i in range(60):
        write_photo(d / "a" / f"{i:02d}.jpg", class_picture(0, i, 128, 160), 6)
    before = tree_hashes(d)
    code = "from upright.cli import main; main()"
    proc = subprocess.Popen([sys.executable, "-c", code, "fix", str(d), "--in-place", "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = d / BACKUP_DIR / "manifest.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and not (manifest.exists() and manifest.read_text().count("\n") >= 5):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sum(sha(d / rel) != h for rel, h in before.items())
    assert 0 < done < 60, done
    assert all(_old_or_new(d / rel, h) for rel, h in before.items())
    r = run_fix(d, in_place=True, progress=False)
    assert r["changed"] == 60 - done
    assert all(open_image(d / rel).orientation.pending == 1 for rel in before)


def test_cli_needs_out_or_in_place(tmp_path, capsys):
    from upright.cli import main

    write_photo(tmp_path / "d" / "a" / "x.jpg", asym_picture(), 6)
    with pytest.raises(SystemExit) as exc:
        main(["fix", str(tmp_path / "d")])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["fix", str(tmp_path / "d"), "--out", str(tmp_path / "d" / "inside")])
    assert exc.value.code == 2
    try:
        main(["fix", str(tmp_path / "d"), "--out", str(tmp_path / "o"), "--json"])
    except SystemExit as exc:
        assert not exc.code
    assert '"rotated": 1' in capsys.readouterr().out


# -- the way back, file by file (the studio's per-photo undo) ------------------------------------
def _three_fixed(tmp_path) -> tuple[Path, dict]:
    d = tmp_path / "d"
    for name in ("a", "b", "c"):
        write_photo(d / "x" / f"{name}.png", asym_picture(), 6, fmt="PNG")
    before = tree_hashes(d)
    run_fix(d, in_place=True, progress=False)
    return d, before


def test_undo_of_some_files_keeps_the_way_back_of_the_others(tmp_path):
    from upright.fix import fixed_paths, undo_fix

    d, before = _three_fixed(tmp_path)
    assert fixed_paths(d) == {"x/a.png", "x/b.png", "x/c.png"}
    r = undo_fix(d, paths=["x/a.png", d / "x" / "b.png", "x/nope.png"])
    assert r["restored"] == ["x/a.png", "x/b.png"] and not r["complete"]
    assert r["conflicts"] == [{"path": "x/nope.png", "reason": f"not in {BACKUP_DIR}/manifest.jsonl: nothing to undo"}]
    assert sha(d / "x" / "a.png") == before["x/a.png"] and sha(d / "x" / "b.png") == before["x/b.png"]
    assert sha(d / "x" / "c.png") != before["x/c.png"]  # still fixed, and its way back kept
    assert fixed_paths(d) == {"x/c.png"} and not r["backup_removed"]
    r = undo_fix(d, paths=["x/c.png"])  # the last one: nothing is left to keep
    assert r["restored"] == ["x/c.png"] and r["complete"] and r["backup_removed"]
    assert tree_hashes(d) == before and fixed_paths(d) == set()


def test_relocated_originals_follow_their_files(tmp_path):
    """A fixed file moved (or its folder renamed) keeps its way back where it is now: --undo
    never puts the original back at the old place beside the moved file."""
    from upright.fix import fixed_paths, relocate_originals, undo_fix

    d, before = _three_fixed(tmp_path)
    (d / "y").mkdir()
    os.replace(d / "x" / "a.png", d / "y" / "a.png")
    os.replace(d / "x", d / "z")
    assert relocate_originals(d, {"x/a.png": "y/a.png"}) == 1
    assert relocate_originals(d, {"x": "z"}) == 2
    assert fixed_paths(d) == {"y/a.png", "z/b.png", "z/c.png"}
    r = undo_fix(d, paths=["y/a.png"])
    assert r["restored"] == ["y/a.png"] and sha(d / "y" / "a.png") == before["x/a.png"]
    assert undo_fix(d)["complete"]
    assert not (d / "x").exists() and sha(d / "z" / "c.png") == before["x/c.png"]
    assert not (d / BACKUP_DIR).exists()
