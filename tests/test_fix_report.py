"""`upright fix` output: a summary by default, rows with --verbose, one vocabulary for both;
a copy is never called a fix, and a re-run says "already" in its rows and its summary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fixtures import class_picture, write_photo

needs_jpegtran = pytest.mark.skipif(shutil.which("jpegtran") is None, reason="jpegtran not installed")




def words(cli, *argv):
    """Run `upright ARGV` -> (code, stdout with whitespace collapsed, stderr): rich wraps lines."""
    code, out, err = cli(*argv)
    return code, " ".join(out.split()), err


@pytest.fixture
def data(tmp_path):
    d = tmp_path / "d"
    for i in range(3):
        write_photo(d / "a" / f"sideways{i}.jpg", class_picture(0, i, 160, 128), 6)
    for i in range(4):
        write_photo(d / "a" / f"upright{i}.jpg", class_picture(0, 10 + i, 160, 128))
    (d / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    (d / "notes.txt").write_text("hello")
    return d


@needs_jpegtran
def test_out_summary_rows_and_rerun(data, tmp_path, cli):
    out = tmp_path / "o"
    code, text, _ = words(cli, "fix", data, "--out", out)
    assert code == 0
    assert f"upright fix -> {out}: 3 fixed (3 rotated), 6 copied as is (1 unreadable, 1 not an image)." in text
    assert "sideways0.jpg" not in text  # a summary, not rows
    code, text, _ = words(cli, "fix", data, "--out", out, "--verbose")
    assert code == 0
    assert f"upright fix -> {out}: nothing written; 3 already fixed (3 rotated), 6 already copied" in text
    assert text.count("already fixed") == 3 + 1 and text.count("already copied") == 6 + 1  # rows + summary
    assert "copied unchanged" not in text and " fixed (3 rotated), 6 copied" not in text
    code, text, _ = words(cli, "fix", data, "--out", out, "--json")
    d = json.loads(text)
    assert d["changed"] == 0 and d["outcomes"] == {"already fixed": 3, "already copied": 6}
    assert {f["outcome"] for f in d["files"]} == {"already fixed", "already copied"}


@needs_jpegtran
def test_in_place_dry_run_and_rerun(data, cli):
    code, text, _ = words(cli, "fix", data, "--in-place", "--dry-run")
    assert "(dry run: nothing written): 3 to fix (3 rotated), 5 left as is (1 unreadable), 1 skipped" in text
    code, text, _ = words(cli, "fix", data, "--in-place")
    assert "upright fix in place: 3 fixed (3 rotated), 5 left as is" in text and "To undo" in text
    code, text, _ = words(cli, "fix", data, "--in-place", "--verbose")
    assert "nothing written; 8 left as is (1 unreadable), 1 skipped (1 not an image)." in text
    assert text.count("left as is") == 9  # 8 rows + the summary


# -- why a JPEG was re-encoded, in the summary (not only --verbose), in the dry run's words -----------
def test_without_jpegtran_the_summary_says_so_and_what_installing_it_changes(data, tmp_path, cli, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))  # a PATH without jpegtran
    code, text, _ = words(cli, "fix", data, "--in-place", "--dry-run")
    assert code == 0 and "3 JPEGs would be re-encoded at quality 95, not turned losslessly: jpegtran is " \
                          "not installed. With it, fix turns a JPEG without re-encoding it" in text
    assert "sudo apt-get install libjpeg-turbo-progs" in text and "brew install jpeg-turbo" in text
    assert "3 to fix (3 rotated, 3 to re-encode, not lossless)" in text
    assert " were " not in text and "To redo" not in text
    code, text, _ = words(cli, "fix", data, "--out", tmp_path / "o")
    assert "3 JPEGs were re-encoded at quality 95, not turned losslessly: jpegtran is not installed" in text
    assert "To redo" not in text  # a later run over the same OUT is lossless by itself
    code, text, _ = words(cli, "fix", data, "--in-place")
    assert "3 JPEGs were re-encoded" in text and f"To redo them losslessly: upright fix {data} --undo" in text


@needs_jpegtran
def test_a_jpeg_no_lossless_turn_fits_is_named_precisely(tmp_path, cli):
    d = tmp_path / "d"
    write_photo(d / "a" / "odd.jpg", class_picture(0, 1, 100, 70), 6)  # 70 px: not a multiple of 8 or 16
    write_photo(d / "a" / "even.jpg", class_picture(0, 2, 160, 128), 6)
    code, text, _ = words(cli, "fix", d, "--out", tmp_path / "o", "--dry-run")
    assert "1 JPEG would be re-encoded at quality 95: a width or height that is not a multiple of the JPEG " \
           "block (8 or 16 px) leaves no lossless turn (jpegtran -perfect refuses it)." in text
    assert "not installed" not in text and " was " not in text
    code, text, _ = words(cli, "fix", d, "--out", tmp_path / "o", "--json")
    reasons = {Path(f["path"]).name: f["reencoded"] for f in json.loads(text)["files"]}
    assert reasons == {"odd.jpg": "imperfect", "even.jpg": None}
    code, text, _ = words(cli, "fix", d, "--out", tmp_path / "o2")
    assert "1 JPEG was re-encoded at quality 95: a width or height" in text
