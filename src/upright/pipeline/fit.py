"""The fit stage: the embeddings of the training photos -> the linear head (head.py).

Multinomial logistic regression on standardised embeddings, fitted with L-BFGS; the L2
strength is chosen on the validation photos (val/ or the hash split; 3-fold cross-validation
on the training photos when they are too few), then the head is refitted on train + val.
Test-time views ("id", or "id" + "flip" averaged; --preset accurate's 10 crops) are chosen on
the same held-out photos. Deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UprightError
from ..head import DEFAULT_HEAD_ITERS, SoftmaxRegression, _rows, select_head


def embedded_views(train_views) -> tuple[str, ...]:
    """What is embedded for a fit: the training views, plus the centre crop and its mirror
    (the test views the choice may pick)."""
    return tuple(dict.fromkeys(tuple(train_views) + ("id", "flip")))


def split_indices(records, labels: list[str], ok: np.ndarray):
    """-> (class index per record, readable train rows, readable val rows); every class needs a photo."""
    y = np.array([labels.index(r.label) for r in records])
    is_train = np.array([r.split == "train" for r in records]) & ok
    is_val = np.array([r.split == "val" for r in records]) & ok
    train_counts = np.bincount(y[is_train], minlength=len(labels))
    missing = [labels[c] for c in range(len(labels)) if train_counts[c] == 0 and not (is_val & (y == c)).any()]
    if missing:
        raise UprightError(f"class '{missing[0]}' has no readable images")
    return y, np.flatnonzero(is_train), np.flatnonzero(is_val)


@dataclass
class HeadFit:
    """The chosen head, fitted on every readable photo train reads (train + val)."""

    choice: dict  # head.select_head: l2, accuracy, method, grid, test_views, heldout
    weight: np.ndarray  # float32 [C, D], on the raw embedding
    bias: np.ndarray  # float32 [C]
    iterations: int
    fitted: np.ndarray  # indices of the photos it was fitted on
    max_iter: int = DEFAULT_HEAD_ITERS

    def record(self) -> dict:
        """model.json "head"."""
        return {"type": "linear-softmax", "estimator": "upright.head.SoftmaxRegression", "l2": self.choice["l2"],
                "selected_by": self.choice["method"], "solver": "L-BFGS", "max_iter": self.max_iter,
                "final_fit": "train+val", "iterations": self.iterations,
                "applies_to": "raw embedding (standardisation folded into weight and bias)"}


def fit_head(vectors: np.ndarray, y: np.ndarray, n_labels: int, ok: np.ndarray, train_idx, val_idx, variants,
             train_views, seed: int = 0, test_views=None) -> HeadFit:
    """Choose l2 (and test views among `test_views` options, head.select_head) on the held-out
    photos, then fit on every readable one. vectors: [N, V, D] of `variants`."""
    choice = select_head(vectors, y, n_labels, train_idx, val_idx, variants, train_views, seed, DEFAULT_HEAD_ITERS,
                         tta_options=test_views)
    rows = np.flatnonzero(ok)
    head = _fit(vectors, y, rows, variants, train_views, choice["l2"])
    return HeadFit(choice, head.coef_, head.intercept_, int(head.n_iter_), rows)


def fit_on(vectors: np.ndarray, y: np.ndarray, rows, variants, train_views, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of a head with this l2 fitted on `rows` alone (e.g. the train photos, where
    the val photos must stay unseen)."""
    head = _fit(vectors, y, np.asarray(rows), variants, train_views, l2)
    return head.coef_, head.intercept_


def _fit(vectors, y, rows, variants, train_views, l2) -> SoftmaxRegression:
    col = {v: i for i, v in enumerate(variants)}
    X, yy = _rows(vectors, rows, y, [col[v] for v in train_views])
    return SoftmaxRegression(l2=l2, max_iter=DEFAULT_HEAD_ITERS).fit(X, yy)


__all__ = ["HeadFit", "embedded_views", "fit_head", "fit_on", "split_indices"]
