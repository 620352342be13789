"""The attribute-predicts-label statistics (no files: pure numbers), checked against brute force."""

from itertools import combinations, permutations

import numpy as np
import pytest

from upright.audit import stats
from upright.audit.leakage import ATTRIBUTES, assess_attribute, find_leaks


def test_loo_accuracy_closed_form_matches_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(40):
        n_v, n_c, n = rng.integers(1, 5), rng.integers(2, 5), rng.integers(2, 40)
        vals, labs = rng.integers(0, n_v, n), rng.integers(0, n_c, n)
        table = np.zeros((n_v, n_c))
        np.add.at(table, (vals, labs), 1)

        def brute():
            total = 0.0
            for i in range(len(vals)):
                t = table.copy()
                t[vals[i], labs[i]] -= 1
                row = t[vals[i]] if t[vals[i]].sum() > 0 else t.sum(axis=0)
                best = np.flatnonzero(row == row.max())
                total += (labs[i] in best) / len(best)
            return total / len(vals)

        assert abs(stats.loo_accuracy(table) - brute()) < 1e-12
        assert np.allclose(stats.loo_accuracy(np.stack([table, table])), brute())


def test_hypergeometric_tail_is_the_permutation_p_value():
    """P(X >= a) equals the share of all label assignments with at least a marked files in the class."""
    n, n_class = 11, 4
    marked = [1, 1, 1, 0, 1, 0, 0, 1, 0, 0, 0]  # K = 5 files carry the value
    K = sum(marked)
    assignments = list(combinations(range(n), n_class))  # every way to pick the class's files
    for a in range(0, n_class + 2):
        brute = sum(sum(marked[i] for i in pick) >= a for pick in assignments) / len(assignments)
        assert stats.hypergeom_sf(a, K, n_class, n) == pytest.approx(brute, abs=1e-12)
    assert stats.hypergeom_min_p(K, n_class, n) == pytest.approx(
        sum(sum(marked[i] for i in pick) == n_class for pick in assignments) / len(assignments))
    # tiny tails keep their precision: 1 / C(30, 15)
    assert stats.hypergeom_sf(15, 15, 15, 30) == pytest.approx(1 / 155117520, rel=1e-9)


def test_per_class_cells_match_an_enumeration_of_every_labelling():
    """Three classes, nine files: every distinct relabelling enumerated (1680 of them)."""
    values = ["6", "6", "6", "1", "6", "1", "1", "1", "8"]
    labels = ["a", "a", "a", "b", "b", "b", "c", "c", "c"]
    res = assess_attribute("exif_orientation", values, labels, n_perm=99)
    relabellings = set(permutations(labels))
    assert len(relabellings) == 1680
    for cell in res.cells:
        obs = cell.count
        hits = sum(sum(1 for v, lab in zip(values, perm) if v == cell.value and lab == cell.label) >= obs
                   for perm in relabellings)
        assert cell.p_value == pytest.approx(hits / len(relabellings), abs=1e-12), (cell.label, cell.value)
    best = max(res.cells, key=lambda c: c.identifiable)
    assert (best.label, best.value) == ("a", "6")
    # identifiable share: 3/3 of 'a' carry 6, P(a | 6) = 3/4, prior 1/3
    assert best.identifiable == pytest.approx(1.0 * (3 / 4 - 1 / 3) / (2 / 3))


def test_benjamini_hochberg_and_simes_match_their_definitions():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = np.round(rng.random(rng.integers(1, 12)) ** 3, 3)
        q = stats.benjamini_hochberg(p)
        m = len(p)
        for i in range(m):  # q_i = min over p_j >= p_i of p_j m / rank_j
            ranks = {j: 1 + sum(p[k] < p[j] or (p[k] == p[j] and k < j) for k in range(m)) for j in range(m)}
            brute = min(min(1.0, p[j] * m / ranks[j]) for j in range(m) if p[j] >= p[i])
            assert q[i] == pytest.approx(brute)
        for level in (0.01, 0.05, 0.2):  # the step-up rule: reject the k smallest, k the largest with p_(k) <= k a / m
            srt = np.sort(p)
            k = max([j + 1 for j in range(m) if srt[j] <= (j + 1) * level / m], default=0)
            assert int(np.sum(q <= level + 1e-15)) == k
        assert stats.simes(p) == pytest.approx(min(np.sort(p)[j] * m / (j + 1) for j in range(m)))


def _rows(n_classes, per, confound=None, share=1.0, noise_seed=None, tag="6"):
    """Attribute rows: one class (index `confound`) has `share` of its files tagged; noise optional."""
    rng = np.random.default_rng(noise_seed) if noise_seed is not None else None
    rows = []
    for c in range(n_classes):
        for i in range(per):
            a = {k: "x" for k in ATTRIBUTES}
            if rng is not None:
                a["exif_orientation"] = str(rng.choice(["1", "1", "1", "3", "8"]))
                a["camera"] = str(rng.choice(["A", "B", "C", "D"]))
                a["resolution"] = str(rng.choice(["0.3-1 MP", "1-3 MP", "3-8 MP"]))
                a["capture_date"] = f"2023-01-{rng.integers(1, 29):02d}"
                a["jpeg_quality"] = str(rng.choice(["q86-90", "q91-95", "q96-100"]))
                a["upright_aspect"] = str(rng.choice(["landscape", "landscape", "portrait"]))
            tagged = c == confound and i < round(share * per)
            if confound is not None:
                a["exif_orientation"] = tag if tagged else a["exif_orientation"] if rng is not None else "1"
                a["stored_aspect"] = "portrait" if tagged else "landscape"
                a["has_exif"] = "yes" if tagged else "no"
            rows.append((f"c{c}/{i}", f"class{c:03d}", a))
    return rows


@pytest.mark.parametrize("n_classes", [2, 3, 10, 20, 200])
@pytest.mark.parametrize("share", [1.0, 0.5])
def test_one_class_tagged_is_a_warning_in_any_number_of_classes(n_classes, share):
    found, _ = find_leaks(_rows(n_classes, 15, confound=0, share=share, noise_seed=n_classes))
    (f,) = [r for r in found if r.attribute == "exif_orientation"]
    assert f.severity == "warning"  # capped: upright applies the tag itself
    assert set(f.also) >= {"stored_aspect", "has_exif"}  # one cause, named once
    assert f.best.label == "class000" and f.best.value == "6"
    others = "'class001'" if n_classes == 2 else f"the other {n_classes - 1} classes"
    assert f"{round(share * 15) / 15:.0%} of 'class000' photos are stored sideways (tag 6) vs 0% of {others}" \
        in f.message
    assert [r.attribute for r in found] == ["exif_orientation"]  # the random attributes stay quiet


def test_an_attribute_upright_does_not_neutralise_is_an_error():
    rows = _rows(3, 15)
    for path, lab, a in rows:
        a["camera"] = "iPhone 12" if lab == "class000" else "Pixel 7"
    found, _ = find_leaks(rows)
    (f,) = found
    assert f.attribute == "camera" and f.severity == "error"
    assert "100% of 'class000' photos are from camera 'iPhone 12' vs 0% of the other 2 classes" in f.message


@pytest.mark.parametrize("n_classes", [2, 3, 10, 20])
def test_random_attributes_give_nothing_above_info(n_classes):
    for seed in range(6):
        found, tested = find_leaks(_rows(n_classes, 15, noise_seed=1000 * n_classes + seed), seed=seed)
        assert not [f for f in found if f.severity in ("warning", "error")], [f.message for f in found]
        assert tested  # the noise attributes were tested, not skipped


def test_unique_values_per_file_predict_nothing():
    labels = ["a"] * 15 + ["b"] * 15
    rows = [(str(i), lab, {**{k: "x" for k in ATTRIBUTES}, "resolution": str(i)}) for i, lab in enumerate(labels)]
    found, (res,) = find_leaks(rows)
    assert found == [] and res.overall_score <= 0
    assert all(c.q_value is None for c in res.cells)  # no cell of one file can reach significance


def test_two_classes_one_camera_each_on_half_a_class():
    """Half of one class from a camera no other class has: a warning from 15 photos per class."""
    rows = _rows(2, 15)
    for path, lab, a in rows:
        a["camera"] = "Lumix" if lab == "class000" and int(path.split("/")[1]) < 8 else "none"
    found, _ = find_leaks(rows)
    (f,) = found
    assert f.attribute == "camera" and f.severity == "warning"
    assert f.best.value == "Lumix" and f.best.identifiable == pytest.approx(8 / 15)


def test_aliased_neutral_attributes_fold_into_one_finding():
    found, tested = find_leaks(_rows(2, 20, confound=0))
    assert [f.attribute for f in found] == ["exif_orientation"]
    assert set(found[0].also) == {"stored_aspect", "has_exif"}
    assert len(tested) == 3
    assert "100% of 'class000' photos are stored sideways (tag 6)" in found[0].message
    assert sorted(found[0].paths) == sorted(f"c0/{i}" for i in range(20))
    folded = {r.attribute: r.folded_into for r in tested}
    assert folded == {"exif_orientation": None, "stored_aspect": "exif_orientation", "has_exif": "exif_orientation"}


def test_null_accuracies_with_many_distinct_values_equal_the_dense_tables():
    """The shuffled-label null (rows only for values held by 2+ files) equals loo_accuracy of every
    full permutation table, with thousands of distinct values, singletons, ties and empty classes."""
    rng = np.random.default_rng(11)
    for n, n_vals, n_cls in ((3000, 2500, 7), (400, 60, 3), (50, 50, 2), (200, 5, 40)):
        v = rng.integers(0, n_vals, n)
        y = rng.integers(0, n_cls, n)
        perms = stats.shuffled_labels(y, 25, seed=int(n))
        dense = stats.loo_accuracy(stats.permutation_tables(v, perms, n_vals, n_cls))
        fast = stats.null_loo_accuracy(v, perms, n_vals, n_cls, max_cells=20_000)  # several chunks
        assert np.allclose(fast, dense, rtol=0, atol=1e-12)


def test_many_distinct_values_cells_and_overall_match_brute_force():
    """An attribute with ~1,500 distinct values: every cell's p is the hypergeometric tail of its own
    2x2 table and the permutation null equals the dense per-permutation tables."""
    rng = np.random.default_rng(5)
    n = 2000
    labels = [f"c{i}" for i in rng.integers(0, 6, n)]
    values = [f"day{d}" for d in rng.integers(0, 1500, n)]
    for i in range(60):  # a planted value for one class
        labels[i], values[i] = "c0", "the afternoon"
    res = assess_attribute("capture_date", values, labels, n_perm=49, seed=2)
    assert len(res.values) == len(set(values)) and res.values[0] == "the afternoon"  # commonest first
    counts = {}
    for val, lab in zip(values, labels):
        counts[val, lab] = counts.get((val, lab), 0) + 1
    assert len(res.cells) == len(counts)
    per_value = {}
    for val in values:
        per_value[val] = per_value.get(val, 0) + 1
    per_class = {lab: labels.count(lab) for lab in set(labels)}
    for c in res.cells[:400]:
        assert c.count == counts[c.value, c.label]
        assert (c.n_value, c.n_class) == (per_value[c.value], per_class[c.label])
        brute = stats.hypergeom_sf(c.count, c.n_value, c.n_class, n)
        assert c.p_value == pytest.approx(float(brute), abs=1e-15)
    vi = {val: i for i, val in enumerate(res.values)}
    li = {lab: i for i, lab in enumerate(res.labels)}
    vv = np.array([vi[x] for x in values])
    yy = np.array([li[x] for x in labels])
    perms = stats.shuffled_labels(yy, 49, 2)
    dense = stats.loo_accuracy(stats.permutation_tables(vv, perms, len(res.values), len(res.labels)))
    assert res.null_accuracy == pytest.approx(float(dense.mean()), abs=1e-12)
    assert res.overall_p == pytest.approx((1 + np.sum(dense >= res.accuracy - 1e-12)) / 50)
    best = max(res.cells, key=lambda c: c.identifiable)
    assert (best.label, best.value) == ("c0", "the afternoon")
