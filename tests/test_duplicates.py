"""Near-duplicate search: the approximate index (faiss, big data sets) finds what every-pair finds."""

from __future__ import annotations

import numpy as np

from upright.audit import duplicates
from upright.audit.duplicates import Item, near_findings, near_pairs


def _planted(n=3000, d=48, pairs=40, triples=10, seed=0):
    """Random unit vectors with planted near-copies (cosine ~0.97-0.99) and a few borderline ones."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    picks = rng.choice(n, 2 * pairs + 3 * triples, replace=False)
    for k in range(pairs):
        i, j = picks[2 * k], picks[2 * k + 1]
        x[j] = x[i] + rng.standard_normal(d).astype(np.float32) * rng.uniform(0.02, 0.04)
    base = 2 * pairs
    for k in range(triples):
        i, j, m = picks[base + 3 * k: base + 3 * k + 3]
        x[j] = x[i] + rng.standard_normal(d).astype(np.float32) * 0.02
        x[m] = x[j] + rng.standard_normal(d).astype(np.float32) * 0.02
    x[picks[0]] *= 3.0  # scale does not matter for a cosine
    x[picks[-1], 0] = np.nan  # a row with NaN is ignored by both paths
    return x


def test_ann_and_exact_paths_give_the_same_pairs():
    x = _planted()
    exact = near_pairs(x, 0.96, ann_above=10**9)
    ann = near_pairs(x, 0.96, ann_above=100)  # forced through the faiss index
    assert len(exact) >= 40  # the planted copies (and the chains of the triples) are there
    assert [p[:2] for p in ann] == [p[:2] for p in exact]
    assert np.allclose([p[2] for p in ann], [p[2] for p in exact], atol=1e-5)
    assert all(i < j for i, j, _ in ann)


def test_ann_path_gives_the_same_findings():
    x = _planted(seed=1)
    rng = np.random.default_rng(2)
    items = [Item(f"p{i}.jpg", f"c{rng.integers(0, 4)}", "val" if rng.random() < 0.2 else "train", f"h{i}")
             for i in range(len(x))]
    exact = near_findings(items, x, 0.96, ann_above=10**9)
    ann = near_findings(items, x, 0.96, ann_above=100)
    assert exact and ann == exact


def test_small_sets_stay_exact(monkeypatch):
    def no_index(*a, **k):
        raise AssertionError("the approximate index was used on a small set")

    monkeypatch.setattr(duplicates, "_ann_candidates", no_index)
    x = _planted(n=500, pairs=5, triples=1)
    assert near_pairs(x, 0.96)  # default ann_above: every pair compared
