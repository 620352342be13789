"""Small datasets for the audit and fix tests (made in code, a few KB per file)."""

from __future__ import annotations

import shutil
from pathlib import Path

from fixtures import class_picture, make_dataset, write_photo


def confounded(root: Path, n: int = 20) -> Path:
    """'diet' shot on a phone that tags Orientation 6, 'zero' on one that stores pixels upright."""
    return make_dataset(root, n, ("diet", "zero"), orientation={"diet": 6, "zero": None})


def spread(root: Path, n: int = 20) -> Path:
    """Orientation tags 1, 3, 6, 8 spread evenly across both classes."""
    tags = (1, 3, 6, 8)
    for ci, label in enumerate(("diet", "zero")):
        for i in range(n):
            write_photo(root / label / f"{label}_{i:03d}.jpg", class_picture(ci, i), tags[i % 4])
    return root


def camera_leak(root: Path, n: int = 20) -> Path:
    for ci, (label, (make, model)) in enumerate({"cat": ("Apple", "iPhone 12"), "dog": ("Canon", "EOS 80D")}.items()):
        for i in range(n):
            write_photo(root / label / f"{label}_{i:03d}.jpg", class_picture(ci, i), 1, make=make, model=model)
    return root


def messy(root: Path, n: int = 12) -> Path:
    """Balanced classes plus the usual mess: an exact duplicate across labels and unreadable files."""
    make_dataset(root, n, ("cat", "dog"))
    shutil.copy(root / "cat" / "cat_000.jpg", root / "dog" / "dup_of_cat_000.jpg")
    (root / "cat" / "empty.jpg").write_bytes(b"")
    (root / "cat" / "notes.jpg").write_text("this is not a photo\n")
    data = (root / "dog" / "dog_001.jpg").read_bytes()
    (root / "dog" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    return root


def one_class_tagged(root: Path, n_classes: int, per: int = 15, share: float = 1.0, tag: int = 6) -> Path:
    """The seed's confound in any number of classes: `share` of class_00's photos stored sideways
    with EXIF `tag` (as a phone does), every other photo stored upright without a tag."""
    for ci in range(n_classes):
        label = f"class_{ci:02d}"
        k = round(share * per) if ci == 0 else 0
        for i in range(per):
            write_photo(root / label / f"{label}_{i:03d}.jpg", class_picture(ci, i, 48, 32), tag if i < k else None)
    return root


def random_tags(root: Path, n_classes: int, per: int = 15, seed: int = 0) -> Path:
    """A control: orientation tags (none, 6, 8, 3) drawn at random for every photo of every class."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for ci in range(n_classes):
        label = f"class_{ci:02d}"
        for i in range(per):
            tag = [None, None, 6, 8, 3][int(rng.integers(0, 5))]
            write_photo(root / label / f"{label}_{i:03d}.jpg", class_picture(ci, i, 48, 32), tag)
    return root
