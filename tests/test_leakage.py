"""The attribute-predicts-label statistics (no files: pure numbers)."""

import numpy as np

from upright.audit.leakage import assess_attribute, find_leaks, loo_accuracy, severity_for


def test_loo_accuracy_closed_form_matches_brute_force():
    rng = np.random.default_rng(3)
    vals = rng.integers(0, 4, 37)
    labs = rng.integers(0, 3, 37)
    table = np.zeros((4, 3))
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

    assert abs(loo_accuracy(table) - brute()) < 1e-12
    stack = np.stack([table, table])
    assert np.allclose(loo_accuracy(stack), brute())


def test_perfect_confound_at_20_per_class_is_significant():
    labels = ["diet"] * 20 + ["zero"] * 20
    r = assess_attribute("exif_orientation", ["6"] * 20 + ["1"] * 20, labels)
    assert r.accuracy == 1.0 and r.score > 0.9 and r.p_value <= 0.001
    assert severity_for(r.score, r.p_value, "camera") == "error"
    assert severity_for(r.score, r.p_value, "exif_orientation") == "warning"  # upright neutralises it


def test_even_spread_and_noise_give_no_finding():
    labels = ["a"] * 20 + ["b"] * 20
    vals = [str(t) for t in (1, 3, 6, 8)] * 10
    r = assess_attribute("exif_orientation", vals, labels)
    assert severity_for(r.score, r.p_value, r.attribute) is None
    rng = np.random.default_rng(0)
    hits = 0
    for seed in range(30):
        v = list(rng.choice(["x", "y", "z"], 40))
        r = assess_attribute("camera", v, labels, seed=seed)
        hits += severity_for(r.score, r.p_value, "camera") is not None
    assert hits <= 1  # thresholds are strict: random attributes almost never flag


def test_unique_values_per_file_predict_nothing():
    labels = ["a"] * 15 + ["b"] * 15
    r = assess_attribute("resolution", [str(i) for i in range(30)], labels)
    assert r.score <= 0 and severity_for(r.score, r.p_value, "resolution") is None


def test_aliased_neutral_attributes_fold_into_one_finding():
    rows = []
    for i in range(20):
        rows.append((f"d{i}", "diet", {"exif_orientation": "6", "camera": "none", "stored_aspect": "portrait",
                                       "upright_aspect": "landscape", "resolution": "<0.05 MP", "format": "JPEG",
                                       "has_exif": "yes", "color_mode": "RGB"}))
        rows.append((f"z{i}", "zero", {"exif_orientation": "1", "camera": "none", "stored_aspect": "landscape",
                                       "upright_aspect": "landscape", "resolution": "<0.05 MP", "format": "JPEG",
                                       "has_exif": "no", "color_mode": "RGB"}))
    found, tested = find_leaks(rows)
    assert [f.attribute for f in found] == ["exif_orientation"]
    assert set(found[0].also) == {"stored_aspect", "has_exif"}
    assert len(tested) == 3
    assert "96%" not in found[0].message and "100% of 'diet' photos are stored sideways (tag 6)" in found[0].message
    assert sorted(found[0].paths) == sorted(f"d{i}" for i in range(20))
