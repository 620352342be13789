"""files.py: one rule for what a folder holds (hidden files, symlinks, loops) and one file hash."""

import hashlib
import os
import threading

from fixtures import make_dataset
from upright import scan
from upright.files import file_sha256, image_files, is_image_name, walk_files
from upright.fix import run_fix
from upright.predict import expand


def finishes(fn, *args, seconds: float = 60.0):
    """fn(*args), or an AssertionError when it has not returned within `seconds` (a loop)."""
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("value", fn(*args)), daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{getattr(fn, '__name__', fn)} did not finish: it loops"
    return box["value"]


def test_sha256_and_image_names(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(os.urandom(3 << 20))  # more than one read block
    assert file_sha256(p) == hashlib.sha256(p.read_bytes()).hexdigest()
    assert is_image_name("a/B.JPG") and is_image_name("c.heic") and not is_image_name("notes.txt")


def test_hidden_and_non_images_reported(tmp_path):
    root = make_dataset(tmp_path / "d", n_per_class=2, classes=("a",))
    (root / "a" / ".DS_Store").write_bytes(b"x")
    (root / "a" / ".git").mkdir()
    (root / "a" / ".git" / "x.jpg").write_bytes(b"x")
    (root / "a" / "notes.txt").write_text("hi")
    os.symlink(root / "a" / "gone.jpg", root / "a" / "dangling.jpg")
    skipped: list = []
    found = image_files(root / "a", skipped)
    assert [p.name for p in found] == ["a_000.jpg", "a_001.jpg"]
    why = {os.path.basename(p): r for p, r in skipped}
    assert why == {".DS_Store": "hidden file", ".git": "hidden folder",
                   "notes.txt": "not an image file extension (.txt)",
                   "dangling.jpg": "not a regular file (broken link?)"}


def test_symlink_rules_cannot_loop(tmp_path):
    root = make_dataset(tmp_path / "d", n_per_class=2, classes=("a", "b"))
    outside = make_dataset(tmp_path / "outside", n_per_class=1, classes=("o",))
    os.symlink("..", root / "a" / "up")  # `ln -s ..`: a loop through the parent
    os.symlink(root / "a", root / "a" / "self")  # a loop onto itself
    os.symlink(root / "b", root / "a" / "b_too")  # inside the tree: read where it is
    os.symlink(outside / "o", root / "a" / "ext")  # outside the tree: followed once
    os.symlink(outside / "o", root / "a" / "ext_again")  # ... and not twice
    skipped: list = []
    files = finishes(walk_files, root, skipped)
    assert sorted(str(p.relative_to(root)) for p in files) == [
        "a/a_000.jpg", "a/a_001.jpg", "a/ext/o_000.jpg", "b/b_000.jpg", "b/b_001.jpg"]
    why = {os.path.relpath(p, root): r for p, r in skipped}
    assert why == {"a/up": "symlink loop: links to a folder above it",
                   "a/self": "symlink loop: links to a folder above it",
                   "a/b_too": "symlink to a folder inside the tree (read where it is)",
                   "a/ext_again": "folder already scanned through another link"}


def test_every_verb_walks_a_parent_link_once(tmp_path):
    """`ln -s ..` inside a folder: scan, predict's folder expansion and fix all finish."""
    root = make_dataset(tmp_path / "d", n_per_class=2, classes=("a", "b"))
    os.symlink("..", root / "a" / "up")
    assert finishes(scan, root).counts() == {"a": 2, "b": 2}
    got = finishes(expand, [root])
    assert sorted(os.path.relpath(p, root) for p in got) == ["a/a_000.jpg", "a/a_001.jpg", "b/b_000.jpg",
                                                            "b/b_001.jpg"]
    result = finishes(lambda: run_fix(root, out=tmp_path / "o", progress=False))
    assert sorted(f["dest"] for f in result["files"]) == sorted(str(tmp_path / "o" / os.path.relpath(p, root))
                                                                for p in got)


def test_excluded_folder_is_never_entered(tmp_path):
    """fix --out: a link inside the data that leads into the output folder is not followed."""
    root = make_dataset(tmp_path / "d", n_per_class=1, classes=("a",))
    out = make_dataset(tmp_path / "o", n_per_class=1, classes=("a",))
    os.symlink(out / "a", root / "a" / "to_out")
    skipped: list = []
    assert [p.name for p in walk_files(root, skipped, exclude=(out,))] == ["a_000.jpg"]
    assert skipped == [(str(root / "a" / "to_out"), "excluded folder")]
