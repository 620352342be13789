"""The classification head: multinomial logistic regression on backbone embeddings (numpy only).

`SoftmaxRegression` follows scikit-learn's estimator contract (`fit` returns self,
`predict_proba`, `predict`, `classes_`, `coef_`, `intercept_`, `get_params`) so it reads like
`sklearn.linear_model.LogisticRegression` without the dependency. The objective is
mean cross-entropy + l2/2 * |W|^2 (intercept not penalised), which equals scikit-learn's
multinomial LogisticRegression with C = 1 / (l2 * n_samples). `select_head` picks the L2
strength and the test-time views on held-out photos; no torch import anywhere here, so a
warm re-train stays in seconds.
"""

from __future__ import annotations

import numpy as np

from .numerics import log_softmax, softmax

L2_GRID = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
TTA_CHOICES = (("id",), ("id", "flip"))
DEFAULT_HEAD_ITERS = 100
TOP_K_KEPT = 3  # per held-out photo, for reports: the best k labels and their scores


# -- the solver ---------------------------------------------------------------------------
def fit_softmax(X: np.ndarray, y: np.ndarray, n_classes: int, l2: float, max_iter: int = DEFAULT_HEAD_ITERS,
                init: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Minimise mean cross-entropy + l2/2 * |W|^2 by L-BFGS; y holds class indices < n_classes.

    -> (W [C, D], b [C]) as float32. Deterministic; `init` warm-starts a regularisation path.
    """
    W, b, _ = _solve(X, y, n_classes, l2, max_iter, init)
    return W, b


def _solve(X, y, n_classes, l2, max_iter, init=None):
    """fit_softmax's work, plus the number of L-BFGS iterations used."""
    X = np.ascontiguousarray(X, np.float32)
    n, d = X.shape
    Y = np.zeros((n, n_classes), np.float32)
    Y[np.arange(n), np.asarray(y)] = 1.0
    rows = np.arange(n)
    y = np.asarray(y)

    def fg(theta):
        W = theta[: n_classes * d].reshape(n_classes, d)
        b = theta[n_classes * d:]
        z = X @ W.T.astype(np.float32) + b.astype(np.float32)
        z -= z.max(axis=1, keepdims=True)
        ez = np.exp(z)
        s = ez.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(s[:, 0]) - z[rows, y])) + 0.5 * l2 * float(np.dot(W.ravel(), W.ravel()))
        G = (ez / s - Y) / n
        gW = (G.T @ X).astype(np.float64) + l2 * W
        return loss, np.concatenate([gW.ravel(), G.sum(axis=0).astype(np.float64)])

    theta0 = np.zeros(n_classes * d + n_classes)
    if init is not None:
        theta0 = np.concatenate([np.asarray(init[0], np.float64).ravel(), np.asarray(init[1], np.float64)])
    theta, iterations = _lbfgs(fg, theta0, max_iter)
    return (theta[: n_classes * d].reshape(n_classes, d).astype(np.float32),
            theta[n_classes * d:].astype(np.float32), iterations)


def _lbfgs(fg, x, max_iter: int, m: int = 10, gtol: float = 1e-5, ftol: float = 1e-9):
    """Plain L-BFGS with a backtracking (Armijo) line search; enough for a smooth convex loss.

    -> (x, iterations used).
    """
    f, g = fg(x)
    hist: list[tuple[np.ndarray, np.ndarray, float]] = []
    it = 0
    for it in range(1, max_iter + 1):
        q = g.copy()
        alphas = []
        for s, yv, rho in reversed(hist):
            a = rho * float(s @ q)
            q -= a * yv
            alphas.append(a)
        if hist:
            s, yv, _ = hist[-1]
            q *= float(s @ yv) / float(yv @ yv)
        else:
            q /= max(1.0, float(np.abs(g).max()))
        for (s, yv, rho), a in zip(hist, reversed(alphas)):
            q += s * (a - rho * float(yv @ q))
        direction = -q
        slope = float(g @ direction)
        if slope >= 0:  # not a descent direction: restart from the gradient
            hist.clear()
            direction, slope = -g / max(1.0, float(np.abs(g).max())), -float(g @ g) / max(1.0, float(np.abs(g).max()))
        t = 1.0
        while True:
            x_new = x + t * direction
            f_new, g_new = fg(x_new)
            if f_new <= f + 1e-4 * t * slope or t < 1e-8:
                break
            t *= 0.5
        s, yv = x_new - x, g_new - g
        sy = float(s @ yv)
        if sy > 1e-12:
            hist.append((s, yv, 1.0 / sy))
            if len(hist) > m:
                hist.pop(0)
        done = abs(f - f_new) <= ftol * max(1.0, abs(f)) or float(np.abs(g_new).max()) < gtol
        x, f, g = x_new, f_new, g_new
        if done:
            break
    return x, it


class Standardiser:
    """Per-feature mean/std of the training rows (std floored at 1e-3 for dead features)."""

    def __init__(self, X: np.ndarray):
        self.mean = X.mean(axis=0)
        self.std = X.std(axis=0) + 1e-3

    def __call__(self, X):
        return (X - self.mean) / self.std

    def fold(self, W, b):
        """Head on standardised inputs -> the same head on raw embeddings."""
        W2 = W / self.std
        return W2.astype(np.float32), (b - W2 @ self.mean).astype(np.float32)


# -- the estimator --------------------------------------------------------------------------
class NotFittedError(ValueError, AttributeError):
    """Used before fit (both base classes, as scikit-learn's own NotFittedError)."""


class SoftmaxRegression:
    """Multinomial logistic regression, scikit-learn shaped.

    l2: penalty on the weights (of standardised inputs when `standardize`); max_iter: L-BFGS
    iterations. After `fit`: `classes_` (sorted labels as given), `coef_` [C, D] and
    `intercept_` [C] that apply to the raw inputs (standardisation folded in, so
    `softmax(X @ coef_.T + intercept_)` is `predict_proba(X)`), `n_features_in_`, `n_iter_`.
    Unlike scikit-learn, a two-class problem keeps two rows in `coef_` (one per class).
    """

    def __init__(self, l2: float = 1e-3, *, max_iter: int = DEFAULT_HEAD_ITERS, standardize: bool = True):
        self.l2 = l2
        self.max_iter = max_iter
        self.standardize = standardize

    def get_params(self, deep: bool = True) -> dict:
        return {"l2": self.l2, "max_iter": self.max_iter, "standardize": self.standardize}

    def set_params(self, **params) -> "SoftmaxRegression":
        for k, v in params.items():
            if k not in self.get_params():
                raise ValueError(f"invalid parameter {k!r} for SoftmaxRegression")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        return f"SoftmaxRegression(l2={self.l2!r}, max_iter={self.max_iter!r}, standardize={self.standardize!r})"

    def fit(self, X, y) -> "SoftmaxRegression":
        X = np.asarray(X, np.float32)
        y = np.asarray(y)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"X must be [n_samples, n_features] matching y; got {X.shape} and {y.shape}")
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("needs samples of at least two classes")
        std = Standardiser(X) if self.standardize else None
        Xs = std(X) if std is not None else X
        W, b, self.n_iter_ = _solve(Xs, codes, len(self.classes_), self.l2, self.max_iter)
        if std is not None:
            W, b = std.fold(W, b)
        self.coef_, self.intercept_ = W, b
        self.n_features_in_ = X.shape[1]
        return self

    def _check(self, X) -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise NotFittedError("this SoftmaxRegression is not fitted yet; call fit(X, y) first")
        X = np.asarray(X, np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has shape {X.shape}; the head expects [n, {self.n_features_in_}]")
        return X

    def decision_function(self, X) -> np.ndarray:
        return self._check(X) @ self.coef_.T + self.intercept_

    def predict_proba(self, X) -> np.ndarray:
        return softmax(self.decision_function(X))

    def predict_log_proba(self, X) -> np.ndarray:
        return log_softmax(self.decision_function(X))

    def predict(self, X) -> np.ndarray:
        scores = self.decision_function(X)
        return self.classes_[scores.argmax(axis=1)]

    def score(self, X, y) -> float:
        """Mean accuracy, as scikit-learn's classifiers define `score`."""
        return float((self.predict(X) == np.asarray(y)).mean())



# -- model selection ------------------------------------------------------------------------
def _rows(emb: np.ndarray, idx: np.ndarray, y: np.ndarray, views: list[int]):
    """Training rows: every listed view of every image in idx."""
    X = emb[idx][:, views].reshape(-1, emb.shape[-1])
    return X, np.repeat(y[idx], len(views))


def select_head(emb: np.ndarray, y: np.ndarray, n_classes: int, train_idx, val_idx, variants, aug_views,
                seed: int = 0, max_iter: int = DEFAULT_HEAD_ITERS, tta_options=None) -> dict:
    """Pick (l2, test views) on the validation photos, or by 3-fold CV on train when they are too few.

    The test views are chosen among `tta_options` (default TTA_CHOICES: the centre crop, or it
    and its mirror) that `variants` hold; a preset may fix them (accurate: its 10 crops).

    emb: [N, V, D] embeddings of `variants`; y: class index per photo. Returns the choice, its
    held-out accuracy, the grid, and `heldout`: for every held-out photo (`index` into emb)
    the chosen head's top labels (`top`), their scores (`top_p`) and the true label's score
    (`p_true`), each predicted by a head that was not fitted on that photo.
    """
    vi = {v: i for i, v in enumerate(variants)}
    aug = [vi[v] for v in aug_views]
    tta_options = [tuple(t) for t in (TTA_CHOICES if tta_options is None else tta_options) if all(v in vi for v in t)]
    counts = np.bincount(y[val_idx], minlength=n_classes) if len(val_idx) else np.zeros(n_classes, int)
    use_val = len(val_idx) >= max(10, 2 * n_classes) and (counts > 0).sum() >= 2
    if use_val:
        folds = [(np.asarray(train_idx), np.asarray(val_idx))]
        method = "validation split"
    else:  # 3-fold CV on train, stratified, grouped by image (all variants of one image together)
        rng = np.random.default_rng(seed)
        tr = np.concatenate([np.asarray(train_idx, int), np.asarray(val_idx, int)])
        fold_of = np.zeros(len(tr), int)
        for c in range(n_classes):
            where = np.flatnonzero(y[tr] == c)
            rng.shuffle(where)
            fold_of[where] = np.arange(len(where)) % 3
        k = min(3, max(2, int(min(np.bincount(y[tr], minlength=n_classes)[np.bincount(y[tr]) > 0]))))
        fold_of %= k
        folds = [(tr[fold_of != f], tr[fold_of == f]) for f in range(k)]
        method = f"{k}-fold cross-validation on train"
    heldout = np.concatenate([va for _, va in folds]).astype(int)
    k_top = min(TOP_K_KEPT, n_classes)
    configs = [(l2, tta) for l2 in L2_GRID for tta in tta_options]
    totals = {c: [0.0, 0.0] for c in configs}
    per_photo = {c: (np.zeros((len(heldout), k_top), int), np.zeros((len(heldout), k_top), np.float32),
                     np.zeros(len(heldout), np.float32)) for c in configs}
    at = 0
    for tr, va in folds:
        X, yy = _rows(emb, tr, y, aug)
        std = Standardiser(X)
        Xs = std(X)
        init = None
        for l2 in sorted(L2_GRID, reverse=True):  # warm-started regularisation path
            W, b = fit_softmax(Xs, yy, n_classes, l2, max_iter, init=init)
            init = (W, b)
            for tta in tta_options:
                p = np.mean([softmax(std(emb[va, vi[v]]) @ W.T + b) for v in tta], axis=0)
                p_true = p[np.arange(len(va)), y[va]]
                totals[(l2, tta)][0] += float((p.argmax(1) == y[va]).sum())
                totals[(l2, tta)][1] += float(-np.log(np.clip(p_true, 1e-12, None)).sum())
                top = np.argsort(-p, axis=1, kind="stable")[:, :k_top]
                rows = slice(at, at + len(va))
                per_photo[(l2, tta)][0][rows] = top
                per_photo[(l2, tta)][1][rows] = np.take_along_axis(p, top, axis=1)
                per_photo[(l2, tta)][2][rows] = p_true
        at += len(va)
    total = len(heldout)
    # best accuracy, then fewer test views (cheaper), then lowest log-loss, then stronger l2
    best = min(totals, key=lambda c: (-round(totals[c][0] / total, 6), len(c[1]),
                                      round(totals[c][1] / total, 4), -c[0]))
    top, top_p, p_true = per_photo[best]
    return {
        "l2": best[0], "test_views": list(best[1]), "method": method,
        "accuracy": totals[best][0] / total,
        "grid": {f"{l2:g}|{'+'.join(t)}": round(v[0] / total, 4) for (l2, t), v in totals.items()},
        "heldout": {"index": heldout, "top": top, "top_p": top_p, "p_true": p_true},
    }
