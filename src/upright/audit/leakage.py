"""Does a file attribute predict the label? (the shortcut a model can learn instead of content)

Fifteen attributes read from the headers (ATTRIBUTES: orientation tag, camera, shapes,
resolution, format, EXIF, colour mode, JPEG quality, capture day, software, GPS, colour
profile, bit depth, source: taken with `upright studio`'s camera or an uploaded file) are
tested two ways, all in one family of tests:

- Per class (the shortcut that matters): for every class c and value v, one class against the
  rest, "is v over-represented in c?": the one-sided Fisher exact test (hypergeometric tail,
  stats.hypergeom_sf). Shuffling the labels keeps both margins of the 2x2 table, so this is the
  exact permutation p-value at any sample size, with 2 classes or 200. A majority vote over all
  classes cannot see "tag 6 => daisy" when the tag-1 row is a near tie; this test can.
- Overall: the per-value majority guesser scored by exact leave-one-out (closed form from the
  value x class table), chance-corrected against label permutations,
  ``score = (acc - mean_null) / (1 - mean_null)``; it catches diffuse dependence that no single
  class carries.

False alarms: hundreds of (attribute x class x value) cells are tested at once, so p-values are
adjusted by Benjamini-Hochberg at a false discovery rate of 5%, in two levels (`adjust`):
attributes first (each attribute's tests combined by Simes' method, BH over the attributes),
then the cells inside each selected attribute (BH at 5% x selected / attributes, Benjamini &
Bogomolov 2014). BH rather than Holm because a real shortcut shows up in several tests together
(tag 6 for daisy, the other classes' mirror cells, the stored shape, EXIF present) and BH's power
grows with them, while on data with no shortcut at all (every null true) the FDR *is* the chance
of any false alarm, so a clean dataset stays quiet at least 95% of the time (the discrete exact
tests make it quieter still: the controls in tests/ and bench/leak_detection.py raise nothing).
Two levels rather than one because the many true cells of one shortcut would otherwise lower
the bar for unrelated attributes (a single-level BH let random attributes through at info next
to a real confound). Cells whose margins cannot reach p <= 5% even in the most extreme table (a
capture day with three photos) are left out of the family: that depends only on the margins,
which label shuffling keeps, so the control stays valid, and rare values do not dilute real
findings.

Severity follows the harm, not the p-value. The effect size of a cell is the share of class c
that value v identifies:

    identifiable = share of c with v  x  (P(c | v) - P(c)) / (1 - P(c))

= the share of c's photos when only c has the value; shrinks to 0 as the value points to c no
more than chance. A significant cell (q <= FDR) is an error from 0.75 (a class fully
identifiable), a warning from 0.4 (half), info from 0.15. The overall test alone gives at most a
warning (score >= 0.5), info from 0.2. Attributes that upright itself neutralises (orientation
tag, stored shape, EXIF, GPS, colour profile: upright applies the tag and converts to sRGB before
any pixel reaches a model, and metadata never does) are capped at warning: a trap for other
tools, not for training here.

Naming the cause: findings are folded into the one they follow from (key `also`) when they name
the same class and carry the same split: the stored pixel shape always folds into the orientation
tag (or the upright shape), EXIF present into an EXIF-borne attribute, and any two attributes
whose flagged files coincide (Jaccard >= 0.8) into the more severe one, the orientation tag first
on a tie (PRIORITY).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from ..metadata import STUDIO_CAMERA
from ..orientation import STORED_WORDS, stored_words
from ..words import count
from . import stats
from .finding import Finding
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
    "jpeg_quality",
    "capture_date",
    "software",
    "gps",
    "color_profile",
    "bit_depth",
    "source",
)

#: Plain words for each attribute, used in messages and plots (short name before " (").
ATTRIBUTE_WORDS = {
    "exif_orientation": "EXIF orientation tag",
    "camera": "camera make/model",
    "stored_aspect": "stored pixel shape (portrait/landscape as stored)",
    "upright_aspect": "picture shape (portrait/landscape as shown)",
    "resolution": "resolution",
    "format": "file format",
    "has_exif": "EXIF present",
    "color_mode": "colour mode",
    "jpeg_quality": "JPEG quality (estimated from the quantisation tables)",
    "capture_date": "capture day (EXIF DateTimeOriginal)",
    "software": "software (EXIF Software: phone firmware or editor)",
    "gps": "GPS position present",
    "color_profile": "colour profile (ICC description)",
    "bit_depth": "bit depth (bits per channel)",
    "source": "source (captured in the studio page or an uploaded file)",
}

#: Attributes whose effect upright removes before the model sees any pixel.
NEUTRALISED_BY_UPRIGHT = {"exif_orientation", "stored_aspect", "has_exif", "gps", "color_profile"}
#: The most severe a finding on these attributes can be (the network never sees them).
SEVERITY_CAP = {a: "warning" for a in NEUTRALISED_BY_UPRIGHT}
#: Which finding names the cause when two carry the same split (earlier = the cause).
PRIORITY = ("exif_orientation", "camera", "source", "software", "capture_date", "format", "jpeg_quality", "upright_aspect",
            "resolution", "color_mode", "bit_depth", "color_profile", "gps", "has_exif", "stored_aspect")
#: Attributes that only exist when a file carries EXIF (EXIF present follows from them).
EXIF_BORNE = {"exif_orientation", "camera", "software", "capture_date", "gps", "source"}

FDR = 0.05  # Benjamini-Hochberg false discovery rate
CELL_LEVELS = (("error", 0.75), ("warning", 0.4), ("info", 0.15))  # identifiable share of one class
OVERALL_LEVELS = (("warning", 0.5), ("info", 0.2))  # chance-corrected overall score
SAME_SPLIT = 0.8  # Jaccard of the flagged files above which two findings are one split

_MP_EDGES = [0.05, 0.3, 1.0, 3.0, 8.0, 16.0, 32.0]
_MP_NAMES = ["<0.05 MP", "0.05-0.3 MP", "0.3-1 MP", "1-3 MP", "3-8 MP", "8-16 MP", "16-32 MP", ">32 MP"]
_Q_EDGES = [50, 70, 80, 85, 90, 95]
_Q_NAMES = ["q<=50", "q51-70", "q71-80", "q81-85", "q86-90", "q91-95", "q96-100"]


def short_words(attribute: str) -> str:
    return ATTRIBUTE_WORDS.get(attribute, attribute).split(" (")[0]


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


def quality_bucket(quality: int | None, fmt: str | None) -> str:
    if fmt not in ("JPEG", "MPO"):
        return "not JPEG"
    if quality is None:
        return "unknown"
    return _Q_NAMES[int(np.searchsorted(_Q_EDGES, quality, side="left"))]


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
        "jpeg_quality": quality_bucket(getattr(facts, "jpeg_quality", None), facts.format),
        "capture_date": getattr(facts, "capture_date", None) or "none",
        "software": getattr(facts, "software", None) or "none",
        "gps": "yes" if getattr(facts, "gps", False) else "no",
        "color_profile": getattr(facts, "color_profile", None) or "none",
        "bit_depth": str(getattr(facts, "bit_depth", None) or "unknown"),
        "source": "studio camera" if getattr(facts, "software", None) == STUDIO_CAMERA else "file",
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
    if attribute == "jpeg_quality":
        if value.startswith("q"):
            return f"JPEG quality {value[1:].replace('<=', 'at most ')}"
        return "not JPEG" if value == "not JPEG" else "of unknown JPEG quality"
    if attribute == "capture_date":
        return "without a capture date" if value == "none" else f"shot on {value}"
    if attribute == "software":
        return "without a Software tag" if value == "none" else f"written by software '{value}'"
    if attribute == "gps":
        return "with a GPS position" if value == "yes" else "without a GPS position"
    if attribute == "color_profile":
        return "without a colour profile" if value == "none" else f"tagged with colour profile '{value}'"
    if attribute == "bit_depth":
        return f"{value} bits per channel" if value.isdigit() else "of unknown bit depth"
    if attribute == "source":
        return "captured in the studio page" if value == "studio camera" else "uploaded as files"
    return f"{attribute}={value}"


#: Values nobody would call a shortcut by themselves; on a tie the unusual value is named.
_ORDINARY = {"1", "none", "no", "unknown", "landscape", "RGB", "JPEG", "8", "not JPEG", "file"}


def pct(x: float) -> str:
    """A share in words that never rounds a real difference away: 0%, <1%, 37%, >99%, 100%."""
    if x <= 0:
        return "0%"
    if x >= 1:
        return "100%"
    if x < 0.005:
        return "<1%"
    if x > 0.995:
        return ">99%"
    return f"{x:.0%}"


@dataclass
class Cell:
    """One (attribute, class, value) test: is the value over-represented in the class?"""

    attribute: str
    label: str
    value: str
    count: int  # files of the class with the value
    n_class: int  # files of the class
    n_value: int  # files with the value
    n: int  # files
    p_value: float  # one-sided Fisher exact (hypergeometric) p
    q_value: float | None = None  # BH-adjusted; None when the margins cannot reach the FDR level
    severity: str | None = None

    @property
    def share_in(self) -> float:
        return self.count / self.n_class if self.n_class else 0.0

    @property
    def share_out(self) -> float:
        rest = self.n - self.n_class
        return (self.n_value - self.count) / rest if rest else 0.0

    @property
    def identifiable(self) -> float:
        """Share of the class the value identifies: share_in x (P(c|v) - P(c)) / (1 - P(c))."""
        if not self.n_value or self.n_class >= self.n:
            return 0.0
        prior = self.n_class / self.n
        return self.share_in * (self.count / self.n_value - prior) / (1 - prior)

    def to_dict(self) -> dict:
        return {"class": self.label, "value": self.value, "count": self.count, "n_class": self.n_class,
                "share_in_class": round(self.share_in, 4), "share_elsewhere": round(self.share_out, 4),
                "score": round(self.identifiable, 4), "p_value": float(f"{self.p_value:.4g}"),
                "q_value": None if self.q_value is None else float(f"{self.q_value:.4g}"),
                "severity": self.severity}


@dataclass
class LeakResult:
    """Every test of one attribute, and the finding it makes (severity set) or not."""

    attribute: str
    values: list[str]  # value names, rows of `table`
    labels: list[str]  # class names, columns of `table`
    table: np.ndarray  # counts [values, classes]
    accuracy: float  # leave-one-out accuracy of the attribute-only guesser
    prior_accuracy: float  # always guessing the commonest class (resubstitution)
    null_accuracy: float  # mean accuracy with labels shuffled
    overall_score: float  # chance-corrected overall effect size, <= 1 (negative: less than chance)
    overall_p: float  # permutation p of the overall test
    n: int
    n_perm: int = 0
    cells: list[Cell] = field(default_factory=list)  # every class x value cell holding a file
    overall_q: float | None = None
    overall_severity: str | None = None
    severity: str | None = None
    message: str = ""
    paths: list[str] = field(default_factory=list)
    also: list[str] = field(default_factory=list)  # aliased attributes folded into this finding
    folded_into: str | None = None  # set when this attribute is reported inside another finding
    n_tests: int = 0  # tests in the whole family (every attribute)
    n_attributes: int = 0  # attributes tested (level-1 family)
    attribute_q: float | None = None  # BH-adjusted Simes p of the attribute (level 1)
    empty_min_p: np.ndarray | None = None  # smallest attainable p of each empty cell (p = 1 there)

    @property
    def flagged(self) -> list[Cell]:
        """Cells with a severity, most harmful first."""
        out = [c for c in self.cells if c.severity]
        return sorted(out, key=lambda c: (SEVERITY_RANK[c.severity], -c.identifiable, c.value in _ORDINARY, c.label))

    @property
    def best(self) -> Cell | None:
        """The cell a message names: the most harmful flagged one, else the most uneven tested one."""
        flagged = self.flagged
        if flagged:
            return flagged[0]
        if not self.cells:
            return None
        return max(self.cells, key=lambda c: (c.identifiable, c.value not in _ORDINARY))

    @property
    def per_class(self) -> bool:
        """True when a class cell (not the overall test) carries the severity and names the finding."""
        flagged = self.flagged
        return bool(flagged) and (self.overall_severity is None
                                  or SEVERITY_RANK[flagged[0].severity] <= SEVERITY_RANK[self.overall_severity])

    @property
    def score(self) -> float:
        """The effect size behind the severity: the named cell's identifiable share, or the overall score."""
        if self.per_class:
            return max(self.flagged[0].identifiable, 0.0)
        if self.overall_severity:
            return max(self.overall_score, 0.0)
        b = self.best
        return max(b.identifiable, 0.0) if b is not None else 0.0

    @property
    def p_value(self) -> float:
        return self.flagged[0].p_value if self.per_class else self.overall_p

    @property
    def q_value(self) -> float | None:
        return self.flagged[0].q_value if self.per_class else self.overall_q

    def to_finding(self) -> Finding:
        b = self.flagged[0] if self.per_class else None
        return Finding("label_leak", self.severity, self.message, self.attribute, round(float(self.score), 4),
                       self.paths, {
            "test": "per_class" if b is not None else "overall",
            "class": b.label if b is not None else None,
            "value": b.value if b is not None else None,
            "share_in_class": round(b.share_in, 4) if b is not None else None,
            "share_elsewhere": round(b.share_out, 4) if b is not None else None,
            "p_value": float(f"{self.p_value:.4g}"),
            "q_value": None if self.q_value is None else float(f"{self.q_value:.4g}"),
            "n_tests": self.n_tests,
            "classes": [c.to_dict() for c in self.flagged],
            "accuracy": round(self.accuracy, 4),
            "baseline": round(self.prior_accuracy, 4),
            "null_accuracy": round(self.null_accuracy, 4),
            "overall_score": round(float(self.overall_score), 4),
            "overall_p_value": float(f"{self.overall_p:.4g}"),
            "n": self.n,
            "also": list(self.also),
            "table": {"values": self.values, "labels": self.labels, "counts": self.table.astype(int).tolist()},
            "cells": [{"class": c.label, "value": c.value, "count": c.count} for c in shown_cells(self)],
        })

    def to_table(self) -> dict:
        """The report's per-attribute row (every tested attribute, flagged or not)."""
        b = self.best
        return {"values": self.values, "labels": self.labels, "counts": self.table.astype(int).tolist(),
                "accuracy": round(self.accuracy, 4), "baseline": round(self.prior_accuracy, 4),
                "score": round(self.overall_score, 4), "p_value": float(f"{self.overall_p:.4g}"),
                "q_value": None if self.overall_q is None else float(f"{self.overall_q:.4g}"),
                "attribute_q": None if self.attribute_q is None else float(f"{self.attribute_q:.4g}"),
                "best": b.to_dict() if b is not None else None,
                "flagged": [[c.label, c.value] for c in self.flagged],
                "severity": self.severity, "folded_into": self.folded_into, "tested": True}


def _cap(severity: str | None, attribute: str) -> str | None:
    cap = SEVERITY_CAP.get(attribute)
    if severity and cap and SEVERITY_RANK[severity] < SEVERITY_RANK[cap]:
        return cap
    return severity


def _level(x: float, levels) -> str | None:
    for sev, threshold in levels:
        if x >= threshold - 1e-12:
            return sev
    return None


def default_permutations(n: int) -> int:
    """Permutations for the overall test: 1999, fewer on big datasets (at least 199)."""
    return int(min(1999, max(199, 2_000_000 // max(n, 1))))


def assess_attribute(attribute: str, values: Sequence[str], labels: Sequence[str], *, n_perm: int | None = None,
                     seed: int = 0, perms: np.ndarray | None = None, label_names: Sequence[str] | None = None
                     ) -> LeakResult | None:
    """Per-class cells (exact p) and the overall test (permutation p) for one attribute.

    None when the attribute has one value or there is one class. q-values and severities are
    set by `adjust`, which corrects the whole family at once. `perms` (shuffled label indices
    into `label_names`, [k, n]) lets every attribute share one set of permutations.
    """
    # one pass: value indices and counts from one np.unique (no count per value)
    uniq, first_v, counts = np.unique(np.asarray(values, dtype=object), return_inverse=True, return_counts=True)
    order = sorted(range(len(uniq)), key=lambda i: (-counts[i], uniq[i]))  # commonest first, then by name
    val_names = [str(uniq[i]) for i in order]
    lab_names = list(label_names) if label_names is not None else sorted(set(labels))
    if len(val_names) < 2 or len(lab_names) < 2:
        return None
    rank_of = np.empty(len(uniq), dtype=np.int64)
    rank_of[order] = np.arange(len(uniq))
    v = rank_of[first_v.ravel()]
    li = {c: i for i, c in enumerate(lab_names)}
    y = np.array([li[x] for x in labels], dtype=np.int64)
    nv, nc, n = len(val_names), len(lab_names), len(values)
    table = np.bincount(v * nc + y, minlength=nv * nc).reshape(nv, nc)
    # per-class cells
    k_v = table.sum(axis=1)
    n_c = table.sum(axis=0)
    # Cells with no file (p = 1, nothing to name) stay numbers: only their smallest possible p
    # matters, for the size of the family (a capture day x 200 classes is mostly empty cells).
    rs, cs = np.nonzero(table)
    p = stats.hypergeom_sf(table[rs, cs], k_v[rs], n_c[cs], n)
    cells = [Cell(attribute, lab_names[c], val_names[r], int(table[r, c]), int(n_c[c]), int(k_v[r]), n, float(pv))
             for r, c, pv in zip(rs.tolist(), cs.tolist(), p.tolist())]
    empty = table == 0
    empty_min_p = stats.hypergeom_min_p(np.broadcast_to(k_v[:, None], table.shape)[empty],
                                        np.broadcast_to(n_c[None, :], table.shape)[empty], n)
    # overall
    if perms is None:
        perms = stats.shuffled_labels(y, default_permutations(n) if n_perm is None else n_perm, seed)
    acc = stats.loo_accuracy(table)
    n_perm = perms.shape[0]
    null = stats.null_loo_accuracy(v, perms, nv, nc)
    null_mean = float(null.mean())
    overall_p = float((1 + np.sum(null >= acc - 1e-12)) / (1 + n_perm))
    score = (acc - null_mean) / (1 - null_mean) if null_mean < 1 else 0.0
    prior = float(n_c.max() / n)
    return LeakResult(attribute, val_names, lab_names, table, float(acc), prior, null_mean, float(score),
                      overall_p, n, n_perm, cells, empty_min_p=empty_min_p)


def adjust(results: Sequence[LeakResult], fdr: float = FDR) -> int:
    """Two-level Benjamini-Hochberg; sets every q-value and severity. Returns the number of tests.

    Level 1: each attribute's tests (its testable cells and its overall test) are combined by
    Simes' method and BH selects attributes at `fdr`. Level 2 (Benjamini & Bogomolov 2014):
    inside each of the R selected attributes out of m, BH at fdr * R / m; reported cell q-values
    are scaled so that q <= fdr means "flagged". One shortcut shows up in many cells of its
    attribute (the class's value, the other classes' mirror values); grouping them keeps that
    pile of true cells from lowering the bar for unrelated attributes.
    """
    families = []
    for r in results:
        tests: list[tuple[object, float]] = []
        if r.cells:
            min_p = stats.hypergeom_min_p([c.n_value for c in r.cells], [c.n_class for c in r.cells], r.n)
            tests += [(c, c.p_value) for c, mp in zip(r.cells, min_p) if mp <= fdr]
        if r.empty_min_p is not None:  # empty testable cells: p = 1, they only count
            tests += [(None, 1.0)] * int(np.sum(r.empty_min_p <= fdr))
        if 1.0 / (1 + r.n_perm) <= fdr:
            tests.append((r, r.overall_p))
        families.append(tests)
    attr_q = stats.benjamini_hochberg([stats.simes([pv for _, pv in t]) for t in families])
    selected = int(np.sum(attr_q <= fdr))
    n_tests = sum(len(t) for t in families)
    for r, tests, aq in zip(results, families, attr_q):
        r.n_tests, r.n_attributes = n_tests, len(results)
        r.attribute_q = float(aq)
        if aq <= fdr and tests:
            q = np.minimum(1.0, stats.benjamini_hochberg([pv for _, pv in tests]) * len(results) / selected)
            for (obj, _), qv in zip(tests, q):
                if isinstance(obj, Cell):
                    obj.q_value = float(qv)
                elif obj is not None:
                    obj.overall_q = float(qv)
        for c in r.cells:
            sig = c.q_value is not None and c.q_value <= fdr
            c.severity = _cap(_level(c.identifiable, CELL_LEVELS), r.attribute) if sig else None
        sig = r.overall_q is not None and r.overall_q <= fdr
        r.overall_severity = _cap(_level(r.overall_score, OVERALL_LEVELS), r.attribute) if sig else None
        sevs = [c.severity for c in r.cells if c.severity] + ([r.overall_severity] if r.overall_severity else [])
        r.severity = min(sevs, key=SEVERITY_RANK.__getitem__) if sevs else None
    return n_tests


def others(labels, label: str) -> str:
    """The classes besides `label`, in words: "'zero'" or "the other 3 classes"."""
    rest = [lab for lab in labels if lab != label]
    return f"'{rest[0]}'" if len(rest) == 1 else f"the other {len(rest)} classes"


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
    "jpeg_quality": "a model can learn compression artefacts (blockiness, lost detail) instead of the content; "
    "the classes were saved or re-sent differently (messengers and editors recompress). Re-encode all classes alike.",
    "capture_date": "photos taken in one session share light, background and framing, which a model can learn "
    "instead of the subject; shoot every class across several days and places.",
    "software": "the classes went through different software (phone firmware, an editor, an exporter), which "
    "leaves colour, sharpening and compression traces a model can learn; process all classes alike.",
    "gps": "the classes come from different phones or sharing paths (GPS kept or stripped); the network never "
    "sees GPS, but it hints that the pixels went through different pipelines too.",
    "color_profile": "the classes come from different devices or exports (iPhones tag Display P3, most others "
    "sRGB). upright converts every picture to sRGB, so the profile itself is neutralised here; tools that "
    "ignore profiles see shifted colours per class.",
    "source": "photos taken with the studio page's camera (a browser canvas: the video stream's resolution, "
    "processing and compression) look different from uploaded phone photos in ways a model can learn; "
    "collect every class both ways, or all one way.",
    "bit_depth": "the classes were saved at different bit depths (16-bit exports, 8-bit photos), which leaves "
    "tonal traces; convert all classes alike.",
}


def named_cells(res: LeakResult) -> list[Cell]:
    """The cells a per-class finding names: the most harmful, then (3+ classes) every other class
    the attribute singles out at warning or worse. With two classes the other class's cell is the
    mirror image of the first (its complement), so it is not named twice."""
    flagged = res.flagged
    if not flagged:
        return []
    more = [c for c in flagged[1:] if c.severity in ("error", "warning")] if len(res.labels) > 2 else []
    return [flagged[0]] + more


def message_for(res: LeakResult) -> str:
    words = short_words(res.attribute)
    flagged = res.flagged
    advice = _ADVICE.get(res.attribute, "")
    advice = advice[:1].upper() + advice[1:]
    if res.per_class:
        b = flagged[0]
        text = (f"{words} singles out '{b.label}': {pct(b.share_in)} of '{b.label}' photos are "
                f"{describe_value(res.attribute, b.value)} vs {pct(b.share_out)} of {others(res.labels, b.label)} "
                f"(exact one-vs-rest test p={b.p_value:.2g}; q={b.q_value:.2g} after Benjamini-Hochberg over "
                f"{res.n_tests} tests of {res.n_attributes} attributes).")
        more = named_cells(res)[1:]
        if more:
            listed = "; ".join(f"'{c.label}' {pct(c.share_in)} {describe_value(res.attribute, c.value)} "
                               f"(vs {pct(c.share_out)})" for c in more[:3])
            extra = f" and {len(more) - 3} more" if len(more) > 3 else ""
            text += f" It singles out {count(len(more), 'more class')} too: {listed}{extra}."
    else:
        b = res.best
        text = (f"{words} predicts the label across classes: alone it guesses the class right for "
                f"{pct(res.accuracy)} of files (leave-one-out; {pct(res.prior_accuracy)} by always guessing the "
                f"biggest class; permutation p={res.overall_p:.2g}, q={res.overall_q:.2g}).")
        if b is not None:
            text += (f" Most uneven: {pct(b.share_in)} of '{b.label}' photos are "
                     f"{describe_value(res.attribute, b.value)} vs {pct(b.share_out)} of {others(res.labels, b.label)}.")
    return f"{text} {advice}".strip()


def shown_cells(res: LeakResult) -> list[Cell]:
    """The cells whose files a finding lists: those it names, or the most uneven one (overall test)."""
    if res.per_class:
        return named_cells(res)
    return [res.best] if res.best is not None else []


def _flag_paths(res: LeakResult, paths, labels, values) -> list[str]:
    """The files of the shown cells, cell by cell in shown_cells' order (a report takes each
    cell's examples from its own slice), in the given order inside a cell."""
    keys = [(c.label, c.value) for c in shown_cells(res)]
    by_cell: dict[tuple[str, str], list[str]] = {k: [] for k in keys}
    for p, lab, v in zip(paths, labels, values):
        if (lab, v) in by_cell:
            by_cell[(lab, v)].append(p)
    return [p for k in keys for p in by_cell[k]]


def find_leaks(rows: Iterable[tuple[str, str, dict[str, str]]], *, n_perm: int | None = None, seed: int = 0,
               fdr: float = FDR, attributes: Sequence[str] = ATTRIBUTES) -> tuple[list[LeakResult], list[LeakResult]]:
    """rows: (path, label, attributes). Returns (findings, every attribute tested): find_leaks_in by rows."""
    rows = list(rows)
    columns = {a: [attrs[a] for _, _, attrs in rows] for a in attributes}
    return find_leaks_in([p for p, _, _ in rows], [lab for _, lab, _ in rows], columns, n_perm=n_perm, seed=seed,
                         fdr=fdr, attributes=attributes)


def find_leaks_in(paths: Sequence[str], labels: Sequence[str], columns: dict[str, Sequence[str]], *,
                  n_perm: int | None = None, seed: int = 0, fdr: float = FDR,
                  attributes: Sequence[str] = ATTRIBUTES) -> tuple[list[LeakResult], list[LeakResult]]:
    """Per file: its path, its label and (columns) each attribute's value. Returns (findings,
    every attribute tested).

    Findings are the tested attributes with a severity that were not folded into another;
    folded ones stay in `tested` with `folded_into` set.
    """
    labels = list(labels)
    names = sorted(set(labels))
    tested = []
    if len(names) < 2:
        return [], tested
    y = np.array([names.index(lab) for lab in labels], dtype=np.int64) if len(names) < 64 else \
        np.searchsorted(np.array(names), np.array(labels))
    perms = stats.shuffled_labels(y, default_permutations(len(labels)) if n_perm is None else n_perm, seed)
    for attribute in attributes:
        res = assess_attribute(attribute, list(columns[attribute]), labels, perms=perms, label_names=names)
        if res is not None:
            tested.append(res)
    adjust(tested, fdr)
    found = []
    for res in tested:
        if res.severity:
            res.message = message_for(res)
            res.paths = _flag_paths(res, paths, labels, columns[res.attribute])
            found.append(res)
    return _fold(found), tested


def _classes(res: LeakResult) -> set[str]:
    return {c.label for c in res.flagged}


def _explains(host: LeakResult, res: LeakResult) -> bool:
    """Does `host` carry the split `res` shows (same class, the one following from the other)?"""
    if not (_classes(host) & _classes(res)):
        return False
    if res.attribute == "stored_aspect" and host.attribute in ("exif_orientation", "upright_aspect"):
        return True  # the stored shape is the upright shape turned by the tag
    if res.attribute == "has_exif" and host.attribute in EXIF_BORNE:
        return True  # those values exist only where EXIF does
    a, b = set(host.paths), set(res.paths)
    return bool(a | b) and len(a & b) / len(a | b) >= SAME_SPLIT


def _fold(found: list[LeakResult]) -> list[LeakResult]:
    found = sorted(found, key=lambda r: (SEVERITY_RANK[r.severity], PRIORITY.index(r.attribute)
                                         if r.attribute in PRIORITY else len(PRIORITY)))
    kept: list[LeakResult] = []
    for res in found:
        host = next((k for k in kept if _explains(k, res)), None)
        res.also = []
        if host is None:
            kept.append(res)
        else:
            host.also.append(res.attribute)
            res.folded_into = host.attribute
    for k in kept:
        if k.also:
            words = ", ".join(short_words(a) for a in k.also)
            k.message += f" The same files also differ by class in: {words} (same split, reported once)."
    return kept
