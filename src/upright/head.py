"""The classification head: multinomial logistic regression on backbone embeddings (numpy only).

`SoftmaxRegression` follows scikit-learn's estimator contract (`fit` returns self,
`predict_proba`, `predict`, `classes_`, `coef_`, `intercept_`, `get_params`) so it reads like
`sklearn.linear_model.LogisticRegression` without the dependency. The objective is
mean cross-entropy + l2/2 * |W|^2 (intercept not penalised), which equals scikit-learn's
multinomial LogisticRegression with C = 1 / (l2 * n_samples). `select_head` picks the L2
strength and the test-time views on held-out photos (a HeadChoice); no torch import anywhere
here, so a warm re-train stays in seconds.

Memory and time that grow no faster than the photos: the solver reads its rows (`Rows`: every
training view of every photo) block by block from the [N, V, D] embeddings, with the
standardisation folded into the weights, so no copy of the rows, standardised or not, is ever
made (`SoftmaxRegression.fit_views`); `select_head` fits its path of L2 strengths on at most
SELECT_PHOTOS training photos a fold and refits only the chosen one on all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .numerics import log_softmax, softmax

L2_GRID = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
TTA_CHOICES = (("id",), ("id", "flip"))
DEFAULT_HEAD_ITERS = 100
TOP_K_KEPT = 3  # per held-out photo, for reports: the best k labels and their scores


# -- the rows a head is fitted on ----------------------------------------------------------
BLOCK = 4096  # photos per block: the solver's temporaries are [BLOCK, classes], never [N, D]


class Rows:
    """Every listed view of every photo in `idx`, read from emb [N, V, D] block by block, never
    copied whole: a run of consecutive photos is a strided view of `emb` (no copy at all),
    otherwise one block is gathered at a time. `y`: class code per photo of emb (length N)."""

    def __init__(self, emb: np.ndarray, idx, y: np.ndarray, views=(0,)):
        self.emb = emb if emb.ndim == 3 else emb[:, None, :]
        self.idx = np.sort(np.asarray(idx, np.int64))
        self.y = np.asarray(y)
        self.views = tuple(views)

    def __len__(self) -> int:
        return len(self.idx) * len(self.views)

    @property
    def dim(self) -> int:
        return self.emb.shape[-1]

    def blocks(self, size: int | None = None):
        """(X [b, D] float32, codes [b]) for every block of photos and every view."""
        size = size or BLOCK
        for s in range(0, len(self.idx), size):
            part = self.idx[s:s + size]
            run = len(part) and part[-1] - part[0] + 1 == len(part)
            for j in self.views:
                X = self.emb[part[0]:part[-1] + 1, j] if run else self.emb[part, j]
                yield X, self.y[part]


# -- the solver ---------------------------------------------------------------------------
def fit_softmax(X: np.ndarray, y: np.ndarray, n_classes: int, l2: float, max_iter: int = DEFAULT_HEAD_ITERS,
                init: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Minimise mean cross-entropy + l2/2 * |W|^2 by L-BFGS; y holds class indices < n_classes.

    -> (W [C, D], b [C]) as float32. Deterministic; `init` warm-starts a regularisation path.
    """
    X = np.asarray(X, np.float32)
    W, b, _ = _solve(Rows(X, np.arange(len(X)), np.asarray(y)), n_classes, l2, max_iter, init)
    return W, b


def _solve(rows: Rows, n_classes, l2, max_iter, init=None, std: "Standardiser | None" = None):
    """fit_softmax's work on `rows` (standardised by `std` on the fly: the standardisation is
    folded into the weights, so no standardised copy exists), plus the L-BFGS iterations used.
    W and b are in the standardised space."""
    d, n = rows.dim, len(rows)
    mean = np.zeros(d, np.float32) if std is None else std.mean.astype(np.float32)
    inv = np.ones(d, np.float32) if std is None else (1.0 / std.std).astype(np.float32)

    def fg(theta):
        W = theta[: n_classes * d].reshape(n_classes, d)
        b = theta[n_classes * d:]
        Wf = W.astype(np.float32) * inv  # the head on raw rows: z = X @ Wf.T + bf
        bf = b.astype(np.float32) - Wf @ mean
        loss, gX, gb = 0.0, np.zeros((n_classes, d)), np.zeros(n_classes)
        for X, y in rows.blocks():
            z = X @ Wf.T + bf
            z -= z.max(axis=1, keepdims=True)
            ez = np.exp(z)
            s = ez.sum(axis=1, keepdims=True)
            loss += float(np.sum(np.log(s[:, 0]) - z[np.arange(len(y)), y]))
            G = ez / s
            G[np.arange(len(y)), y] -= 1.0
            G /= n
            gX += (X.T @ G).T
            gb += G.sum(axis=0)
        gW = (gX - np.outer(gb, mean)) * inv + l2 * W  # d/dW of the standardised rows' loss
        loss = loss / n + 0.5 * l2 * float(np.dot(W.ravel(), W.ravel()))
        return loss, np.concatenate([gW.ravel(), gb])

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

    def __init__(self, X: np.ndarray | None = None):
        if X is not None:
            self.mean = X.mean(axis=0)
            self.std = X.std(axis=0) + 1e-3

    @classmethod
    def of_rows(cls, rows: Rows) -> "Standardiser":
        """The same figures from Rows, two passes block by block (float64 sums, no copy)."""
        total = np.zeros(rows.dim)
        for X, _ in rows.blocks():
            total += X.sum(axis=0, dtype=np.float64)
        mean = total / max(1, len(rows))
        sq = np.zeros(rows.dim)
        for X, _ in rows.blocks():
            sq += np.square(X - mean.astype(np.float32), dtype=np.float64).sum(axis=0)
        std = cls()
        std.mean = mean.astype(np.float32)
        std.std = (np.sqrt(sq / max(1, len(rows))) + 1e-3).astype(np.float32)
        return std

    def __call__(self, X):
        return (X - self.mean) / self.std

    def fold(self, W, b):
        """Head on standardised inputs -> the same head on raw embeddings."""
        W2 = W / self.std
        return W2.astype(np.float32), (b - W2 @ self.mean).astype(np.float32)

    def unfold(self, W, b):
        """Head on raw embeddings -> the same head on these standardised inputs (fold's inverse):
        a head fitted under other statistics warm-starts a fit under these."""
        return (np.asarray(W) * self.std).astype(np.float32), (np.asarray(b) + np.asarray(W) @ self.mean).astype(np.float32)


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
        return self._fit_rows(X[:, None, :], np.arange(len(X)), y, (0,))

    def fit_views(self, emb: np.ndarray, idx, y, views, init=None) -> "SoftmaxRegression":
        """fit() on every listed view of the photos idx of emb [N, V, D] (y: label per photo),
        without copying the rows: what fit(_rows(emb, idx, y, views)) gives, in constant extra memory.
        init: (coef [C, D], intercept [C]) of a head on raw embeddings to start from (e.g.
        HeadChoice.weights; the same optimum, reached in fewer iterations)."""
        return self._fit_rows(np.asarray(emb, np.float32), idx, np.asarray(y), views, init)

    def _fit_rows(self, emb, idx, y, views, init=None) -> "SoftmaxRegression":
        idx = np.asarray(idx)
        self.classes_ = np.unique(y[idx])
        if len(self.classes_) < 2:
            raise ValueError("needs samples of at least two classes")
        codes = np.clip(np.searchsorted(self.classes_, y), 0, len(self.classes_) - 1)
        rows = Rows(emb, idx, codes, views)
        std = Standardiser.of_rows(rows) if self.standardize else None
        if init is not None and std is not None:
            init = std.unfold(*init)
        W, b, self.n_iter_ = _solve(rows, len(self.classes_), self.l2, self.max_iter, init, std=std)
        if std is not None:
            W, b = std.fold(W, b)
        self.coef_, self.intercept_ = W, b
        self.n_features_in_ = emb.shape[-1]
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


SELECT_PHOTOS = 4000  # training photos per fold the l2 and test views are chosen on (a stratified subsample)


@dataclass
class HeldOut:
    """Per held-out photo (`index` into the embeddings), predicted by a head not fitted on it:
    its top labels (`top`, class indices), their scores (`top_p`) and the true label's (`p_true`)."""

    index: np.ndarray
    top: np.ndarray
    top_p: np.ndarray
    p_true: np.ndarray


@dataclass
class HeadChoice:
    """What select_head chose, how, and the held-out predictions behind it."""

    l2: float
    test_views: list[str]
    method: str  # "validation split", "3-fold cross-validation on train", + the subsample when one was used
    accuracy: float  # held-out accuracy of the chosen head
    grid: dict[str, float]  # "l2|views" -> held-out accuracy of every configuration tried
    heldout: HeldOut
    weights: tuple[np.ndarray, np.ndarray] | None = None  # the last fold's chosen head on raw embeddings:
    #                                                       a warm start for the final fit (fit_views init)


def _folds(y, n_classes, train_idx, val_idx, seed):
    """[(fit photos, held-out photos)] and the method's name: the val photos when there are
    enough, else 3-fold CV on train (stratified, grouped by photo)."""
    counts = np.bincount(y[val_idx], minlength=n_classes) if len(val_idx) else np.zeros(n_classes, int)
    if len(val_idx) >= max(10, 2 * n_classes) and (counts > 0).sum() >= 2:
        return [(np.asarray(train_idx), np.asarray(val_idx))], "validation split"
    rng = np.random.default_rng(seed)
    tr = np.concatenate([np.asarray(train_idx, int), np.asarray(val_idx, int)])
    fold_of = np.zeros(len(tr), int)
    for c in range(n_classes):
        where = np.flatnonzero(y[tr] == c)
        rng.shuffle(where)
        fold_of[where] = np.arange(len(where)) % 3
    k = min(3, max(2, int(min(np.bincount(y[tr], minlength=n_classes)[np.bincount(y[tr]) > 0]))))
    fold_of %= k
    return [(tr[fold_of != f], tr[fold_of == f]) for f in range(k)], f"{k}-fold cross-validation on train"


def _subsample(idx, y, size: int, seed: int) -> np.ndarray:
    """At most `size` of the photos idx, every class in proportion (at least one each), seeded."""
    idx = np.asarray(idx)
    if len(idx) <= size:
        return idx
    rng = np.random.default_rng([seed, len(idx)])
    keep = []
    for c in np.unique(y[idx]):
        where = idx[y[idx] == c]
        keep.append(rng.choice(where, max(1, round(size * len(where) / len(idx))), replace=False))
    return np.sort(np.concatenate(keep))


def _predict(emb, idx, views, W, b, std) -> np.ndarray:
    """Mean over the test views of the head's probabilities, [len(idx), C], block by block."""
    Wf, bf = std.fold(W, b)
    out = np.zeros((len(idx), len(W)), np.float32)
    for s in range(0, len(idx), BLOCK):
        part = idx[s:s + BLOCK]
        out[s:s + BLOCK] = np.mean([softmax(emb[part, v] @ Wf.T + bf) for v in views], axis=0)
    return out


class _Scores:
    """Held-out accuracy and log-loss per configuration, and the per-photo predictions kept."""

    def __init__(self, configs, n_heldout: int, k_top: int, keep: bool):
        self.totals = {c: [0.0, 0.0] for c in configs}
        self.k_top, self.keep = k_top, keep
        self.per_photo = {c: (np.zeros((n_heldout, k_top), int), np.zeros((n_heldout, k_top), np.float32),
                              np.zeros(n_heldout, np.float32)) for c in (configs if keep else ())}

    def add(self, config, p, truth, at: int) -> None:
        p_true = p[np.arange(len(truth)), truth]
        self.totals[config][0] += float((p.argmax(1) == truth).sum())
        self.totals[config][1] += float(-np.log(np.clip(p_true, 1e-12, None)).sum())
        if config in self.per_photo:
            top = np.argsort(-p, axis=1, kind="stable")[:, :self.k_top]
            rows = slice(at, at + len(truth))
            self.per_photo[config][0][rows] = top
            self.per_photo[config][1][rows] = np.take_along_axis(p, top, axis=1)
            self.per_photo[config][2][rows] = p_true

    def best(self, total: int):
        """Best accuracy, then fewer test views (cheaper), then lowest log-loss, then stronger l2."""
        return min(self.totals, key=lambda c: (-round(self.totals[c][0] / total, 6), len(c[1]),
                                               round(self.totals[c][1] / total, 4), -c[0]))


def _score_folds(emb, y, n_classes, folds, aug, tta_options, vi, max_iter, scores: _Scores, l2_grid,
                 starts=None) -> dict:
    """Fit each fold's path of l2 (warm-started, strongest first) and score every configuration.
    starts: {fold: raw head} to start each fold's first fit from. -> {(fold, l2): raw head}."""
    at, heads = 0, {}
    for f, (tr, va) in enumerate(folds):
        rows = Rows(emb, tr, y, aug)
        std = Standardiser.of_rows(rows)
        init = None if not starts else std.unfold(*starts[f])
        for l2 in sorted(l2_grid, reverse=True):
            W, b, _ = _solve(rows, n_classes, l2, max_iter, init, std)
            init = (W, b)
            heads[(f, l2)] = std.fold(W, b)
            for tta in tta_options:
                scores.add((l2, tta), _predict(emb, va, [vi[v] for v in tta], W, b, std), y[va], at)
        at += len(va)
    return heads


def select_head(emb: np.ndarray, y: np.ndarray, n_classes: int, train_idx, val_idx, variants, aug_views,
                seed: int = 0, max_iter: int = DEFAULT_HEAD_ITERS, tta_options=None,
                max_photos: int = SELECT_PHOTOS) -> HeadChoice:
    """Pick (l2, test views) on the validation photos, or by 3-fold CV on train when they are too few.

    The test views are chosen among `tta_options` (default TTA_CHOICES: the centre crop, or it
    and its mirror) that `variants` hold; a preset may fix them (accurate: its 10 crops).
    Linear in the photos: each fold's l2 path is fitted on at most `max_photos` of its
    training photos (stratified, seeded); when that left some out, the chosen configuration is
    refitted on all of them and `heldout` and `accuracy` come from that head.

    emb: [N, V, D] embeddings of `variants`; y: class index per photo. `heldout`: every
    held-out photo predicted by a head that was not fitted on it.
    """
    vi = {v: i for i, v in enumerate(variants)}
    aug = [vi[v] for v in aug_views]
    tta_options = [tuple(t) for t in (TTA_CHOICES if tta_options is None else tta_options) if all(v in vi for v in t)]
    folds, method = _folds(y, n_classes, train_idx, val_idx, seed)
    small = [(_subsample(tr, y, max_photos, seed), va) for tr, va in folds]
    sampled = any(len(s) < len(tr) for (s, _), (tr, _) in zip(small, folds))
    heldout = np.concatenate([va for _, va in folds]).astype(int)
    k_top, total = min(TOP_K_KEPT, n_classes), len(heldout)
    scores = _Scores([(l2, tta) for l2 in L2_GRID for tta in tta_options], total, k_top, keep=not sampled)
    heads = _score_folds(emb, y, n_classes, small, aug, tta_options, vi, max_iter, scores, L2_GRID)
    best = scores.best(total)
    grid = {f"{l2:g}|{'+'.join(t)}": round(v[0] / total, 4) for (l2, t), v in scores.totals.items()}
    if sampled:  # the chosen head, refitted on every training photo of each fold, predicts the held-out ones
        method += f" (l2 and test views chosen with at most {max_photos} training photos a fold)"
        scores = _Scores([best], total, k_top, keep=True)
        heads = _score_folds(emb, y, n_classes, folds, aug, [best[1]], vi, max_iter, scores, [best[0]],
                             starts={f: heads[(f, best[0])] for f in range(len(folds))})
    top, top_p, p_true = scores.per_photo[best]
    return HeadChoice(l2=best[0], test_views=list(best[1]), method=method, accuracy=scores.totals[best][0] / total,
                      grid=grid, heldout=HeldOut(heldout, top, top_p, p_true), weights=heads[(len(folds) - 1, best[0])])
