import numpy as np
import pytest

from upright import backbones
from upright.orientation import VARIANTS as ORIENTATION_VARIANTS
from upright.pipeline.embed import embed_images, embed_paths
from upright.presets import AUGMENT_VARIANTS

VARIANTS = tuple(ORIENTATION_VARIANTS)
from fixtures import make_dataset


def test_variants_are_the_dihedral_group():
    assert VARIANTS == tuple(ORIENTATION_VARIANTS) and len(VARIANTS) == 8
    assert set(AUGMENT_VARIANTS["d4"]) == set(VARIANTS)
    assert all(set(v) <= set(VARIANTS) and v[0] == "id" for v in AUGMENT_VARIANTS.values())


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


@pytest.mark.slow
def test_worker_pool_gives_same_result(tmp_path):
    data = make_dataset(tmp_path / "d", n_per_class=5, classes=("a", "b"))
    paths = sorted(data.rglob("*.jpg"))
    pooled = embed_paths(paths, cache_dir=tmp_path / "c1", progress=False, workers=2)
    inline = embed_paths(paths, cache_dir=tmp_path / "c2", progress=False, workers=0)
    assert pooled.ok.all() and np.abs(pooled.vectors - inline.vectors).max() < 1e-5
