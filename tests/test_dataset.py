"""scan(): folder-per-class trees, stable splits, hidden/non-image files reported, no loops."""

from __future__ import annotations

import os
import shutil

import pytest
from fixtures import make_dataset

from upright import UprightError, scan


def test_folder_per_class_with_stable_hash_split(tmp_path):
    root = make_dataset(tmp_path / "data", n_per_class=20, classes=("b_dog", "a_cat"))
    ds = scan(root)
    assert ds.labels == ["a_cat", "b_dog"]
    assert len(ds.records) == 40 and ds.counts() == {"a_cat": 20, "b_dog": 20}
    assert 0 < len(ds.val) < 20 and len(ds.train) + len(ds.val) == 40
    # Same bytes, same split: a renamed, re-ordered copy elsewhere splits identically.
    copy = tmp_path / "copy"
    for r in ds.records:
        dst = copy / r.label / ("zz_" + r.path.name[::-1])
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(r.path, dst)
    by_hash = {r.sha256: r.split for r in ds.records}
    assert all(by_hash[r.sha256] == r.split for r in scan(copy).records)


def test_explicit_train_val_layout(tmp_path):
    make_dataset(tmp_path / "d" / "train", n_per_class=3)
    make_dataset(tmp_path / "d" / "val", n_per_class=2)
    ds = scan(tmp_path / "d")
    assert ds.explicit_split and ds.labels == ["cat", "dog"]
    assert len(ds.train) == 6 and len(ds.val) == 4


def test_hidden_non_image_and_loose_files_are_reported(tmp_path):
    root = make_dataset(tmp_path / "d", n_per_class=2)
    (root / "cat" / ".DS_Store").write_bytes(b"x")
    (root / "cat" / "notes.txt").write_text("hi")
    (root / "README.md").write_text("hi")
    (root / ".git").mkdir()
    ds = scan(root)
    reasons = dict(ds.skipped)
    assert len(ds.records) == 4
    assert reasons[str(root / "cat" / ".DS_Store")] == "hidden file"
    assert "extension" in reasons[str(root / "cat" / "notes.txt")]
    assert reasons[str(root / "README.md")] == "not inside a class folder"


def test_symlinks_followed_once_no_loop(tmp_path):
    root = make_dataset(tmp_path / "d", n_per_class=2)
    os.symlink(root / "cat", root / "cat" / "loop")
    os.symlink(tmp_path / "d" / "dog", root / "cat" / "dogs_too")
    ds = scan(root)
    assert ds.counts()["cat"] == 4  # its own 2 + the linked dog folder once
    assert any("loop" in reason for _, reason in ds.skipped)


def test_missing_or_empty_root(tmp_path):
    with pytest.raises(UprightError, match="no such folder"):
        scan(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UprightError, match="no class folders"):
        scan(tmp_path / "empty")
