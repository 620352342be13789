"""The audit as a registry of checks, the seed's confound in 3 to 20 classes, and the small things."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import fixtures as af
from fixtures import make_dataset
from upright.audit import checks, run_audit
from upright.audit.checks import DEFAULT_CHECKS, Finding, select
from upright.cli import main
from upright.errors import UprightError

CONTRACT_KEYS = {"kind", "severity", "attribute", "score", "message", "paths"}


def cli(capsys, *args) -> tuple[int, str, str]:
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def leaks(result, attribute=None):
    return [f for f in result["findings"] if f["kind"] == "label_leak" and (attribute is None or f["attribute"] == attribute)]


# ---- the registry --------------------------------------------------------------------------

def test_every_check_has_a_name_needs_and_words():
    names = [c.name for c in DEFAULT_CHECKS]
    assert len(set(names)) == len(names)
    assert set(names) == {"unreadable", "classes", "label_leak", "tiny", "duplicates", "near_duplicates", "sideways"}
    for c in DEFAULT_CHECKS:
        assert c.needs <= set(checks.NEEDS) and "facts" in c.needs and c.summary
        assert isinstance(c.params(), dict)
    assert {c.name for c in DEFAULT_CHECKS if c.needs & {"embeddings", "rotations"}} == {"near_duplicates", "sideways"}


def test_select_and_unknown_names():
    assert [c.name for c in select("label_leak, tiny")] == ["label_leak", "tiny"]
    assert "sideways" not in [c.name for c in select(None, "sideways,near_duplicates")]
    assert [c.name for c in select(["label_leak", "tiny"], ["tiny"])] == ["label_leak"]
    with pytest.raises(UprightError, match="unknown check 'nope'.*unreadable, classes, label_leak"):
        select("label_leak,nope")


def test_finding_to_dict_is_the_contract():
    f = Finding("tiny", "warning", "small", paths=["a.jpg"], score=0.123456, details={"extra": 1})
    d = f.to_dict()
    assert list(d)[:6] == ["kind", "severity", "attribute", "score", "message", "paths"]
    assert d["score"] == 0.1235 and d["extra"] == 1 and Finding.from_dict(d) == Finding(
        "tiny", "warning", "small", None, 0.1235, ["a.jpg"], {"extra": 1})


def test_cli_checks_and_skip(tmp_path, capsys):
    root = af.confounded(tmp_path / "d")
    code, out, _ = cli(capsys, "audit", root, "--metadata-only", "--json", "--checks", "label_leak")
    r = json.loads(out)
    assert code == 0 and r["checks_run"] == ["label_leak"] and {f["kind"] for f in r["findings"]} == {"label_leak"}
    assert r["checks"]["unreadable"] is None and r["checks"]["decode"] is None  # no decode pass was needed
    code, out, _ = cli(capsys, "audit", root, "--metadata-only", "--json", "--skip", "label_leak,tiny")
    r = json.loads(out)
    assert code == 0 and not leaks(r) and "label_leak" not in r["checks_run"]
    assert r["checks_not_run"]["label_leak"] == "left out by --checks/--skip"
    assert r["checks_not_run"]["sideways"] == "--metadata-only: needs embeddings"
    code, _, err = cli(capsys, "audit", root, "--checks", "label_leak,bogus")
    assert code == 2 and "unknown check 'bogus'" in err and "near_duplicates, sideways" in err
    code, _, err = cli(capsys, "audit", root, "--metadata-only", "--checks", "sideways")
    assert code == 2 and "needs the picture embeddings" in err


def test_help_names_every_check(capsys):
    code, out, _ = cli(capsys, "audit", "--help")
    text = " ".join(out.split())
    assert code == 0 and "--checks" in text and "--skip" in text
    for c in DEFAULT_CHECKS:
        assert c.name in text


class FakeEmbeddings:
    """Stands in for pipeline.embed.embed_paths: records the views asked for, returns random vectors."""

    def __init__(self):
        self.calls = []

    def __call__(self, paths, *, variants=("id",), **kw):
        from upright.pipeline.embed import Embeddings

        self.calls.append(tuple(variants))
        rng = np.random.default_rng(0)
        v = rng.normal(size=(len(paths), len(variants), 16)).astype(np.float32)
        return Embeddings(v, np.ones(len(paths), bool), {}, tuple(variants))


def test_only_the_views_a_check_needs_are_embedded(tmp_path, monkeypatch):
    import upright.pipeline.embed as features

    fake = FakeEmbeddings()
    monkeypatch.setattr(features, "embed_paths", fake)
    root = make_dataset(tmp_path / "d", 22, ("a", "b"))
    r = run_audit(root, progress=False, checks="near_duplicates")
    assert fake.calls == [("id",)] and r["checks_run"] == ["near_duplicates"]
    r = run_audit(root, progress=False, checks=["sideways"])
    assert fake.calls[-1] == ("id", "r90", "r180", "r270") and r["checks_run"] == ["sideways"]
    assert r["sideways"]["folds"] == 44  # the sideways check ran on the fake views


def test_fix_rotate_sideways_runs_the_sideways_check_alone(tmp_path, monkeypatch):
    import upright.pipeline.embed as features
    import upright.fix as fix_module
    from upright.fix import run_fix

    monkeypatch.setattr(features, "embed_paths", FakeEmbeddings())
    seen = []
    real = fix_module.run_audit

    def spy(*a, **kw):
        res = real(*a, **kw)
        seen.append(res)
        return res

    monkeypatch.setattr(fix_module, "run_audit", spy)
    root = af.confounded(tmp_path / "d")
    run_fix(root, out=tmp_path / "out", rotate_sideways=True, progress=False)
    (res,) = seen
    assert res["checks_run"] == ["sideways"] and not leaks(res)
    assert res["timings"].keys() >= {"sideways"} and "label_leak" not in res["timings"]


# ---- the seed's confound, in any number of classes ----------------------------------------

@pytest.mark.parametrize("n_classes", [3, 10, 20])
@pytest.mark.parametrize("share", [1.0, 0.5])
def test_seed_confound_is_a_warning_in_3_10_20_classes(tmp_path, n_classes, share):
    root = af.one_class_tagged(tmp_path / "d", n_classes, 15, share)
    r = run_audit(root, content=False, progress=False, checks="label_leak")
    (f,) = leaks(r)
    assert f["attribute"] == "exif_orientation" and f["severity"] in ("warning", "error")
    assert set(f["also"]) >= {"stored_aspect"}  # the stored shape follows from the tag
    pct = f"{round(share * 15) / 15:.0%}"
    assert f"{pct} of 'class_00' photos are stored sideways (tag 6) vs 0% of the other {n_classes - 1} classes" \
        in f["message"]
    assert f["class"] == "class_00" and f["value"] == "6"
    assert len(f["paths"]) == round(share * 15) and all("/class_00/" in p for p in f["paths"])
    assert r["attributes"]["stored_aspect"]["folded_into"] == "exif_orientation"


@pytest.mark.parametrize("n_classes", [3, 10])
def test_random_tags_stay_quiet(tmp_path, n_classes):
    for seed in range(3):
        root = af.random_tags(tmp_path / f"d{seed}", n_classes, 15, seed)
        r = run_audit(root, content=False, progress=False, checks="label_leak")
        assert all(f["severity"] == "info" for f in leaks(r)), [f["message"] for f in leaks(r)]


# ---- small things ------------------------------------------------------------------------------

def test_unreadable_message_says_how_many_more(tmp_path):
    root = make_dataset(tmp_path / "d", 6, ("a", "b"))
    for i in range(5):
        (root / "a" / f"broken_{i}.jpg").write_bytes(b"")
    r = run_audit(root, content=False, progress=False)
    (f,) = [f for f in r["findings"] if f["kind"] == "unreadable"]
    assert f["message"].startswith("5 files cannot be read") and "; and 2 more." in f["message"]
    assert len(f["paths"]) == 5


def test_every_empty_class_is_reported(tmp_path):
    root = make_dataset(tmp_path / "d", 12, ("a", "b"))
    for name in ("c", "d"):
        (root / name).mkdir()
        (root / name / "x.jpg").write_bytes(b"")
    r = run_audit(root, content=False, progress=False)
    (f,) = [f for f in r["findings"] if f["kind"] == "class_imbalance" and f["severity"] == "error"]
    assert "'c'" in f["message"] and "'d'" in f["message"] and f["empty"] == ["c", "d"]


def test_one_class_is_a_warning_not_no_findings(tmp_path, capsys):
    root = make_dataset(tmp_path / "d", 12, ("only",))
    code, out, _ = cli(capsys, "audit", root, "--metadata-only", "--json", "--fail-on", "warning")
    r = json.loads(out)
    (f,) = r["findings"]
    assert code == 1 and f["kind"] == "too_few_classes" and f["severity"] == "warning"
    assert "needs at least two" in f["message"]


# ---- messages in plain words (issue 25) ---------------------------------------------------------

def class_findings(root):
    return [f for f in run_audit(root, checks="classes", content=False, progress=False)["findings"]
            if f["kind"] == "class_imbalance"]


def test_equal_small_classes_are_called_small_not_imbalanced(tmp_path):
    (f,) = class_findings(make_dataset(tmp_path / "tie", 3, ("a", "b")))
    assert f["severity"] == "info" and f["ratio"] == 1.0
    assert f["message"].startswith("Every class has fewer than 10 images ('a' 3, 'b' 3): too few"), f["message"]
    assert "imbalanced" not in f["message"] and "1.0x" not in f["message"]
    assert class_findings(make_dataset(tmp_path / "even", 12, ("a", "b"))) == []  # equal and big enough: nothing


def test_imbalance_names_the_big_and_the_small_class(tmp_path):
    root = make_dataset(tmp_path / "d", 30, ("big",))
    make_dataset(root, 3, ("a", "small"))  # 'a' and 'small' tie at the bottom: one is named, never 'big' twice
    (f,) = class_findings(root)
    assert f["severity"] == "error" and f["ratio"] == 10.0
    assert f["message"].startswith("classes are imbalanced: 'big' has 30 images, 'a' 3 (10.0x)."), f["message"]
    assert "2 classes have fewer than 10 images ('a' 3, 'small' 3)." in f["message"]
    make_dataset(tmp_path / "one", 1, ("x",))
    make_dataset(tmp_path / "one", 2, ("y", "z"))
    (f,) = class_findings(tmp_path / "one")
    assert f["message"].startswith("classes are imbalanced: 'y' has 2 images, 'x' 1 (2.0x).")


def test_counts_are_words_never_1_classes(tmp_path, capsys):
    from upright.words import count

    assert [count(n, "class") for n in (0, 1, 2)] == ["0 classes", "1 class", "2 classes"]
    assert count(1, "near copy") == "1 near copy" and count(3, "near copy") == "3 near copies"
    root = make_dataset(tmp_path / "d", 12, ("only",))
    (root / "only" / "broken.jpg").write_bytes(b"")
    _, out, _ = cli(capsys, "audit", root, "--metadata-only")
    assert "13 images, 12 readable, 1 class (only 12)" in out and "1 error, 1 warning, 0 info." in out, out
    _, out, _ = cli(capsys, "audit", root, "--metadata-only", "--json")
    text = " ".join(f["message"] for f in json.loads(out)["findings"])
    assert "1 file cannot be read and is left out of training" in text, text
    assert not re.search(r"\b1 (classes|files|images|errors|warnings)\b|\((s|es)\)", text + out), text


def test_a_copy_across_train_and_test_names_those_splits(tmp_path):
    import shutil

    root = make_dataset(tmp_path / "d" / "train", 12, ("a", "b")).parent
    (root / "test" / "a").mkdir(parents=True)
    shutil.copy(root / "train" / "a" / "a_000.jpg", root / "test" / "a" / "copy.jpg")  # same bytes in test/
    af.write_photo(root / "test" / "b" / "new.jpg", af.class_picture(1, 500))
    (f,) = [f for f in run_audit(root, checks="duplicates", content=False, progress=False)["findings"]]
    assert f["crosses"] == "split" and f["severity"] == "warning"
    assert f["message"].startswith("1 group of identical files (2 files) crosses train and test: eval's score on "
                                   "test/ counts pictures the model was fitted on."), f["message"]
    assert "validation" not in f["message"]
    # near copies (embeddings) say the same; train/val and val/test crossings say what each costs
    from upright.audit.duplicates import Item, near_findings

    items = [Item("train/a/1.jpg", "a", "train", "1"), Item("test/a/2.jpg", "a", "test", "2"),
             Item("train/b/3.jpg", "b", "train", "3"), Item("train/b/4.jpg", "b", "val", "4")]
    vectors = np.array([[1, 0, 0], [1, 0.01, 0], [0, 1, 0], [0, 1, 0.01]], np.float32)
    (near,) = near_findings(items, vectors)
    assert near.message.startswith("2 groups of near-identical pictures (4 files) cross train, val and test: "
                                      "the validation score counts pictures the model trained on and eval's score "
                                      "on test/ counts pictures the model was fitted on."), near.message


# ---- the report agrees with the finding ------------------------------------------------------

def test_report_table_heat_map_and_chart_agree_with_the_finding(tmp_path):
    import re

    from upright.audit.report import attribute_rows, flagged_cells, write_report

    root = af.one_class_tagged(tmp_path / "d", 3, 15, 0.5)
    r = run_audit(root, content=False, progress=False)
    (f,) = leaks(r)
    cells = flagged_cells(r)
    assert ("exif_orientation", "class_00", "6") in cells and ("stored_aspect", "class_00", "portrait") in cells
    rows = {row["attribute"]: row for row in attribute_rows(r)}
    assert rows["exif_orientation"]["verdict"] == f["severity"]
    assert rows["exif_orientation"]["contrast"] == "53% of 'class_00' stored sideways (tag 6) vs 0% elsewhere"
    assert rows["exif_orientation"]["picked_out"] == "53%"
    assert rows["stored_aspect"]["verdict"] == "in the EXIF orientation tag finding"
    assert all(not row["picked_out"].startswith("-") for row in rows.values())  # no negative scores
    html = write_report(r, tmp_path / "audit.html", data=root).read_text()
    text = re.sub(r"<[^>]+>", " ", html)
    assert "the value alone picks out 53% of &#39;class_00&#39; photos: 53% of them have it and no other class does" in html
    assert re.search(r'<td class="n hot">8 \(53%\)</td>', html)  # the named cell, marked in the finding's table
    assert "exif_orientation =" not in text and "stored_aspect" not in text  # words, not raw keys
    assert "label leak · EXIF orientation tag" in text
    # stored = upright for untagged files: one picture, not two identical ones
    r2 = run_audit(make_dataset(tmp_path / "plain", 12, ("a", "b"), w=60, h=40), content=False, progress=False)
    html2 = write_report(r2, tmp_path / "plain.html").read_text()
    assert 'alt="stored upright"' in html2 and 'alt="as stored"' not in html2


def test_report_thumbnails_come_from_each_named_cell(tmp_path):
    """Two classes singled out by their phones: the card shows photos of each cell, spread over
    the cell (not the first files by path), named by their path below DATA, nothing absolute."""
    from upright.audit.report import write_report

    phones = {"a": ("samsung", "SM-G991B"), "b": ("Google", "Pixel 7"), "c": ("Apple", "iPhone 13"),
              "d": ("Apple", "iPhone 13")}
    root = tmp_path / "photos"
    for ci, (label, (make, model)) in enumerate(phones.items()):
        for i in range(12):
            af.write_photo(root / label / f"IMG_{i:04d}.jpg", af.class_picture(ci, i, 48, 32), make=make, model=model)
    r = run_audit(root, content=False, progress=False)
    (f,) = leaks(r, "camera")
    assert f["cells"] == [{"class": "a", "value": "samsung SM-G991B", "count": 12},
                          {"class": "b", "value": "Google Pixel 7", "count": 12}]
    assert f["paths"][:12] == [str(root / "a" / f"IMG_{i:04d}.jpg") for i in range(12)]  # cell by cell
    html = write_report(r, tmp_path / "audit.html", data=root).read_text()
    card = html[html.index("label leak · camera make/model"):]
    card = card[:card.index('<div class="card', 10)] if '<div class="card' in card[10:] else card
    shown = re.findall(r"<b>([a-d]/IMG_\d{4}\.jpg)</b>", card)
    assert [p[0] for p in shown] == ["a"] * 4 + ["b"] * 4, shown  # each named cell's own photos
    assert "a/IMG_0011.jpg" in shown and "b/IMG_0011.jpg" in shown  # spread over the cell, not its first four
    assert "&#39;b&#39; · from camera &#39;Google Pixel 7&#39;" in card
    assert str(tmp_path) not in html  # DATA by its folder name, photos below it


@pytest.mark.browser
def test_report_renders_in_a_browser(tmp_path, browser):
    """The page as a user opens it: Chromium loads it offline, the plots are decoded images."""
    from upright.audit.report import write_report

    root = af.one_class_tagged(tmp_path / "d", 3, 15, 0.5)
    path = write_report(run_audit(root, content=False, progress=False), tmp_path / "audit.html", data=root)
    page = browser.new_page()
    page.goto(path.as_uri())
    widths = page.eval_on_selector_all("img.plot", "els => els.map(e => e.naturalWidth)")
    hot = page.inner_text("td.hot")
    page.close()
    assert len(widths) == 3 and min(widths) > 100
    assert hot == "8 (53%)"


def test_sideways_thumbnails_of_untagged_files_show_no_copy(tmp_path):
    """An untagged file flagged as sideways: as stored (= upright) and turned back, not three views."""
    from upright.audit.report import write_report

    root = make_dataset(tmp_path / "d", 4, ("a", "b"))
    paths = [str(p) for p in sorted((root / "a").iterdir())[:2]]
    result = run_audit(root, content=False, progress=False)
    result.findings.append(Finding("sideways", "warning", "turned", None, 0.9, paths,
                                   {"items": [{"path": p, "rotation": 90, "confidence": 0.9} for p in paths]}))
    html = write_report(result, tmp_path / "r.html").read_text()
    assert html.count('alt="turned back"') == 2 and html.count('alt="as stored"') == 2
    assert 'alt="upright"' not in html
