"""The sideways detector on synthetic embeddings (no backbone: fast and exact)."""

import numpy as np
import pytest

from upright.audit import sideways
from upright.audit.sideways import MIN_IMAGES, _loo_group_scores, detect, describe_turn


def synthetic(n=80, d=24, turned=(), seed=0, noise=0.3):
    """Views j = content + direction of "turned j*90"; files in `turned` {index: s} are turned by s."""
    rng = np.random.default_rng(seed)
    content = rng.normal(size=(n, d))
    turn_dir = rng.normal(size=(4, d)) * 1.0
    v = content[:, None, :] + turn_dir[None] + noise * rng.normal(size=(n, 4, d))
    for i, s in dict(turned).items():
        v[i] = np.roll(v[i], -s, axis=0)  # a file turned by s shows turn (j + s) in view j
    return v.astype(np.float32)


def test_leave_one_image_out_is_exact():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 4, 5))
    x -= x.reshape(-1, 5).mean(axis=0)
    scores, lam = _loo_group_scores(lambda: iter([x[:5], x[5:]]), lams=(0.5,))  # two blocks
    xf = x.reshape(-1, 5)
    y = np.tile(np.eye(4), (12, 1)) - 0.25
    lam_abs = 0.5 * np.linalg.eigvalsh(xf.T @ xf).clip(0).mean()
    for g in (0, 7):
        keep = np.ones(48, bool)
        keep[4 * g:4 * g + 4] = False
        w = np.linalg.solve(xf[keep].T @ xf[keep] + lam_abs * np.eye(5), xf[keep].T @ y[keep])
        assert np.allclose(scores[g], x[g] @ w, atol=1e-8)


def test_finds_turned_files_and_how_far():
    turned = {3: 1, 17: 2, 40: 3, 55: 1, 71: 3}
    res = detect(synthetic(turned=turned))
    top = set(np.argsort(-res.turned)[:5])
    assert top == set(turned)
    # far apart from the clean files (the calibrated level depends on the estimated share)
    clean = np.delete(res.turned, list(turned))
    assert res.turned[list(turned)].min() > 20 * clean.max()
    for i, s in turned.items():
        assert res.rotation[i] == 90 * s
    assert res.cv_accuracy > 0.9
    assert np.allclose(np.nansum(res.prob, axis=1)[:5], 1.0)
    assert 0.01 <= 1 - res.prior[0] < 0.2


def test_clean_dataset_flags_nothing():
    res = detect(synthetic(seed=2))
    assert (res.turned >= 0.5).sum() == 0


def test_unreadable_rows_and_small_datasets():
    v = synthetic(n=60, turned={5: 2})
    v[10] = np.nan
    res = detect(v)
    assert np.isnan(res.turned[10]) and res.rotation[5] == 180
    with pytest.raises(ValueError, match=f"at least {MIN_IMAGES}"):
        detect(synthetic(n=MIN_IMAGES - 1))


def test_words():
    assert describe_turn(90) == "turned 90 degrees clockwise; rotate it 90 degrees counter-clockwise to fix"
    assert "180" in describe_turn(180)
    assert describe_turn(270).endswith("rotate it 90 degrees clockwise to fix")
    assert sideways.VARIANTS == ("id", "r90", "r180", "r270")


def _shot_in_landscape(n, turned, portrait_share=0.1, seed=0):
    """(width, height) per file: mostly landscape as shot; a quarter turn makes a file portrait."""
    rng = np.random.default_rng(seed)
    sizes = np.where(rng.random(n)[:, None] < portrait_share, [[300, 400]], [[400, 300]]).astype(float)
    for i, s in turned.items():
        if s % 2:
            sizes[i] = sizes[i, ::-1]
    return sizes


def test_picture_shape_lifts_weak_content_evidence():
    """Content evidence too weak to single the turned files out; their swapped shape in a dataset
    shot in landscape does, and the weight of that evidence is fitted (> 0) on the rotated copies."""
    turned = {i: (1 if i % 2 else 3) for i in range(0, 200, 10)}  # 20 quarter turns in 200
    v = synthetic(n=200, turned=turned, noise=6.0, seed=4)  # held-out accuracy on copies ~0.5
    sizes = _shot_in_landscape(200, turned)
    blind = detect(v)
    seeing = detect(v, sizes=sizes)
    truth = np.zeros(200, bool)
    truth[list(turned)] = True

    def recall_in_top(res, k=20):
        return truth[np.argsort(-res.turned)[:k]].mean()

    assert seeing.shape_weight > 0 and blind.shape_weight == 0
    assert recall_in_top(seeing) >= recall_in_top(blind) + 0.2
    # being portrait alone does not make a photo "turned": clean portrait photos stay mostly below
    # 0.5 and well below the turned ones
    clean_portrait = [i for i in range(200) if i not in turned and sizes[i, 0] < sizes[i, 1]]
    assert clean_portrait and np.median(seeing.turned[clean_portrait]) < 0.5
    assert np.median(seeing.turned[clean_portrait]) < np.median(seeing.turned[list(turned)])


def test_shape_says_nothing_when_classes_mix_orientations():
    """Half portrait, half landscape, independent of the turn: the shape term is about the same for
    every turn, and the detector finds what it finds without sizes."""
    turned = {3: 1, 17: 2, 40: 3, 55: 1, 71: 3}
    v = synthetic(turned=turned)
    rng = np.random.default_rng(9)
    sizes = np.where(rng.random(80)[:, None] < 0.5, [[300, 400]], [[400, 300]]).astype(float)
    res, blind = detect(v, sizes=sizes), detect(v)
    assert set(np.argsort(-res.turned)[:5]) == set(turned)
    assert np.abs(res.turned - blind.turned).max() < 0.05


def test_unknown_sizes_count_as_no_evidence():
    v = synthetic(n=60, turned={5: 2})
    sizes = np.full((60, 2), np.nan)
    a, b = detect(v), detect(v, sizes=sizes)
    assert np.allclose(a.turned, b.turned)
