"""Exact small-sample statistics for the label-leak check (numpy only, no SciPy).

- `hypergeom_sf`: P(X >= a) for X ~ Hypergeometric(population N, K marked, n drawn): the
  one-sided Fisher exact test of "value v is over-represented in class c" (a = files of class c
  with value v, K = files with value v, n = files of class c). Shuffling the labels keeps
  both margins, so this is the exact permutation p-value of the 2x2 table, at any sample size.
- `hypergeom_min_p`: the smallest p-value a cell's margins allow (every file with the value in
  the class). Cells whose smallest possible p-value exceeds the false-discovery level can never
  be significant and are left out of the family; this depends only on the margins, which are
  fixed under the null, so the selection keeps the control valid (Tarone's observation).
- `benjamini_hochberg`: step-up adjusted p-values (q-values).
- `loo_accuracy`: leave-one-out accuracy of the per-value majority guesser, in closed form from
  the value x class table, O(values x classes) per table (the overall test); `null_loo_accuracy`
  the same for every shuffle of the labels, with rows only for values held by 2+ files.
"""

from __future__ import annotations

import numpy as np


def _log_factorials(n: int) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])


def _log_pmf(x, K, n, N, lf):
    """log P(X = x) for the hypergeometric (arrays broadcast; x must lie in the support)."""
    return (lf[K] - lf[x] - lf[K - x] + lf[N - K] - lf[n - x] - lf[N - K - n + x]
            - lf[N] + lf[n] + lf[N - n])


def hypergeom_sf(a, K, n, N: int) -> np.ndarray:
    """P(X >= a), X ~ Hypergeometric(N, K, n); a, K, n integer arrays (broadcast), N an int.

    Each distinct (K, n) pair gets its whole pmf once, summed from the far tail inwards
    (smallest terms first), so tails down to about 1e-300 keep their relative precision.
    """
    a, K, n = np.broadcast_arrays(*(np.asarray(x, dtype=np.int64) for x in (a, K, n)))
    N = int(N)
    lf = _log_factorials(N)
    out = np.empty(a.shape, dtype=np.float64)
    flat_a, flat_out = a.ravel(), out.reshape(-1)
    if flat_a.size == 0:
        return out
    # group the cells by their margins in one sort (a cell per value x class: no Python loop over cells)
    keys, inverse = np.unique(np.stack([K.ravel(), n.ravel()], axis=1), axis=0, return_inverse=True)
    order = np.argsort(inverse.ravel(), kind="stable")
    bounds = np.searchsorted(inverse.ravel()[order], np.arange(len(keys) + 1))
    for g, (k, m) in enumerate(keys.tolist()):
        idx = order[bounds[g]:bounds[g + 1]]
        lo, hi = max(0, m + k - N), min(k, m)
        xs = np.arange(lo, hi + 1)
        pmf = np.exp(_log_pmf(xs, k, m, N, lf))
        tail = np.cumsum(pmf[::-1])[::-1]  # tail[j] = P(X >= lo + j)
        tail = np.minimum(tail, 1.0)
        ai = flat_a[idx]
        j = ai - lo
        flat_out[idx] = np.where(j <= 0, 1.0, np.where(j > hi - lo, 0.0, tail[np.clip(j, 0, hi - lo)]))
    return out


def hypergeom_min_p(K, n, N: int) -> np.ndarray:
    """The smallest attainable P(X >= a): P(X = min(K, n))."""
    K, n = np.broadcast_arrays(np.asarray(K, dtype=np.int64), np.asarray(n, dtype=np.int64))
    lf = _log_factorials(int(N))
    hi = np.minimum(K, n)
    return np.exp(_log_pmf(hi, K, n, int(N), lf))


def benjamini_hochberg(p) -> np.ndarray:
    """Adjusted p-values of the Benjamini-Hochberg step-up procedure (reject where q <= level)."""
    p = np.asarray(p, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(q_sorted, 1.0)
    return q


def loo_accuracy(table) -> float | np.ndarray:
    """Leave-one-out accuracy of the per-value majority guesser, from a [values, classes] table.

    Leaving out one file of (value v, class c) decrements table[v, c]; the guess is the majority
    class of what remains in row v (the global majority when the row is then empty); ties give
    credit 1/#tied when the true class is among them. Only a row's unique maximum can keep the
    credit after its own decrement, so each row needs just its two largest counts. A stack of
    tables [..., values, classes] gives an array of accuracies.
    """
    t = np.asarray(table, dtype=np.float64)
    n = t.sum(axis=(-2, -1))
    credit, m1 = _unique_max_credit(t)  # [..., V]
    glob = t.sum(axis=-2)  # [..., C]
    gcredit_max, gm1 = _unique_max_credit(glob)  # credit of the global majority class
    gcredit = np.where(glob == gm1[..., None], gcredit_max[..., None], 0.0)  # [..., C]
    rows = t.sum(axis=-1)
    single = rows == 1  # the row empties when its only file is left out: global fallback
    row_total = np.where(single, (t * gcredit[..., None, :]).sum(axis=-1), m1 * credit)
    total = row_total.sum(axis=-1)
    acc = np.where(n > 1, total / np.maximum(n, 1), 0.0)
    return float(acc) if acc.ndim == 0 else acc


def null_loo_accuracy(v: np.ndarray, perms: np.ndarray, n_vals: int, n_cls: int,
                      max_cells: int = 4_000_000) -> np.ndarray:
    """loo_accuracy of the value x class table under each row of shuffled labels: [k].

    Equal to loo_accuracy(permutation_tables(v, perms, ...)) and linear in the number of
    distinct values: a value held by one file leaves its row empty when left out, so its credit
    is the global fallback's for the file's class, and the class totals are the same in every
    shuffle; those files are summed directly and only the values held by 2+ files get table rows
    (at most n/2 of them, however many distinct values there are).
    """
    v = np.asarray(v, dtype=np.int64)
    perms = np.asarray(perms)  # any integer type (shuffled_labels: int16): no int64 copy of [k, n]
    k, n = perms.shape
    if n < 2:
        return np.zeros(k)
    per_value = np.bincount(v, minlength=n_vals)
    class_totals = np.bincount(perms[0], minlength=n_cls).astype(np.float64)
    top, m1 = _unique_max_credit(class_totals)
    gcredit = np.where(class_totals == m1, top, 0.0)  # global-majority credit of each class
    single = per_value[v] == 1
    total = gcredit[perms[:, single]].sum(axis=1) if single.any() else np.zeros(k)
    multi = np.flatnonzero(per_value >= 2)
    if multi.size:
        rows = np.full(n_vals, -1, dtype=np.int64)
        rows[multi] = np.arange(multi.size)
        keep = ~single
        vm, pm = rows[v[keep]], perms[:, keep]
        chunk = max(1, max_cells // max(1, multi.size * n_cls + vm.size))
        for start in range(0, k, chunk):
            t = permutation_tables(vm, pm[start:start + chunk], multi.size, n_cls)
            # no row of these tables has a single file, so loo_accuracy's fallback never applies
            total[start:start + chunk] += _row_credit_sum(t)
    return total / n


def _unique_max_credit(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(credit, largest count) of each row's unique-maximum class after removing one of its files."""
    s = np.partition(counts, counts.shape[-1] - 2, axis=-1)  # the two largest counts, no full sort
    m1, m2 = s[..., -1], s[..., -2]
    n1 = (counts == m1[..., None]).sum(axis=-1)
    n2 = (counts == m2[..., None]).sum(axis=-1)
    x = m1 - 1
    credit = np.where(x > m2, 1.0, np.where(x == m2, 1.0 / (1 + n2), 0.0))
    return np.where(n1 == 1, credit, 0.0), m1


def _row_credit_sum(t: np.ndarray) -> np.ndarray:
    """Sum over rows of m1 x credit (loo_accuracy's term for rows holding 2+ files): [...]."""
    credit, m1 = _unique_max_credit(t)
    return (m1 * credit).sum(axis=-1)


def shuffled_labels(y: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k label vectors, each a random permutation of y: [k, len(y)] (shared by every attribute)."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    small = np.int16 if y.size == 0 or y.max() < 2 ** 15 else np.int32  # [k, n]: 4x less than int64 at 50k photos
    out = np.tile(y.astype(small), (k, 1))
    for row in out:  # row by row: several times faster than permuted(axis=1) or argsort
        rng.shuffle(row)
    return out


def permutation_tables(v: np.ndarray, perms: np.ndarray, n_vals: int, n_cls: int) -> np.ndarray:
    """Value x class tables for each row of shuffled labels: [k, n_vals, n_cls]."""
    k = perms.shape[0]
    idx = (np.arange(k)[:, None] * (n_vals * n_cls) + v[None, :] * n_cls + perms).ravel()
    return np.bincount(idx, minlength=k * n_vals * n_cls).reshape(k, n_vals, n_cls)


def simes(p) -> float:
    """Simes' combination of a family's p-values: min_i p_(i) * m / i (1.0 for an empty family)."""
    p = np.sort(np.asarray(p, dtype=np.float64))
    if p.size == 0:
        return 1.0
    return float(min(1.0, np.min(p * p.size / np.arange(1, p.size + 1))))
