"""The audit's checks, each an object behind one small interface (after cleanvision's issue managers).

A check has a `name` (what `upright audit --checks/--skip` take), `needs` (what the run must
prepare: "facts" = header facts of every file, "decode" = every file decoded once,
"embeddings" = the upright view's embedding, "rotations" = embeddings of the four turns),
its parameters as dataclass fields, and `run(data) -> CheckResult` (findings, a one-line note of
what was done, extra JSON). The runner (run.py) prepares the union of what the selected checks
need, so a metadata-only audit never loads the network and `fix --rotate-sideways` runs the
sideways check alone.

A `Finding`'s `to_dict()` is the contracts' JSON shape (kind, severity, attribute, score,
message, paths, plus kind-specific keys).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import ClassVar, Sequence

import numpy as np

from ..errors import UprightError
from . import duplicates, leakage, sideways
from ..words import count, verb
from .finding import Finding
from .table import FactsTable, VectorFile

NEEDS = ("facts", "decode", "embeddings", "rotations")
#: what a check that needs embeddings gets embedded (views, upright.views)
VARIANTS_FOR = {"embeddings": ("id",), "rotations": sideways.VARIANTS}


@dataclass
class CheckResult:
    findings: list[Finding] = field(default_factory=list)
    note: str = "done"  # what was checked, for the report's "Checks run" table
    info: dict = field(default_factory=dict)  # extra top-level JSON keys (e.g. "attributes", "sideways")


@dataclass
class AuditData:
    """What the runner prepared for the checks, per photo in columns (table.py). Indices in
    `ok` refer to `paths`, `facts` and the per-photo arrays."""

    root: str
    labels: list[str]  # every class folder, readable files or not
    paths: list[str]
    label_of: np.ndarray  # int [N]: index into labels
    split_of: np.ndarray  # str [N]: "train", "val" or "test"
    sha256: np.ndarray  # bytes [N] ("S64"): content hash, hex
    facts: FactsTable  # metadata.FileFacts per file, as columns (facts[i] gives the object)
    unreadable: dict[str, str]  # path -> one-line reason (headers and decode)
    ok: np.ndarray  # int: the readable files
    vectors: VectorFile | None = None  # embeddings of the readable files (row j is file ok[j])
    decode_note: str | None = None

    def label(self, i: int) -> str:
        return self.labels[int(self.label_of[i])]

    def classes(self) -> dict[str, int]:
        counts = np.bincount(self.label_of[self.ok], minlength=len(self.labels))
        return {lab: int(c) for lab, c in zip(self.labels, counts)}

    def view(self, name: str) -> np.ndarray:
        """One variant's embeddings of the readable files, [len(ok), D], a fresh array."""
        if self.vectors is None:
            raise RuntimeError("no embeddings were prepared for this audit")
        return self.vectors.view(name)

    def view_blocks(self, names: Sequence[str], size: int = 1024):
        """A callable yielding [size, len(names), D] blocks of the readable files' embeddings, in order."""
        if self.vectors is None:
            raise RuntimeError("no embeddings were prepared for this audit")
        return lambda: (v for _, v in self.vectors.blocks(names, size))


class Check:
    """Base of every check: subclasses set name, needs and summary, and implement run."""

    name: ClassVar[str]
    needs: ClassVar[frozenset[str]] = frozenset({"facts"})
    summary: ClassVar[str] = ""  # one line: what it finds

    def params(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)} if hasattr(self, "__dataclass_fields__") else {}

    def run(self, data: AuditData) -> CheckResult:  # pragma: no cover - interface
        raise NotImplementedError


def _some(items: Sequence[str], k: int = 3, sep: str = "; ") -> str:
    """The first k items joined, then 'and N more' when there are more."""
    shown = sep.join(items[:k])
    return shown + (f"{sep}and {len(items) - k} more" if len(items) > k else "")


@dataclass
class Unreadable(Check):
    name: ClassVar[str] = "unreadable"
    needs: ClassVar[frozenset[str]] = frozenset({"facts", "decode"})
    summary: ClassVar[str] = "files that cannot be read or decoded (left out of training)"

    def run(self, data: AuditData) -> CheckResult:
        items = [{"path": p, "reason": r} for p, r in data.unreadable.items()]
        note = data.decode_note or "headers only"
        if not items:
            return CheckResult(note=note)
        ex = _some([f"{it['path']}: {it['reason']}" for it in items])
        n = len(items)
        f = Finding("unreadable", "error",
                    f"{count(n, 'file')} cannot be read and {verb(n, 'is', 'are')} left out of training: {ex}.",
                    score=len(items) / max(1, len(data.paths)), paths=[it["path"] for it in items],
                    details={"items": items})
        return CheckResult([f], note)


@dataclass
class Classes(Check):
    """Empty classes (every one), a single class (train refuses it), imbalance."""

    name: ClassVar[str] = "classes"
    summary: ClassVar[str] = "empty classes, a single class, class imbalance, classes under 10 images"
    warn_ratio: float = 3.0
    error_ratio: float = 10.0
    few: int = 10  # a class with fewer readable images is mentioned

    def run(self, data: AuditData) -> CheckResult:
        counts = data.classes()
        out: list[Finding] = []
        empty = [k for k, v in counts.items() if v == 0]
        if empty:
            names, n = ", ".join(repr(k) for k in empty), len(empty)
            out.append(Finding("class_imbalance", "error",
                               f"{count(n, 'class')} {verb(n, 'has', 'have')} no readable images: {names}; add some "
                               f"or remove the {verb(n, 'folder', 'folders')}.",
                               score=float(n), details={"ratio": None, "empty": empty}))
        filled = {k: v for k, v in counts.items() if v > 0}
        if len(counts) == 1:
            (only,) = counts
            out.append(Finding("too_few_classes", "warning",
                               f"only one class ('{only}'): `upright train` needs at least two, and no check can "
                               f"say whether a file attribute predicts the class. Add a folder per class.",
                               score=1.0, details={"classes": list(counts)}))
        if len(filled) >= 2:
            f = self._imbalance(filled)
            if f:
                out.append(f)
        return CheckResult(out, f"{count(len(counts), 'class')}, {len(empty)} empty")

    def _imbalance(self, counts: dict[str, int]) -> Finding | None:
        """Big against small from 1.5x; classes under `few` images are named either way (balanced
        small classes are a finding about size, not an imbalance)."""
        big_label = max(counts, key=counts.get)
        small_label = min(counts, key=counts.get)
        big, small = counts[big_label], counts[small_label]
        ratio = big / small
        sev = ("error" if ratio >= self.error_ratio else "warning" if ratio >= self.warn_ratio
               else "info" if ratio >= 1.5 else None)
        few = [k for k, v in counts.items() if v < self.few]
        details = {"ratio": round(ratio, 3)}
        if sev is not None:
            msg = (f"classes are imbalanced: '{big_label}' has {count(big, 'image')}, '{small_label}' {small} "
                   f"({ratio:.1f}x). A model can score well by favouring the big class; balance the classes "
                   f"or weigh them.")
            if few:
                msg += f" {self._few_words(few, counts)}."
            return Finding("class_imbalance", sev, msg, score=round(ratio, 3), details=details)
        if not few:
            return None
        msg = (f"{self._few_words(few, counts)}: too few to learn a class or to trust its validation score; "
               f"add photos (at least {self.few} a class).")
        return Finding("class_imbalance", "info", msg, score=round(ratio, 3), details=details)

    def _few_words(self, few: list[str], counts: dict[str, int]) -> str:
        """"Every class has fewer than 10 images ('a' 3, 'b' 3)" or "2 classes have fewer than ..." """
        who = ("Every class has" if len(few) == len(counts) and len(few) > 1
               else f"{count(len(few), 'class').capitalize()} {verb(len(few), 'has', 'have')}")
        return f"{who} fewer than {self.few} images ({_some([f'{k!r} {counts[k]}' for k in few], 10, ', ')})"


@dataclass
class LabelLeak(Check):
    """Does a file attribute predict the class, overall or for one class against the rest? (leakage.py)"""

    name: ClassVar[str] = "label_leak"
    summary: ClassVar[str] = "file attributes (orientation tag, camera, JPEG quality, date...) that predict the class"
    fdr: float = leakage.FDR
    n_perm: int | None = None  # overall test; None: 1999, fewer on big datasets
    seed: int = 0

    def run(self, data: AuditData) -> CheckResult:
        paths = [data.paths[i] for i in data.ok]
        labels = [data.label(i) for i in data.ok]
        columns = attribute_columns(data.facts, data.ok)
        found, tested = leakage.find_leaks_in(paths, labels, columns, n_perm=self.n_perm, seed=self.seed, fdr=self.fdr)
        n_tests = tested[0].n_tests if tested else 0
        note = (f"{len(leakage.ATTRIBUTES)} attributes, {len(tested)} with 2+ values: {n_tests} exact per-class "
                f"and overall tests, Benjamini-Hochberg FDR {self.fdr:.0%}")
        if len(set(labels)) < 2:
            note = "skipped: fewer than two classes with readable images"
        return CheckResult([r.to_finding() for r in found], note, {"attributes": attribute_tables(tested, labels, columns)})


def attribute_columns(facts: FactsTable, idx) -> dict[str, list[str]]:
    """leakage.attributes_of for the files idx, one list per attribute (equal values share one string)."""
    shared: dict[str, str] = {}
    columns: dict[str, list[str]] = {a: [] for a in leakage.ATTRIBUTES}
    for i in idx:
        for a, v in leakage.attributes_of(facts[int(i)]).items():
            columns[a].append(shared.setdefault(v, v))
    return columns


def attribute_tables(tested, labels: Sequence[str], columns: dict[str, Sequence[str]]) -> dict:
    """Every attribute's value x class table, tested or not (the report's table, heat map, chart)."""
    out = {}
    by_attr = {r.attribute: r for r in tested}
    names = sorted(set(labels))
    for attr in leakage.ATTRIBUTES:
        r = by_attr.get(attr)
        if r is not None:
            out[attr] = r.to_table()
        else:
            c = Counter(zip(columns[attr], labels))
            values = sorted({v for v, _ in c})
            out[attr] = {"values": values, "labels": names,
                         "counts": [[c.get((v, lab), 0) for lab in names] for v in values],
                         "accuracy": None, "baseline": None, "score": None, "p_value": None, "q_value": None,
                         "best": None, "flagged": [], "severity": None, "folded_into": None, "tested": False}
    return out


@dataclass
class Tiny(Check):
    name: ClassVar[str] = "tiny"
    summary: ClassVar[str] = "pictures too small for the network's input"
    short_side: int = 96  # pixels: upscaled more than 2.3x to reach a 224 input

    def run(self, data: AuditData) -> CheckResult:
        sizes = data.facts.column("upright_size")[data.ok]  # [n, 2], NaN where unknown
        small = [(data.paths[i], (int(w), int(h))) for i, (w, h) in zip(data.ok, sizes)
                 if np.isfinite(w) and min(w, h) < self.short_side]
        note = f"short side < {self.short_side} px"
        if not small:
            return CheckResult(note=note)
        ex = _some([f"{p} ({s[0]}x{s[1]})" for p, s in small], sep=", ")
        n = len(small)
        return CheckResult([Finding(
            "tiny", "warning",
            f"{count(n, 'image')} {verb(n, 'has', 'have')} a short side under {self.short_side} px and will be "
            f"blown up several times to reach the network's input; check {verb(n, 'it belongs', 'they belong')}. "
            f"Example: {ex}.",
            score=len(small) / max(1, len(data.ok)), paths=[p for p, _ in small])], note)


def _items(data: AuditData) -> list[duplicates.Item]:
    return [duplicates.Item(data.paths[i], data.label(i), str(data.split_of[i]), data.sha256[i].decode())
            for i in data.ok]


@dataclass
class Duplicates(Check):
    name: ClassVar[str] = "duplicates"
    summary: ClassVar[str] = "identical files (same bytes) across labels or train/val"

    def run(self, data: AuditData) -> CheckResult:
        return CheckResult(duplicates.findings(_items(data), None), "same sha256")


@dataclass
class NearDuplicates(Check):
    name: ClassVar[str] = "near_duplicates"
    needs: ClassVar[frozenset[str]] = frozenset({"facts", "embeddings"})
    summary: ClassVar[str] = "near-identical pictures (embedding cosine) across labels or train/val"
    threshold: float = duplicates.NEAR_THRESHOLD
    ann_above: int = duplicates.ANN_ABOVE  # pictures above which an approximate index proposes the pairs

    def run(self, data: AuditData) -> CheckResult:
        # the upright view, read fresh from the audit's file and made unit length in place (one copy in memory)
        x = duplicates.unit_rows(data.view("id"))
        found = duplicates.near_findings(_items(data), x, self.threshold, self.ann_above, unit=True)
        how = "approximate index (faiss IVF), exact cosine" if len(data.ok) > self.ann_above else "every pair"
        return CheckResult(found, f"cosine >= {self.threshold} ({how})")


@dataclass
class Sideways(Check):
    """Pictures whose content looks turned whatever the tag says (sideways.detect; thin glue)."""

    name: ClassVar[str] = "sideways"
    needs: ClassVar[frozenset[str]] = frozenset({"facts", "rotations"})
    summary: ClassVar[str] = "pictures whose content looks turned whatever the tag says"
    threshold: float = sideways.DEFAULT_THRESHOLD

    def run(self, data: AuditData) -> CheckResult:
        n = len(data.ok)
        if n < sideways.MIN_IMAGES:
            return CheckResult([Finding(
                "sideways", "info",
                f"sideways check skipped: {n} readable images, the rotation head needs at least "
                f"{sideways.MIN_IMAGES} to learn what upright looks like here.",
                details={"items": [], "skipped": True})], "skipped: too few images", {"sideways": None})
        sizes = data.facts.column("upright_size")[data.ok]
        res = sideways.detect_blocks(data.view_blocks(sideways.VARIANTS, sideways.BLOCK), n, sizes=sizes)
        info = {"temperature": round(res.temperature, 4), "prior_turned": round(float(1 - res.prior[0]), 4),
                "cv_accuracy": round(res.cv_accuracy, 4), "folds": res.folds, "ridge": res.ridge,
                "shape_weight": res.shape_weight, "threshold": self.threshold}
        note = (f"rotation head cross-fitted leave-one-image-out ({res.folds} folds), "
                f"held-out accuracy on rotated copies {res.cv_accuracy:.0%}")
        items = [{"path": data.paths[data.ok[j]], "label": data.label(data.ok[j]),
                  "confidence": round(float(res.turned[j]), 4), "rotation": int(res.rotation[j])}
                 for j in np.argsort(-res.turned) if res.turned[j] >= self.threshold]
        if not items:
            return CheckResult([], note, {"sideways": info})
        by_rot = Counter(it["rotation"] for it in items)
        top = items[0]
        parts = ", ".join(f"{k} turned {r} degrees clockwise" for r, k in sorted(by_rot.items()))
        n = len(items)
        msg = (f"{count(n, 'picture')} {verb(n, 'looks', 'look')} turned whatever the tag says ({parts}; "
               f"probability >= {self.threshold:.0%} from a rotation head trained on this dataset, {res.cv_accuracy:.0%} right on "
               f"held-out rotated copies). Most likely: {top['path']} looks {sideways.describe_turn(top['rotation'])} "
               f"(p={top['confidence']:.2f}). Check {verb(n, 'it', 'them')}; `upright fix --rotate-sideways` turns "
               f"{verb(n, 'it', 'them')} back.")
        f = Finding("sideways", "warning", msg, score=float(np.mean([it["confidence"] for it in items])),
                    paths=[it["path"] for it in items], details={"items": items})
        return CheckResult([f], note, {"sideways": info})


#: The default checks, in the order they run (cheapest first).
DEFAULT_CHECKS: tuple[Check, ...] = (Unreadable(), Classes(), LabelLeak(), Tiny(), Duplicates(), NearDuplicates(),
                                     Sideways())
CHECK_NAMES = tuple(c.name for c in DEFAULT_CHECKS)


def select(checks: str | Sequence[str] | None = None, skip: str | Sequence[str] | None = None,
           registry: Sequence[Check] = DEFAULT_CHECKS) -> tuple[Check, ...]:
    """The checks named by --checks (default: all) minus --skip. Unknown names: UprightError."""

    def names(x) -> list[str]:
        if x is None:
            return []
        items = x.split(",") if isinstance(x, str) else [n for part in x for n in str(part).split(",")]
        return [n.strip() for n in items if n.strip()]

    known = {c.name: c for c in registry}
    want, drop = names(checks), names(skip)
    unknown = [n for n in want + drop if n not in known]
    if unknown:
        raise UprightError(f"unknown check {', '.join(repr(n) for n in unknown)}; the checks are: "
                           f"{', '.join(known)}")
    chosen = [c for c in registry if (not want or c.name in want) and c.name not in drop]
    return tuple(chosen)


def timed_run(check: Check, data: AuditData) -> tuple[CheckResult, float]:
    t = time.perf_counter()
    res = check.run(data)
    return res, time.perf_counter() - t
