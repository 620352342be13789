"""Duplicates: exact (same bytes, by sha256) and near (embedding cosine), grouped.

Near pairs: every pair compared up to ANN_ABOVE pictures, a faiss inverted-file index above
(the N x N product grows as the square of the data set).

A duplicate matters when it crosses labels (the same picture taught as two classes) or
crosses splits (the validation score, or eval's score on test/, counts pictures the model
trained on; the message names the splits). Duplicates inside one class and one split only
weigh a picture twice: reported as info.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..words import count, verb
from .finding import Finding

#: Cosine similarity of two embeddings at or above which two pictures count as near-identical.
NEAR_THRESHOLD = 0.96
#: Above this many pictures, near-duplicate candidates come from an approximate index (faiss IVF)
#: instead of every pair: 5,000 pictures are 12.5 M pairs, a few seconds of matrix products.
ANN_ABOVE = 5000
#: Inverted-file index shape: cells (k-means centroids, ~4 sqrt(n)) and how many are searched.
IVF_MAX_CELLS = 4096
IVF_PROBES = 16


@dataclass
class Item:
    path: str
    label: str
    split: str
    sha256: str


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def exact_groups(items: Sequence[Item]) -> list[list[int]]:
    by_hash: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        by_hash[it.sha256].append(i)
    return [g for g in by_hash.values() if len(g) > 1]


def unit_rows(x: np.ndarray, block: int = 8192) -> np.ndarray:
    """Scale every row of x to unit length in place, a block at a time (no temporary of x's size)."""
    for s in range(0, len(x), block):
        part = x[s:s + block]
        part /= np.maximum(np.sqrt(np.einsum("ij,ij->i", part, part))[:, None], 1e-12)
    return x


def near_pairs(vectors: np.ndarray, threshold: float, block: int = 2048,
               ann_above: int = ANN_ABOVE, unit: bool = False) -> list[tuple[int, int, float]]:
    """Pairs (i, j, cosine) with i < j and cosine >= threshold, sorted; rows with NaN are ignored.

    Up to `ann_above` rows every pair is compared (blocks of a matrix product); above, an
    approximate index proposes the candidates (`_ann_candidates`) and each is confirmed by its
    exact cosine, so a pair is either found with the exact path's cosine or missed, never invented.
    unit: the rows are finite and of unit length already (unit_rows): used as they are, no copy.
    """
    v = np.asarray(vectors, dtype=np.float32)
    idx = np.arange(len(v)) if unit else np.flatnonzero(np.isfinite(v).all(axis=1))
    if len(idx) < 2:
        return []
    x = v if unit else unit_rows(v[idx])
    if len(x) > ann_above:
        a, b = _ann_candidates(x, threshold, block)
        sims = np.concatenate([np.einsum("ij,ij->i", x[a[s:s + 8192]], x[b[s:s + 8192]])
                               for s in range(0, len(a), 8192)] or [np.zeros(0, np.float32)])
        keep = sims >= threshold
        return [(int(idx[i]), int(idx[j]), float(s)) for i, j, s in zip(a[keep], b[keep], sims[keep])]
    out = []
    for s in range(0, len(x), block):
        sims = x[s:s + block] @ x.T
        rows, cols = np.nonzero(sims >= threshold)
        for r, c in zip(rows, cols):
            i, j = s + int(r), int(c)
            if i < j:
                out.append((int(idx[i]), int(idx[j]), float(sims[r, c])))
    return out


def _ann_candidates(x: np.ndarray, threshold: float, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (i < j, sorted) whose inner product may reach `threshold`, from a faiss
    inverted-file index (k-means cells, IVF_PROBES nearest cells searched per query).

    Near-identical pictures (cosine >= 0.9) fall in the same or a neighbouring cell, so the
    cost is about n x n x IVF_PROBES / cells instead of n x n; bench/audit.py measures recall
    against the exact path on planted duplicates.
    """
    import faiss  # a core dependency; imported here because only big audits need it

    n, d = x.shape
    cells = int(max(1, min(IVF_MAX_CELLS, 4 * np.sqrt(n), n // 5)))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, cells, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter, index.cp.min_points_per_centroid = 10, 5  # rough cells are enough; no warning
    rng = np.random.default_rng(0)
    train = x[np.sort(rng.choice(n, min(n, 32 * cells), replace=False))]  # k-means on a sample
    index.train(np.ascontiguousarray(train))
    del train  # the sample is not needed beside the index
    index.add(np.ascontiguousarray(x))
    index.nprobe = min(cells, IVF_PROBES)
    # the index's inner products are float32 sums in another order: search a hair below the
    # threshold, the exact cosine decides
    radius = float(threshold) - 1e-4
    rows, cols = [], []
    for s in range(0, n, block):
        lims, _, found = index.range_search(np.ascontiguousarray(x[s:s + block]), radius)
        q = np.repeat(np.arange(s, s + len(lims) - 1), np.diff(lims.astype(np.int64)))
        keep = q != found
        rows.append(q[keep])
        cols.append(found[keep].astype(np.int64))
    q, f = np.concatenate(rows), np.concatenate(cols)
    # a pair found from either side counts once (the search is not symmetric: probed cells differ)
    pairs = np.unique(np.stack([np.minimum(q, f), np.maximum(q, f)], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def _groups_from_pairs(n: int, pairs) -> list[list[int]]:
    uf = _UnionFind(n)
    for i, j, *_ in pairs:
        uf.union(i, j)
    groups: dict[int, list[int]] = defaultdict(list)
    members = {i for p in pairs for i in p[:2]}
    for i in sorted(members):
        groups[uf.find(i)].append(i)
    return [g for g in groups.values() if len(g) > 1]


def _crossing(items: Sequence[Item], group: list[int]) -> tuple[bool, bool]:
    labels = {items[i].label for i in group}
    splits = {items[i].split for i in group}
    return len(labels) > 1, len(splits) > 1


def findings(items: Sequence[Item], vectors: np.ndarray | None = None,
             threshold: float = NEAR_THRESHOLD, ann_above: int = ANN_ABOVE) -> list[Finding]:
    """Duplicate findings (the contracts' finding shape plus `groups`): exact first, then near."""
    out = _summarise(items, exact_groups(items), "exact", None)
    if vectors is not None:
        out += near_findings(items, vectors, threshold, ann_above)
    return out


def near_findings(items: Sequence[Item], vectors: np.ndarray, threshold: float = NEAR_THRESHOLD,
                  ann_above: int = ANN_ABOVE, unit: bool = False) -> list[Finding]:
    """Near-duplicate findings only; groups that are nothing but one set of identical files are left out.
    unit: as near_pairs'."""
    exact = exact_groups(items)
    exact_sets = [set(g) for g in exact]
    pairs = near_pairs(vectors, threshold, ann_above=ann_above, unit=unit)
    same_bytes = {(i, j) for g in exact for i in g for j in g}
    pairs = [p for p in pairs if (p[0], p[1]) not in same_bytes]
    near = _groups_from_pairs(len(items), pairs)
    # a near group made only of one exact group adds nothing
    near = [g for g in near if not any(set(g) <= s for s in exact_sets)]
    best: dict[int, float] = {}
    for i, j, sim in pairs:
        for k in (i, j):
            best[k] = max(best.get(k, 0.0), sim)
    return _summarise(items, near, "near", best)


SPLITS = ("train", "val", "test")


def _across(items: Sequence[Item], groups: list[list[int]]) -> str:
    """The splits these groups cross, in words, and what each crossing costs:
    "train and test: eval's score on test/ counts pictures the model was fitted on"."""
    names = {items[i].split for g in groups for i in g}
    shown = [s for s in SPLITS if s in names] + sorted(names - set(SPLITS))
    crossed = [{items[i].split for i in g} for g in groups]
    costs = []
    if any({"train", "val"} <= c for c in crossed):
        costs.append("the validation score counts pictures the model trained on")
    if any("test" in c and len(c) > 1 for c in crossed):  # the final head is fitted on train + val
        costs.append("eval's score on test/ counts pictures the model was fitted on")
    words = ", ".join(shown[:-1]) + f" and {shown[-1]}" if len(shown) > 1 else "".join(shown)
    return f"{words}: {' and '.join(costs) or 'a score counts pictures the model trained on'}"


def _summarise(items, groups, how: str, sims: dict | None) -> list[Finding]:
    buckets: dict[str, list[list[int]]] = {"labels": [], "split": [], "same": []}
    for g in groups:
        cross_label, cross_split = _crossing(items, g)
        buckets["labels" if cross_label else "split" if cross_split else "same"].append(g)
    out = []
    what = "identical files" if how == "exact" else "near-identical pictures"
    for key, gs in buckets.items():
        if not gs:
            continue
        n_files = sum(len(g) for g in gs)
        example = gs[0]
        ex = ", ".join(f"{items[i].path} ({items[i].label}, {items[i].split})" for i in example[:3])
        groups = f"{count(len(gs), 'group')} of {what} ({n_files} files)"
        if key == "labels":
            severity = "error" if how == "exact" else "warning"
            msg = (f"{groups} {verb(len(gs), 'sits', 'sit')} under different labels: the same picture is taught as "
                   f"two classes. Keep one copy under the right label. Example: {ex}.")
        elif key == "split":
            severity = "warning"
            msg = (f"{groups} {verb(len(gs), 'crosses', 'cross')} {_across(items, gs)}. Keep "
                   f"{verb(len(gs), 'its files', 'each group')} in one split. Example: {ex}.")
        else:
            severity = "info"
            msg = (f"{groups} within one class and split: harmless, but each counts more than once. "
                   f"Example: {ex}.")
        score = 1.0 if sims is None else max(sims.get(i, 0.0) for g in gs for i in g)
        out.append(Finding("duplicate", severity, msg, None, round(float(score), 4),
                           [items[i].path for g in gs for i in g],
                           {"match": how, "crosses": key if key != "same" else None,
                            "groups": [[items[i].path for i in g] for g in gs]}))
    return out
