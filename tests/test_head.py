"""The softmax head is a scikit-learn-shaped estimator (without scikit-learn as a dependency)."""

from __future__ import annotations

import numpy as np
import pytest

from upright import head
from upright.head import SoftmaxRegression, Standardiser, _rows, fit_softmax, softmax


def blobs(n_per_class=40, d=12, classes=("cat", "dog", "owl"), seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.5, (len(classes), d))
    X = np.concatenate([c + rng.normal(0, 1.0, (n_per_class, d)) for c in centres]).astype(np.float32)
    X[:, 0] *= 50  # features on very different scales, as raw embeddings are
    y = np.repeat(np.array(classes), n_per_class)
    return X, y


def test_estimator_contract():
    X, y = blobs()
    est = SoftmaxRegression(l2=1e-2)
    assert est.fit(X, y) is est
    assert est.classes_.tolist() == ["cat", "dog", "owl"]
    assert est.coef_.shape == (3, 12) and est.intercept_.shape == (3,) and est.n_features_in_ == 12
    p = est.predict_proba(X)
    assert p.shape == (120, 3) and np.allclose(p.sum(1), 1, atol=1e-5)
    # coef_/intercept_ apply to raw inputs: the standardisation is folded in
    assert np.allclose(softmax(X @ est.coef_.T + est.intercept_), p, atol=1e-5)
    assert np.allclose(np.exp(est.predict_log_proba(X)), p, atol=1e-5)
    assert set(est.predict(X)) <= set(y) and est.score(X, y) > 0.9
    assert est.get_params() == {"l2": 1e-2, "max_iter": 100, "standardize": True}
    assert est.set_params(l2=0.1) is est and est.l2 == 0.1
    with pytest.raises(ValueError):
        est.set_params(C=1.0)
    with pytest.raises(ValueError, match="not fitted"):
        SoftmaxRegression().predict(X)
    with pytest.raises(ValueError, match="expects"):
        est.predict(X[:, :5])
    with pytest.raises(ValueError, match="two classes"):
        SoftmaxRegression().fit(X[:10], y[:10])


def test_same_head_as_the_solver_train_used_before():
    """fit() == Standardiser + fit_softmax + fold, up to float32 rounding: fit() folds the
    standardisation into the weights instead of holding a standardised copy of the rows."""
    X, y = blobs()
    codes = np.unique(y, return_inverse=True)[1]
    std = Standardiser(X)
    W, b = std.fold(*fit_softmax(std(X), codes, 3, 1e-2))
    est = SoftmaxRegression(l2=1e-2).fit(X, y)
    assert np.allclose(est.coef_, W, rtol=1e-4, atol=1e-6) and np.allclose(est.intercept_, b, rtol=1e-4, atol=1e-5)
    assert np.abs(est.predict_proba(X) - softmax(X @ W.T + b)).max() < 1e-5


def test_fit_views_reads_the_rows_in_place():
    """fit_views on [N, V, D] embeddings == fit on the copied rows (_rows), for any photo subset,
    blocks or no blocks: the head never needs its rows copied."""
    rng = np.random.default_rng(3)
    X, y = blobs(n_per_class=30)
    emb = np.stack([X, X + rng.normal(0, 0.3, X.shape).astype(np.float32)], axis=1)  # [90, 2 views, 12]
    codes = np.unique(y, return_inverse=True)[1]
    for idx in (np.arange(len(X)), np.flatnonzero(np.arange(len(X)) % 4 != 1)):
        rows, yy = _rows(emb, idx, codes, [0, 1])
        ref = SoftmaxRegression(l2=1e-2).fit(rows, yy)
        for block in (5, head.BLOCK):
            old = head.BLOCK
            head.BLOCK = block
            try:
                got = SoftmaxRegression(l2=1e-2).fit_views(emb, idx, codes, [0, 1])
            finally:
                head.BLOCK = old
            assert np.allclose(got.coef_, ref.coef_, rtol=1e-4, atol=1e-5)
            assert np.allclose(got.intercept_, ref.intercept_, rtol=1e-4, atol=1e-5)


def test_optimum_reached():
    """At the solution the gradient of mean cross-entropy + l2/2 |W|^2 vanishes."""
    X, y = blobs(d=6)
    est = SoftmaxRegression(l2=0.05, standardize=False, max_iter=500).fit(X / 50, y)
    Xs = (X / 50).astype(np.float64)
    Y = (y[:, None] == est.classes_[None, :]).astype(np.float64)
    G = (softmax(Xs @ est.coef_.T.astype(np.float64) + est.intercept_) - Y) / len(X)
    assert np.abs(G.T @ Xs + 0.05 * est.coef_).max() < 1e-4 and np.abs(G.sum(0)).max() < 1e-4
    assert 0 < est.n_iter_ <= 500


def test_matches_scikit_learn_logistic_regression():
    """Same objective as LogisticRegression(C = 1 / (l2 * n)). scikit-learn is a test dependency
    (the [dev] extra), not upright's: the head itself is numpy only."""
    from sklearn import linear_model
    X, y = blobs(d=8)
    X = X / X.std(0)
    l2 = 1e-2
    ours = SoftmaxRegression(l2=l2, standardize=False, max_iter=1000).fit(X, y)
    ref = linear_model.LogisticRegression(C=1.0 / (l2 * len(X)), tol=1e-10, max_iter=10000).fit(X, y)
    assert ours.classes_.tolist() == ref.classes_.tolist()
    assert np.abs(ours.predict_proba(X) - ref.predict_proba(X)).max() < 1e-3
    assert np.abs(ours.coef_ - ref.coef_).max() < 1e-2 and np.abs(ours.intercept_ - ref.intercept_).max() < 1e-2
    assert (ours.predict(X) == ref.predict(X)).all()


def test_select_head_is_typed_and_linear_in_the_photos():
    """The l2 path is fitted on at most max_photos training photos (stratified); the chosen head
    is then refitted on all of them, and every held-out photo is still predicted."""
    from upright.head import HeadChoice, HeldOut, select_head

    rng = np.random.default_rng(0)
    X, y = blobs(n_per_class=150, d=16)
    codes = np.unique(y, return_inverse=True)[1]
    emb = np.stack([X, X + rng.normal(0, 0.2, X.shape).astype(np.float32)], axis=1)
    val = np.flatnonzero(np.arange(len(X)) % 5 == 0)
    train = np.setdiff1d(np.arange(len(X)), val)
    full = select_head(emb, codes, 3, train, val, ("id", "flip"), ("id", "flip"))
    small = select_head(emb, codes, 3, train, val, ("id", "flip"), ("id", "flip"), max_photos=60)
    for c in (full, small):
        assert isinstance(c, HeadChoice) and isinstance(c.heldout, HeldOut)
        assert sorted(c.heldout.index) == sorted(val) and c.heldout.top.shape == (len(val), 3)
        assert np.allclose(c.heldout.top_p.sum(1) <= 1.0 + 1e-5, True) and (c.heldout.p_true >= 0).all()
    assert full.method == "validation split" and "at most 60 training photos" in small.method
    assert small.accuracy >= full.accuracy - 0.05 and set(small.grid) == set(full.grid)


def test_select_head_subsample_keeps_every_class():
    from upright.head import _subsample

    y = np.array([0] * 990 + [1] * 10)
    picked = _subsample(np.arange(1000), y, 100, seed=0)
    assert len(picked) <= 101 and set(y[picked]) == {0, 1} and (np.diff(picked) > 0).all()
    assert np.array_equal(_subsample(np.arange(50), y, 100, seed=0), np.arange(50))
