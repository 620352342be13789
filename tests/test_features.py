import numpy as np

from upright import backbones

from upright.features import AUGMENT_VARIANTS, VARIANTS, embed_images, embed_paths, variant_image
from upright.preprocess import compose, variant_array
from fixtures import BLUE, GREEN, RED, YELLOW, asym_picture, corners, looks_upright, make_dataset, same_colour


def _corners_are(img, tl, tr, bl, br):
    return all(same_colour(a, b) for a, b in zip(corners(img), [tl, tr, bl, br]))


def test_variant_pixels():
    up = asym_picture()  # TL red, TR green, BL blue, BR yellow
    assert looks_upright(variant_image(up, "id"))
    assert _corners_are(variant_image(up, "flip"), GREEN, RED, YELLOW, BLUE)
    r90 = variant_image(up, "r90")  # clockwise: the left column becomes the top row
    assert r90.size == (64, 96) and _corners_are(r90, BLUE, RED, YELLOW, GREEN)
    assert _corners_are(variant_image(up, "r180"), YELLOW, BLUE, GREEN, RED)
    assert _corners_are(variant_image(up, "r270"), GREEN, YELLOW, RED, BLUE)
    assert _corners_are(variant_image(up, "flip_r90"), YELLOW, GREEN, BLUE, RED)
    assert set(AUGMENT_VARIANTS["d4"]) == set(VARIANTS) and len(VARIANTS) == 8
    # the numpy path used for crops agrees with the PIL path, and compose() is the group law
    a = np.asarray(up)
    for v in VARIANTS:
        assert np.array_equal(variant_array(a, v), np.asarray(variant_image(up, v))), v
        for w in VARIANTS:
            both = np.asarray(variant_image(variant_image(up, v), w))
            assert np.array_equal(both, np.asarray(variant_image(up, compose(v, w)))), (v, w)


def test_embeddings_differ_by_variant_and_match_in_memory(tmp_path):
    data = make_dataset(tmp_path / "d", n_per_class=2, classes=("a", "b"))
    paths = sorted(data.rglob("*.jpg"))
    emb = embed_paths(paths, variants=("id", "r90", "flip"), progress=False, workers=0)
    dim = backbones.spec(backbones.DEFAULT).dim  # 1280 for the default Lite0
    assert emb.vectors.shape == (4, 3, dim) and emb.vectors.dtype == np.float32 and emb.ok.all()
    assert np.abs(emb.vectors[:, 0] - emb.vectors[:, 1]).mean() > 1e-3
    from upright.imaging import open_upright

    mem = embed_images([open_upright(p) for p in paths], variants=("id", "r90"))
    assert np.abs(mem - emb.vectors[:, :2]).max() < 1e-2


def test_unreadable_rows_are_nan_with_reason(tmp_path):
    data = make_dataset(tmp_path / "d", n_per_class=1, classes=("a",))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    emb = embed_paths([next(data.rglob("*.jpg")), bad, tmp_path / "missing.jpg"], progress=False, workers=0)
    assert emb.ok.tolist() == [True, False, False]
    assert np.isnan(emb.vectors[1]).all() and set(emb.errors) == {1, 2}
    assert "\n" not in emb.errors[1] and "not found" in emb.errors[2]


def test_worker_pool_gives_same_result(tmp_path):
    data = make_dataset(tmp_path / "d", n_per_class=5, classes=("a", "b"))
    paths = sorted(data.rglob("*.jpg"))
    pooled = embed_paths(paths, cache_dir=tmp_path / "c1", progress=False, workers=2)
    inline = embed_paths(paths, cache_dir=tmp_path / "c2", progress=False, workers=0)
    assert pooled.ok.all() and np.abs(pooled.vectors - inline.vectors).max() < 1e-5
