"""Sideways photos: pictures whose content looks rotated whatever the tag says.

EXIF stripped by a messenger, a scanner's output, a screenshot of a rotated photo: the file
is "upright" by its metadata, yet the picture is turned. We learn what "upright" looks like
from the dataset itself:

1. Embeddings of each file's upright view turned 0/90/180/270 degrees clockwise
   (the views "id", "r90", "r180", "r270", upright.views): class t = "turned t x 90 degrees".
2. A 4-way linear rotation head (ridge regression on one-hot targets), cross-fitted with one
   fold per *file*: exact leave-one-image-out predictions in closed form (for a linear
   smoother the held-out residual of a group G is (I - H_GG)^-1 e_G), so no file is judged by
   a head that saw any of its four copies, and the ridge strength is chosen on those held-out
   predictions. One eigendecomposition of X'X; cost linear in the number of files.
3. Four views agree: if the file is turned by t, its view rotated by j is turned by t + j, so
   the evidence for t is sum_j log p_j[(t + j) mod 4].
4. The picture's shape as a second piece of evidence: a quarter turn swaps portrait and
   landscape, so a portrait picture in a dataset shot in landscape leans towards "turned"
   (log P(shape | turn), the shares of shapes as shot estimated by EM with the rest). Its
   weight is fitted on the rotated copies with the temperature, so it fades to 0 where shape
   says nothing (classes shot in both orientations alike). On flowers-500 with 50 photos
   turned (bench/audit.py) it lifted recall at the default threshold from 0.22 (precision
   0.92) to 0.26 (precision 1.0); see docs/audit.md for the curve.
5. Calibration: a temperature fitted on the held-out rotated copies (whose rotation is
   known by construction), and the prior share of turned files estimated from the data by EM
   (floored at 1%), so the reported probability means what it says on this dataset.

A file is flagged when P(turned) >= threshold; `rotation` says how far the content is turned
clockwise, so the fix is to rotate it back by that much (counter-clockwise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..numerics import log_softmax as _log_softmax
from ..orientation import ROTATIONS

VARIANTS = tuple(ROTATIONS.values())  # "id", "r90", "r180", "r270"
MIN_IMAGES = 40  # below this the head has too few examples of "upright" to learn it
DEFAULT_THRESHOLD = 0.5  # audit flags for review; `fix --rotate-sideways` turns at 0.9 by default
PRIOR_FLOOR = 0.01
CAL_OUTLIERS = 0.0  # share of calibration copies allowed to be wrong; 0 measured best calibrated on flowers-500


@dataclass
class SidewaysResult:
    prob: np.ndarray  # [N, 4] calibrated P(content turned t*90 deg clockwise); NaN rows for bad input
    turned: np.ndarray  # [N] P(not upright) = 1 - prob[:, 0]
    rotation: np.ndarray  # [N] most likely turn in degrees clockwise among 90/180/270
    temperature: float
    prior: np.ndarray  # [4] estimated share of files per turn
    cv_accuracy: float  # held-out accuracy of the 4-view rule on rotated copies
    folds: int  # cross-fitting folds (one per image: leave-one-image-out)
    ridge: float = 0.0  # chosen ridge strength (relative to the mean eigenvalue)
    shape_weight: float = 0.0  # weight of the picture-shape evidence, fitted on the rotated copies


def view_scores(logp: np.ndarray) -> np.ndarray:
    """scores [N, 4 views, 4 classes] -> evidence [N, 4 turns]: sum_j scores[:, j, (t + j) % 4]."""
    n = logp.shape[0]
    out = np.zeros((n, 4))
    for t in range(4):
        for j in range(4):
            out[:, t] += logp[:, j, (t + j) % 4]
    return out


BLOCK = 1024  # pictures per block of the rotation head's passes: [BLOCK, 4, D] float64 at a time


def _normalised(v: np.ndarray) -> np.ndarray:
    x = np.asarray(v, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=2, keepdims=True), 1e-12)


def _moments(blocks) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """One pass: (N, mean row, centred X'X [D, D], X'y [D, 4]) of the rows."""
    n, s1, s2, sy = 0, None, None, None
    for x in blocks():
        b, views, d = x.shape
        if s1 is None:
            s1, s2, sy = np.zeros(d), np.zeros((d, d)), np.zeros((d, views))
        xf = x.reshape(-1, d)
        s1 += xf.sum(axis=0)
        s2 += xf.T @ xf
        sy += x.sum(axis=0).T - 0.25 * xf.sum(axis=0)[:, None]  # sum over rows of x (e_view - 1/4)'
        n += b
    mean = s1 / (n * 4)
    return n, mean, s2 - (n * 4) * np.outer(mean, mean), sy  # the targets sum to 0: X'y needs no centring


def _loo_group_scores(blocks, lams=(1e-2, 1e-1, 1.0, 10.0, 100.0)):
    """Ridge regression (one-hot targets) of the turn from the embedding, with exact
    leave-one-*image*-out predictions (all four copies of an image held out together):
    for a linear smoother, the held-out residual of a group G is (I - H_GG)^-1 e_G.

    blocks: a callable giving the [b, 4, D] rows block by block (called twice); they are
    centred as they come. Returns (scores [N, 4 views, 4 classes], lambda).
    One eigendecomposition of X'X serves every lambda; cost linear in N, memory one block.
    """
    n, mean, gram, sy = _moments(blocks)
    evals, q = np.linalg.eigh(gram)
    evals = np.clip(evals, 0, None)
    zty = q.T @ sy  # [D, 4]
    eye = np.eye(4)
    y = eye - 0.25  # the four views' targets, one block row per picture
    invs = [1.0 / (evals + lam * float(evals.mean())) for lam in lams]
    scores = [np.zeros((n, 4, 4)) for _ in lams]
    at = 0
    for x in blocks():
        b, v, d = x.shape
        xc = np.array(x, np.float64).reshape(-1, d)
        xc -= mean
        z = xc @ q  # one [b*4, D] product (not b small ones)
        del xc
        zg = z.reshape(b, v, d)
        for k, inv in enumerate(invs):
            zi = z * inv
            fitted = (zi @ zty).reshape(b, v, 4)
            hgg = zi.reshape(b, v, d) @ zg.transpose(0, 2, 1)  # hat-matrix blocks [b, 4, 4]
            held = np.linalg.solve(eye[None] - hgg, y[None] - fitted)
            scores[k][at:at + b] = y[None] - held
        at += b
    accs = [float((view_scores(sc).argmax(axis=1) == 0).mean()) for sc in scores]
    best = int(np.argmax(accs))  # the first of equals, as a strict ">" over lams in order
    return scores[best], lams[best]


def detect(vectors: np.ndarray, *, sizes=None, seed: int = 0) -> SidewaysResult:
    """vectors: [N, 4, D] embeddings of the views in VARIANTS order (NaN rows = unreadable).

    sizes: [N, 2] upright (width, height) of each picture, or None: the picture's shape enters
    as a second piece of evidence (`_shape_term`) next to the rotation head's.
    """
    del seed  # deterministic: no random folds
    v = np.asarray(vectors, dtype=np.float32)
    n = v.shape[0]
    ok = np.isfinite(v).all(axis=(1, 2))
    idx = np.flatnonzero(ok)

    def blocks():
        for s in range(0, len(idx), BLOCK):
            yield v[idx[s:s + BLOCK]]

    res = detect_blocks(blocks, len(idx), sizes=None if sizes is None else np.asarray(sizes, np.float64)[idx])
    prob = np.full((n, 4), np.nan)
    prob[idx] = res.prob
    rot = np.zeros(n, dtype=int)
    rot[idx] = res.rotation
    return SidewaysResult(prob, 1.0 - prob[:, 0], rot, res.temperature, res.prior, res.cv_accuracy, res.folds,
                          res.ridge, res.shape_weight)


def detect_blocks(blocks, n: int, *, sizes=None) -> SidewaysResult:
    """detect() on N readable pictures whose [b, 4, D] embeddings `blocks()` yields in order
    (called twice; e.g. read from the audit's VectorFile), so memory does not grow with N x D."""
    if n < MIN_IMAGES:
        raise ValueError(f"{n} readable images; the rotation head needs at least {MIN_IMAGES}")
    scores, lam = _loo_group_scores(lambda: (_normalised(v) for v in blocks()))
    # Calibration on held-out rotated copies: a file turned by s shows views (j + s) % 4.
    ev_by_shift = [view_scores(np.roll(scores, -s, axis=1)) for s in range(4)]
    ev_cal = np.concatenate(ev_by_shift)
    y_cal = np.repeat(np.arange(4), n)
    shape = None if sizes is None else _shape_index(np.asarray(sizes, dtype=np.float64))
    shapes = _shape_shares(shape, None)
    # the copies' shapes: a quarter turn swaps portrait and landscape
    cal_shape = None if shape is None else np.concatenate([shape if s % 2 == 0 else _SWAP[shape] for s in range(4)])
    temperature, weight = _fit_temperature(ev_cal, y_cal, _shape_term(cal_shape, shapes))
    cv_acc = float((ev_cal.argmax(axis=1) == y_cal).mean())
    post, share = _posterior(ev_by_shift[0] / temperature, weight, shape, shapes)
    prior = np.array([1 - share, share / 3, share / 3, share / 3])
    rot = (post[:, 1:].argmax(axis=1) + 1) * 90
    return SidewaysResult(post, 1.0 - post[:, 0], rot, float(temperature), prior, cv_acc, n, float(lam), weight)


def _posterior(lik, weight, shape, shapes):
    """P(turn | evidence) with the share of turned files estimated by EM. One share for
    "turned" (split evenly over 90/180/270), floored at 1%: per-turn shares collapse to zero
    on small datasets and would then silence real findings."""
    share = 0.1
    for _ in range(100):
        prior = np.array([1 - share, share / 3, share / 3, share / 3])
        post = np.exp(_log_softmax(lik + weight * _shape_term(shape, shapes) + np.log(prior)))
        share = float(np.clip(1 - post[:, 0].mean(), PRIOR_FLOOR, 0.5))
        shapes = _shape_shares(shape, post)
    prior = np.array([1 - share, share / 3, share / 3, share / 3])
    return np.exp(_log_softmax(lik + weight * _shape_term(shape, shapes) + np.log(prior))), share


#: picture shapes: 0 landscape, 1 portrait, 2 square (within 5%); a quarter turn swaps 0 and 1
_SWAP = np.array([1, 0, 2])


def _shape_index(sizes: np.ndarray) -> np.ndarray:
    """[N, 2] (width, height) -> shape per picture; an unknown size (NaN) counts as square (no evidence)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sizes[:, 0] / np.maximum(sizes[:, 1], 1)
    return np.where(r > 1.05, 0, np.where(r < 1 / 1.05, 1, 2))


def _shape_shares(shape: np.ndarray | None, post: np.ndarray | None) -> np.ndarray | None:
    """Share of each shape among the pictures as shot (turned ones counted in their shape before
    the turn), weighted by the posterior; add-one smoothed so that no shape is impossible."""
    if shape is None:
        return None
    if post is None:
        w = np.ones(len(shape))
        counts = np.bincount(shape, weights=w, minlength=3)
    else:
        straight = post[:, 0] + post[:, 2]  # upright or upside down: same shape as shot
        counts = (np.bincount(shape, weights=straight, minlength=3)
                  + np.bincount(_SWAP[shape], weights=1 - straight, minlength=3))
    return (counts + 1) / (counts.sum() + 3)


def _shape_term(shape: np.ndarray | None, shares: np.ndarray | None) -> np.ndarray | float:
    """log P(the picture's shape | turned t): a quarter turn swaps portrait and landscape, so a
    portrait picture in a dataset shot in landscape is evidence of a quarter turn (and none
    when the dataset mixes both shapes evenly). [N, 4]"""
    if shape is None:
        return 0.0
    same, swapped = np.log(shares[shape]), np.log(shares[_SWAP[shape]])
    return np.stack([same, swapped, same, swapped], axis=1)


SHAPE_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


def _fit_temperature(evidence: np.ndarray, y: np.ndarray, extra=0.0, outliers: float = CAL_OUTLIERS
                     ) -> tuple[float, float]:
    """(temperature T, weight w) maximising a contaminated likelihood of the calibration copies:
    (1 - e) * softmax(ev / T + w * extra)[y] + e / 4 (extra: the shape term; 0 without sizes).

    The calibration copies of a file that is itself turned carry wrong labels with high
    confidence; the uniform outlier term keeps those few from blunting every probability.
    """
    best = (1.0, 0.0, np.inf)
    weights = SHAPE_WEIGHTS if np.ndim(extra) else (0.0,)
    for w in weights:
        for t in np.exp(np.linspace(np.log(0.02), np.log(50), 141)):
            p = np.exp(_log_softmax(evidence / t + w * extra))[np.arange(len(y)), y]
            nll = -np.log((1 - outliers) * p + outliers / 4).mean()
            if nll < best[2]:
                best = (float(t), float(w), nll)
    return best[0], best[1]


def describe_turn(rotation_cw: int) -> str:
    if rotation_cw == 180:
        return "upside down; rotate it 180 degrees to fix"
    back = "counter-clockwise" if rotation_cw == 90 else "clockwise"
    return f"turned {rotation_cw} degrees clockwise; rotate it 90 degrees {back} to fix"
