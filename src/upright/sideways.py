"""Sideways photos: pictures whose content looks rotated whatever the tag says.

EXIF stripped by a messenger, a scanner's output, a screenshot of a rotated photo: the file
is "upright" by its metadata, yet the picture is turned. We learn what "upright" looks like
from the dataset itself:

1. Embeddings of each file's upright view turned 0/90/180/270 degrees clockwise
   (features variants "id", "r90", "r180", "r270"): class t = "turned t x 90 degrees".
2. A 4-way linear rotation head (multinomial logistic regression, L2), cross-fitted over K
   folds of *files*: a file is only ever judged by a head trained without any of its copies.
3. Four views agree: if the file is turned by t, its view rotated by j is turned by t + j, so
   the evidence for t is sum_j log p_j[(t + j) mod 4].
4. Calibration: a temperature fitted on the out-of-fold rotated copies (whose rotation is
   known by construction), and the prior share of turned files estimated from the data by EM,
   so the reported probability means what it says on this dataset.

A file is flagged when P(turned) >= threshold; `rotation` says how far the content is turned
clockwise, so the fix is to rotate it back by that much (counter-clockwise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VARIANTS = ("id", "r90", "r180", "r270")
MIN_IMAGES = 40  # below this the head has too few examples of "upright" to learn it
DEFAULT_THRESHOLD = 0.9


@dataclass
class SidewaysResult:
    prob: np.ndarray  # [N, 4] calibrated P(content turned t*90 deg clockwise); NaN rows for bad input
    turned: np.ndarray  # [N] P(not upright) = 1 - prob[:, 0]
    rotation: np.ndarray  # [N] most likely turn in degrees clockwise among 90/180/270
    temperature: float
    prior: np.ndarray  # [4] estimated share of files per turn
    cv_accuracy: float  # out-of-fold accuracy of the 4-view rule on rotated copies
    folds: int


def _fit_head(x: np.ndarray, y: np.ndarray, l2: float, iters: int = 100):
    import torch

    torch.manual_seed(0)
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y)
    w = torch.zeros(x.shape[1], 4, dtype=torch.float32, requires_grad=True)
    b = torch.zeros(4, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=iters, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), b.detach().numpy()


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def view_scores(logp: np.ndarray) -> np.ndarray:
    """logp [N, 4 views, 4 classes] -> evidence [N, 4 turns]: sum_j logp[:, j, (t + j) % 4]."""
    n = logp.shape[0]
    out = np.zeros((n, 4))
    for t in range(4):
        for j in range(4):
            out[:, t] += logp[:, j, (t + j) % 4]
    return out


def detect(vectors: np.ndarray, *, folds: int = 5, l2: float = 1e-3, seed: int = 0) -> SidewaysResult:
    """vectors: [N, 4, D] embeddings of the views in VARIANTS order (NaN rows = unreadable)."""
    v = np.asarray(vectors, dtype=np.float32)
    n = v.shape[0]
    ok = np.isfinite(v).all(axis=(1, 2))
    idx = np.flatnonzero(ok)
    if len(idx) < max(MIN_IMAGES, folds):
        raise ValueError(f"{len(idx)} readable images; the rotation head needs at least {MIN_IMAGES}")
    x = v[idx]
    x = x / np.maximum(np.linalg.norm(x, axis=2, keepdims=True), 1e-12)
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(len(idx)) % folds
    logp = np.zeros((len(idx), 4, 4))
    labels = np.tile(np.arange(4), 1)
    for k in range(folds):
        tr, te = fold_of != k, fold_of == k
        xtr = x[tr].reshape(-1, x.shape[2])
        ytr = np.tile(labels, int(tr.sum())).astype(np.int64)
        mu, sd = xtr.mean(axis=0), xtr.std(axis=0) + 1e-6
        w, b = _fit_head(((xtr - mu) / sd).astype(np.float32), ytr, l2)
        xte = (x[te] - mu) / sd
        logp[te] = _log_softmax(xte @ w + b)
    # Out-of-fold calibration on rotated copies: a file turned by s shows views (j + s) % 4.
    ev_by_shift = [view_scores(np.roll(logp, -s, axis=1)) for s in range(4)]  # evidence for each file turned by s
    ev_cal = np.concatenate(ev_by_shift)
    y_cal = np.repeat(np.arange(4), len(idx))
    temperature = _fit_temperature(ev_cal, y_cal)
    cv_acc = float((ev_cal.argmax(axis=1) == y_cal).mean())
    # Posterior for the files as they are, with the share of turned files estimated by EM.
    lik = ev_by_shift[0] / temperature
    prior = np.full(4, 0.25)
    for _ in range(50):
        post = np.exp(_log_softmax(lik + np.log(prior)))
        prior = np.clip(post.mean(axis=0), 0.002, None)
        prior /= prior.sum()
    post = np.exp(_log_softmax(lik + np.log(prior)))
    prob = np.full((n, 4), np.nan)
    prob[idx] = post
    turned = 1.0 - prob[:, 0]
    rot = np.zeros(n, dtype=int)
    rot[idx] = (post[:, 1:].argmax(axis=1) + 1) * 90
    return SidewaysResult(prob, turned, rot, float(temperature), prior, cv_acc, folds)


def _fit_temperature(evidence: np.ndarray, y: np.ndarray) -> float:
    best_t, best_nll = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.05), np.log(50), 121)):
        lp = _log_softmax(evidence / t)
        nll = -lp[np.arange(len(y)), y].mean()
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


def describe_turn(rotation_cw: int) -> str:
    if rotation_cw == 180:
        return "upside down; rotate it 180 degrees to fix"
    back = "counter-clockwise" if rotation_cw == 90 else "clockwise"
    return f"turned {rotation_cw} degrees clockwise; rotate it 90 degrees {back} to fix"
