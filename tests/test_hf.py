"""upright.hf: an Image(decode=False) column of a real in-memory `datasets.Dataset`, decoded upright."""

from __future__ import annotations

import pytest
from fixtures import asym_picture, encode, looks_upright, write_photo

from upright.errors import UnreadableImage, UprightError

datasets = pytest.importorskip("datasets")
import upright.hf  # noqa: E402


def _dataset(extra=()):
    pic = asym_picture()
    rows = [encode(pic, orientation=o) for o in (1, 3, 6, 8)] + list(extra)
    ds = datasets.Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in rows],
                                     "label": list(range(len(rows)))})
    return ds.cast_column("image", datasets.Image(decode=False))


def test_with_transform_decodes_upright():
    ds = _dataset().with_transform(upright.hf.decode("image"))
    batch = ds[0:4]
    assert batch["label"] == [0, 1, 2, 3]
    assert all(looks_upright(img) and img.mode == "RGB" for img in batch["image"])
    assert looks_upright(ds[2]["image"])  # one row: the same transform
    small = _dataset().with_transform(upright.hf.decode("image", size=32))[1]["image"]
    assert small.size == (48, 32) and looks_upright(small)


def test_map_batched_and_not_writes_upright_pixels(tmp_path):
    ds = _dataset()
    for batched in (False, True):
        out = ds.map(upright.hf.decode("image", output_column="upright"), batched=batched)
        out = out.cast_column("upright", datasets.Image())  # stored re-encoded, upright
        assert all(looks_upright(r["upright"]) for r in out), batched
    p = write_photo(tmp_path / "tagged.jpg", asym_picture(), 6)  # a cell holding a path only
    by_path = datasets.Dataset.from_dict({"image": [{"bytes": None, "path": str(p)}]}).cast_column(
        "image", datasets.Image(decode=False))
    assert looks_upright(by_path.with_transform(upright.hf.decode())[0]["image"])


def test_unreadable_cells_raise_one_line_or_become_none_and_filter_drops_them():
    ds = _dataset(extra=[b"this is not an image"])
    with pytest.raises(UnreadableImage, match="not an image"):
        ds.with_transform(upright.hf.decode())[4]
    with pytest.warns(UserWarning, match="upright.hf"):
        assert ds.with_transform(upright.hf.decode(on_error="none"))[4]["image"] is None
    kept = ds.filter(upright.hf.readable("image"))
    assert len(kept) == 4 and kept["label"] == [0, 1, 2, 3]
    assert len(ds.filter(upright.hf.readable(), batched=True)) == 4
    decoded = ds.cast_column("image", datasets.Image())  # PIL-decoded column: refused with the fix
    with pytest.raises(UprightError, match="decode=False"):
        decoded.with_transform(upright.hf.decode())[0]


def test_real_orientation_examples_come_out_the_same_way_up(shared_data):
    folder = shared_data / "exif-orientation-examples"
    files = sorted(folder.glob("Landscape_*.jpg"))
    ds = datasets.Dataset.from_dict({"image": [{"bytes": p.read_bytes(), "path": p.name} for p in files]})
    ds = ds.cast_column("image", datasets.Image(decode=False)).with_transform(upright.hf.decode(size=48))
    import numpy as np

    pics = [np.asarray(im, float) for im in ds[:]["image"]]
    assert len(pics) == 9 and all(p.shape == pics[1].shape for p in pics)
    assert all(np.abs(p - pics[1]).mean() < 12 for p in pics)
