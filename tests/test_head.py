"""The softmax head is a scikit-learn-shaped estimator (without scikit-learn as a dependency)."""

from __future__ import annotations

import numpy as np
import pytest

from upright.head import SoftmaxRegression, Standardiser, fit_softmax, softmax


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
    """fit() == Standardiser + fit_softmax + fold: models trained before the estimator are unchanged."""
    X, y = blobs()
    codes = np.unique(y, return_inverse=True)[1]
    std = Standardiser(X)
    W, b = std.fold(*fit_softmax(std(X), codes, 3, 1e-2))
    est = SoftmaxRegression(l2=1e-2).fit(X, y)
    assert np.array_equal(est.coef_, W) and np.array_equal(est.intercept_, b)


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
