"""Does a file attribute predict the label? (the shortcut a model can learn instead of content)

For each attribute (EXIF orientation tag, camera, stored/upright aspect, resolution bucket,
format, EXIF present, colour mode) we ask: how well does the attribute *alone* guess the
class, compared with guessing blind?

- The guesser is a per-value majority classifier (for each attribute value, the most common
  class among the other files with that value; unseen values fall back to the commonest
  class). It is scored by exact leave-one-out cross-validation, computed in closed form from
  the value x label contingency table (ties give fractional credit), so it is deterministic
  and costs O(values x classes^2).
- Chance level is not the class prior under leave-one-out (a balanced dataset scores 0 there),
  so the effect size is chance-corrected against the permutation distribution:
  ``score = (acc - mean_null) / (1 - mean_null)`` (0 = no information, 1 = a perfect guess).
- Significance: a permutation test (labels shuffled, the same statistic recomputed) gives a
  p-value that is exact at any sample size, including 20 images per class.

Severity combines both: error needs a strong effect (score >= 0.6) that is very unlikely by
chance (p <= 0.001); warning score >= 0.3 and p <= 0.005; info score >= 0.15 and p <= 0.005
(1999 permutations; the thresholds are strict because eight attributes are tested at once).
Attributes that upright itself neutralises (the orientation tag, the stored aspect and EXIF
presence: upright applies the tag before anything sees the pixels, and the network never sees
metadata) are capped at warning (EXIF presence at info): a trap for other tools, not for training here.

Aliased findings are folded: when a neutralised attribute's value is a function of another
flagged attribute's value on every file (tag 6 <=> stored portrait <=> has EXIF), it is
reported once, inside the finding it follows from (key `also`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from ..orientation import STORED_WORDS, stored_words
from .severity import SEVERITY_RANK

ATTRIBUTES = (
    "exif_orientation",
    "camera",
    "stored_aspect",
    "upright_aspect",
    "resolution",
    "format",
    "has_exif",
    "color_mode",
)

#: Plain words for each attribute, used in messages and plots.
ATTRIBUTE_WORDS = {
    "exif_orientation": "EXIF orientation tag",
    "camera": "camera make/model",
    "stored_aspect": "stored pixel shape (portrait/landscape as stored)",
    "upright_aspect": "picture shape (portrait/landscape as shown)",
    "resolution": "resolution",
    "format": "file format",
    "has_exif": "EXIF present",
    "color_mode": "colour mode",
}

#: Attributes whose effect upright removes before the model sees any pixel.
NEUTRALISED_BY_UPRIGHT = {"exif_orientation", "stored_aspect", "has_exif"}
#: The most severe a finding on these attributes can be (the network never sees them).
SEVERITY_CAP = {"exif_orientation": "warning", "stored_aspect": "warning", "has_exif": "info"}

_MP_EDGES = [0.05, 0.3, 1.0, 3.0, 8.0, 16.0, 32.0]
_MP_NAMES = ["<0.05 MP", "0.05-0.3 MP", "0.3-1 MP", "1-3 MP", "3-8 MP", "8-16 MP", "16-32 MP", ">32 MP"]


def aspect_bucket(size: tuple[int, int] | None) -> str | None:
    if not size:
        return None
    w, h = size
    r = w / h
    return "landscape" if r > 1.05 else "portrait" if r < 1 / 1.05 else "square"


def resolution_bucket(size: tuple[int, int] | None) -> str | None:
    if not size:
        return None
    mp = size[0] * size[1] / 1e6
    return _MP_NAMES[int(np.searchsorted(_MP_EDGES, mp, side="right"))]


def attributes_of(facts) -> dict[str, str]:
    """The attribute values of one readable file (metadata.FileFacts), as strings."""
    return {
        # the transform a viewer applies (no tag, tag 1 and malformed tags all mean "as stored")
        "exif_orientation": str(facts.orientation or 1),
        "camera": facts.camera or "none",
        "stored_aspect": aspect_bucket(facts.stored_size) or "unknown",
        "upright_aspect": aspect_bucket(facts.upright_size) or "unknown",
        "resolution": resolution_bucket(facts.stored_size) or "unknown",
        "format": facts.format or "unknown",
        "has_exif": "yes" if facts.has_exif else "no",
        "color_mode": facts.mode or "unknown",
    }


def describe_value(attribute: str, value: str) -> str:
    """'stored sideways (tag 6)' style words for an attribute value."""
    if attribute == "exif_orientation":
        if value == "1":
            return "stored upright (no tag or tag 1)"
        words = stored_words(int(value)) if value in {str(v) for v in STORED_WORDS} else "tagged"
        return f"{words} (tag {value})"
    if attribute == "camera":
        return "from an unknown camera" if value == "none" else f"from camera '{value}'"
    if attribute == "stored_aspect":
        return f"stored {value}"
    if attribute == "upright_aspect":
        return f"{value} pictures"
    if attribute == "resolution":
        return f"{value}"
    if attribute == "format":
        return f"{value} files"
    if attribute == "has_exif":
        return "with EXIF" if value == "yes" else "without EXIF"
    if attribute == "color_mode":
        return f"colour mode {value}"
    return f"{attribute}={value}"


def loo_accuracy(table: np.ndarray) -> float | np.ndarray:
    """Leave-one-out accuracy of the per-value majority classifier, from a [values, classes] table.

    Leaving one file of (value v, class c) out decrements table[v, c]; the prediction is the
    majority class of what remains in row v (the global majority when the row is empty);
    ties give credit 1/#tied when the true class is among them. A stack of tables
    [..., values, classes] gives an array of accuracies.
    """
    t = np.asarray(table, dtype=np.float64)
    n = t.sum(axis=(-2, -1))
    n_cls = t.shape[-1]
    glob = t.sum(axis=-2)  # [..., C]
    total = np.zeros(t.shape[:-2])
    for c in range(n_cls):
        rows = t.copy()
        rows[..., c] -= 1.0
        m = rows.max(axis=-1)
        ties = (rows == m[..., None]).sum(axis=-1)
        credit = (rows[..., c] == m) / ties
        g = glob.copy()
        g[..., c] -= 1.0
        gm = g.max(axis=-1)
        gcredit = (g[..., c] == gm) / (g == gm[..., None]).sum(axis=-1)
        empty = rows.sum(axis=-1) <= 0
        credit = np.where(empty, gcredit[..., None], credit)
        total = total + (t[..., c] * credit).sum(axis=-1)
    acc = np.where(n > 1, total / np.maximum(n, 1), 0.0)
    return float(acc) if acc.ndim == 0 else acc


def _table(values: np.ndarray, labels: np.ndarray, n_vals: int, n_cls: int) -> np.ndarray:
    return np.bincount(values * n_cls + labels, minlength=n_vals * n_cls).reshape(n_vals, n_cls)


@dataclass
class LeakResult:
    attribute: str
    values: list[str]  # value names, rows of `table`
    labels: list[str]  # class names, columns of `table`
    table: np.ndarray  # counts [values, classes]
    accuracy: float  # leave-one-out accuracy of the attribute-only guesser
    prior_accuracy: float  # always guessing the commonest class (resubstitution)
    null_accuracy: float  # mean accuracy with labels shuffled
    score: float  # chance-corrected effect size, <= 1
    p_value: float
    n: int
    severity: str | None = None
    message: str = ""
    paths: list[str] = field(default_factory=list)
    also: list[str] = field(default_factory=list)  # aliased attributes folded into this finding

    def to_finding(self) -> dict:
        return {
            "kind": "label_leak",
            "severity": self.severity,
            "attribute": self.attribute,
            "score": round(float(self.score), 4),
            "message": self.message,
            "paths": self.paths,
            "accuracy": round(self.accuracy, 4),
            "baseline": round(self.prior_accuracy, 4),
            "null_accuracy": round(self.null_accuracy, 4),
            "p_value": float(f"{self.p_value:.4g}"),
            "n": self.n,
            "also": list(self.also),
            "table": {"values": self.values, "labels": self.labels, "counts": self.table.astype(int).tolist()},
        }


def severity_for(score: float, p: float, attribute: str) -> str | None:
    if p <= 0.001 and score >= 0.6:
        sev = "error"
    elif p <= 0.005 and score >= 0.3:
        sev = "warning"
    elif p <= 0.005 and score >= 0.15:
        sev = "info"
    else:
        return None
    cap = SEVERITY_CAP.get(attribute)
    if cap and SEVERITY_RANK[sev] < SEVERITY_RANK[cap]:
        sev = cap
    return sev


def assess_attribute(
    attribute: str, values: Sequence[str], labels: Sequence[str], *, n_perm: int = 1999, seed: int = 0
) -> LeakResult | None:
    """Effect size and permutation p-value for one attribute; None when it has one value or one class."""
    val_names = sorted(set(values), key=lambda v: (-Counter(values)[v], v))
    lab_names = sorted(set(labels))
    if len(val_names) < 2 or len(lab_names) < 2:
        return None
    vi = {v: i for i, v in enumerate(val_names)}
    li = {c: i for i, c in enumerate(lab_names)}
    v = np.array([vi[x] for x in values], dtype=np.int64)
    y = np.array([li[x] for x in labels], dtype=np.int64)
    nv, nc = len(val_names), len(lab_names)
    table = _table(v, y, nv, nc)
    acc = loo_accuracy(table)
    rng = np.random.default_rng(seed)
    null = np.empty(n_perm)
    chunk = max(1, 2_000_000 // max(1, len(y)))
    for start in range(0, n_perm, chunk):
        k = min(chunk, n_perm - start)
        perms = rng.permuted(np.broadcast_to(y, (k, len(y))), axis=1)
        idx = (np.arange(k)[:, None] * (nv * nc) + v[None, :] * nc + perms).ravel()
        tables = np.bincount(idx, minlength=k * nv * nc).reshape(k, nv, nc)
        null[start:start + k] = loo_accuracy(tables)
    null_mean = float(null.mean())
    p = float((1 + np.sum(null >= acc - 1e-12)) / (1 + n_perm))
    score = (acc - null_mean) / (1 - null_mean) if null_mean < 1 else 0.0
    prior = float(table.sum(axis=0).max() / table.sum())
    return LeakResult(attribute, val_names, lab_names, table, acc, prior, null_mean, float(score), p, len(values))


_ORDINARY = {"1", "none", "no", "unknown", "landscape", "RGB", "JPEG"}


def _contrast(res: LeakResult) -> tuple[str, str, float, str, float]:
    """The value with the biggest difference in share between two classes: (value, hi, hi%, lo, lo%)."""
    shares = res.table / np.maximum(res.table.sum(axis=0, keepdims=True), 1)
    best = None
    for r, value in enumerate(res.values):
        hi, lo = int(np.argmax(shares[r])), int(np.argmin(shares[r]))
        gap = shares[r, hi] - shares[r, lo]
        # on a tie, name the unusual value (tag 6, a camera) rather than the ordinary one
        key = (round(gap, 9), value not in _ORDINARY)
        if best is None or key > best[0]:
            best = (key, value, res.labels[hi], shares[r, hi], res.labels[lo], shares[r, lo])
    _, value, hi, hs, lo, ls = best
    return value, hi, float(hs), lo, float(ls)


_ADVICE = {
    "exif_orientation": "tools that ignore EXIF (Keras, tf.io, torchvision's ImageFolder, plain Pillow) will learn "
    "rotation instead of content. upright applies the tag, so training here is safe; run `upright fix` before "
    "you hand this data to other tools.",
    "stored_aspect": "tools that ignore EXIF see differently shaped pixels per class and can learn the shape. "
    "upright applies the tag, so training here is safe; run `upright fix` before you hand this data to other tools.",
    "upright_aspect": "the picture shape differs by class; cropping and resizing leave traces a model can learn. "
    "Reshoot or crop the classes alike.",
    "camera": "a model can learn the camera (sensor noise, colour, lens) instead of the content; "
    "mix cameras across classes.",
    "resolution": "a model can learn resizing and sharpness traces instead of the content; "
    "collect the classes at similar resolutions.",
    "format": "a model can learn compression artefacts instead of the content; convert all classes the same way.",
    "has_exif": "the classes went through different pipelines (EXIF stripped for some: messengers, screenshots, "
    "editors); their pixels may differ in ways a model can learn.",
    "color_mode": "a model can tell greyscale or palette images from colour ones at a glance; "
    "convert all classes to the same mode.",
}


def message_for(res: LeakResult) -> str:
    value, hi, hs, lo, ls = _contrast(res)
    words = ATTRIBUTE_WORDS[res.attribute].split(" (")[0]
    return (
        f"{words} predicts the label: {hs:.0%} of '{hi}' photos are {describe_value(res.attribute, value)} "
        f"vs {ls:.0%} of '{lo}'; the {words} alone guesses the class right for {res.accuracy:.0%} of files "
        f"(leave-one-out; {res.prior_accuracy:.0%} by always guessing the biggest class, "
        f"permutation p={res.p_value:.2g}). {_ADVICE[res.attribute][0].upper() + _ADVICE[res.attribute][1:]}"
    )


def find_leaks(
    rows: Iterable[tuple[str, str, dict[str, str]]], *, n_perm: int = 1999, seed: int = 0
) -> tuple[list[LeakResult], list[LeakResult]]:
    """rows: (path, label, attributes). Returns (findings with a severity, every result tested)."""
    rows = list(rows)
    out, tested = [], []
    for attribute in ATTRIBUTES:
        vals = [a[attribute] for _, _, a in rows]
        labels = [lab for _, lab, _ in rows]
        res = assess_attribute(attribute, vals, labels, n_perm=n_perm, seed=seed)
        if res is None:
            continue
        tested.append(res)
        res.severity = severity_for(res.score, res.p_value, attribute)
        if res.severity:
            res.message = message_for(res)
            value, hi, *_ = _contrast(res)
            res.paths = [p for p, lab, a in rows if lab == hi and a[attribute] == value]
            out.append(res)
    return _fold(out, rows), tested


def _is_function_of(b: str, a: str, rows) -> bool:
    seen: dict[str, str] = {}
    for _, _, attrs in rows:
        if seen.setdefault(attrs[a], attrs[b]) != attrs[b]:
            return False
    return True


def _fold(found: list[LeakResult], rows) -> list[LeakResult]:
    order = [a for a in ATTRIBUTES if a not in NEUTRALISED_BY_UPRIGHT] + [
        a for a in ATTRIBUTES if a in NEUTRALISED_BY_UPRIGHT]
    found = sorted(found, key=lambda r: order.index(r.attribute))
    kept: list[LeakResult] = []
    for res in found:
        host = None
        if res.attribute in NEUTRALISED_BY_UPRIGHT:
            host = next((k for k in kept if _is_function_of(res.attribute, k.attribute, rows)), None)
        if host is None:
            res.also = []
            kept.append(res)
        else:
            host.also.append(res.attribute)
    for k in kept:
        if k.also:
            words = ", ".join(ATTRIBUTE_WORDS[a].split(" (")[0] for a in k.also)
            k.message += f" The same files also differ by class in: {words} (same split, reported once)."
    return kept
