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
    scores, lam = _loo_group_scores(x, 12, lams=(0.5,))
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
