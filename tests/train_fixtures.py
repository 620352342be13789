"""Shared helpers for the train/predict/eval tests: one tiny dataset and model per session."""

from __future__ import annotations

from pathlib import Path

from fixtures import class_picture, make_dataset, write_photo


def tiny_dataset(root: Path, n: int = 6, classes=("cat", "dog", "owl"), orientation=None) -> Path:
    return make_dataset(root, n_per_class=n, classes=classes, orientation=orientation)


def upright_photos(root: Path, classes=("cat", "dog", "owl"), start: int = 100, n: int = 2) -> dict[str, list[Path]]:
    """Fresh upright test photos (no tag), variants not used in training."""
    out = {}
    for ci, lab in enumerate(classes):
        out[lab] = [write_photo(root / lab / f"t{i}.jpg", class_picture(ci, start + i)) for i in range(n)]
    return out


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A model trained on a tiny dataset whose 'dog' photos are all stored sideways (tag 6)."""
    from upright.train import train_dataset

    root = tmp_path_factory.mktemp("trained")
    data = tiny_dataset(root / "data", orientation={"dog": 6})
    result = train_dataset(data, root / "model", progress=False)
    tests = upright_photos(root / "upright-tests")
    return {"root": root, "data": data, "model": root / "model", "result": result, "tests": tests}
