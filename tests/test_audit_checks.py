"""The audit as a registry of checks, the seed's confound in 3 to 20 classes, and the small things."""

from __future__ import annotations

import json

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
    """Stands in for features.embed_paths: records the views asked for, returns random vectors."""

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
