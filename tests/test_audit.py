"""`upright audit`: leaks found where they are, not where they are not; broken files listed."""

import json
import re
import shutil

import pytest

import fixtures as af
from upright.audit import SEVERITY_RANK, fails, run_audit, worst_severity
from upright.audit.report import write_report


def leaks(result, attribute=None):
    return [f for f in result["findings"] if f["kind"] == "label_leak" and (attribute is None or f["attribute"] == attribute)]


def mixed(root):
    """Findings of every severity: an unreadable file (error), the orientation shortcut and a
    tiny picture (warnings), an exact duplicate within one class and split (info)."""
    af.confounded(root)
    shutil.copy(root / "diet" / "diet_000.jpg", root / "diet" / "copy_of_000.jpg")
    (root / "zero" / "empty.jpg").write_bytes(b"")
    af.write_photo(root / "zero" / "tiny.jpg", af.class_picture(1, 99, 40, 30))
    return root


def assert_most_severe_first(severities, scores=None):
    ranks = [SEVERITY_RANK[s] for s in severities]
    assert ranks == sorted(ranks), severities
    if scores is not None:  # within one severity, the highest score first
        for (r1, s1), (r2, s2) in zip(zip(ranks, scores), zip(ranks[1:], scores[1:])):
            assert r1 < r2 or s1 >= s2, (severities, scores)


def test_confounded_orientation_is_a_finding(tmp_path):
    r = run_audit(af.confounded(tmp_path / "d"), content=False, progress=False)
    (f,) = leaks(r, "exif_orientation")
    assert f["severity"] in ("warning", "error")
    assert "100% of 'diet' photos are stored sideways (tag 6) vs 0% of 'zero'" in f["message"]
    assert "upright fix" in f["message"]
    assert len(f["paths"]) == 20 and all("/diet/" in p for p in f["paths"])
    assert r["n_images"] == 40 and r["classes"] == {"diet": 20, "zero": 20} and r["unreadable"] == []
    for key in ("kind", "severity", "attribute", "score", "message", "paths"):
        assert key in f


def test_orientations_spread_evenly_give_no_finding(tmp_path):
    r = run_audit(af.spread(tmp_path / "d"), content=False, progress=False)
    assert leaks(r) == []
    assert r["findings"] == []
    # the report still shows the orientation mix
    assert set(r["attributes"]["exif_orientation"]["values"]) == {"1", "3", "6", "8"}


def test_camera_leak(tmp_path):
    r = run_audit(af.camera_leak(tmp_path / "d"), content=False, progress=False)
    (f,) = leaks(r, "camera")
    assert f["severity"] == "error"
    # the message names one camera, with the class it was used for, and flags that class's files
    cameras = (("Apple iPhone 12", "cat"), ("Canon EOS 80D", "dog"))
    named = [(cam, lab) for cam, lab in cameras if f"'{cam}'" in f["message"]]
    assert len(named) == 1, f["message"]
    cam, lab = named[0]
    assert f"'{lab}'" in f["message"]
    assert len(f["paths"]) == 20 and all(f"/{lab}/" in p for p in f["paths"])
    assert not leaks(r, "exif_orientation")


def test_messy_dataset_duplicates_and_unreadable(tmp_path):
    root = af.messy(tmp_path / "d")
    r = run_audit(root, content=False, progress=False)  # --metadata-only: headers, no pixel
    reasons = {p.rsplit("/", 1)[1]: why for p, why in ((u["path"], u["reason"]) for u in r["unreadable"])}
    assert set(reasons) == {"empty.jpg", "notes.jpg"}  # a truncated JPEG has a good header
    assert r["checks"]["unreadable"] == "headers only" and r["checks"]["decode"] is None
    # the content run decodes: the unreadable check alone takes the cheap 32 px decode
    decoded = run_audit(root, progress=False, checks="unreadable")
    reasons = {p.rsplit("/", 1)[1]: why for p, why in ((u["path"], u["reason"]) for u in decoded["unreadable"])}
    assert set(reasons) == {"empty.jpg", "notes.jpg", "truncated.jpg"}
    assert "0 bytes" in reasons["empty.jpg"] and "text" in reasons["notes.jpg"] and "truncated" in reasons["truncated.jpg"]
    assert all("\n" not in why for why in reasons.values())
    assert decoded["checks"]["decode"].startswith("32 px decode")
    (dup,) = [f for f in r["findings"] if f["kind"] == "duplicate"]
    assert dup["severity"] == "error" and dup["crosses"] == "labels"
    assert sorted(p.rsplit("/", 1)[1] for p in dup["paths"]) == ["cat_000.jpg", "dup_of_cat_000.jpg"]
    assert decoded["classes"] == {"cat": 12, "dog": 13}  # the audit went on past the broken files
    assert r["classes"] == {"cat": 12, "dog": 14}  # headers only: the truncated file counts as readable
    assert fails(r, "error") and fails(r, "warning") and not fails(r, None)


def test_findings_most_severe_first(tmp_path):
    r = run_audit(mixed(tmp_path / "d"), content=False, progress=False)
    sevs = [f["severity"] for f in r["findings"]]
    assert set(sevs) == {"error", "warning", "info"}  # the order below is not checked on one severity
    assert_most_severe_first(sevs, [f["score"] for f in r["findings"]])
    assert [f["kind"] for f in r["findings"]][0] == "unreadable" and r["findings"][-1]["kind"] == "duplicate"
    assert r["counts"] == {"error": 1, "warning": 2, "info": 1} and worst_severity(r) == "error"
    info_only = {"findings": [f for f in r["findings"] if f["severity"] == "info"]}
    assert worst_severity(info_only) == "info" and fails(info_only, "info") and not fails(info_only, "warning")


def test_cli_json_and_fail_on(tmp_path, cli):
    root = af.confounded(tmp_path / "d")
    code, out, _ = cli("audit", root, "--metadata-only", "--json")
    assert code == 0
    r = json.loads(out)
    assert {"n_images", "classes", "unreadable", "findings"} <= set(r)
    assert cli("audit", root, "--metadata-only", "--json", "--fail-on", "warning")[0] == 1
    assert cli("audit", root, "--metadata-only", "--json", "--fail-on", "error")[0] == 0
    clean = af.spread(tmp_path / "clean")
    assert cli("audit", clean, "--metadata-only", "--fail-on", "warning")[0] == 0
    code, out, _ = cli("audit", tmp_path / "missing", "--metadata-only")
    assert code == 2


def test_terminal_summary_most_severe_first(tmp_path, cli):
    root = af.messy(tmp_path / "d")
    code, out, _ = cli("audit", root, "--metadata-only")
    assert code == 0
    assert "2 files cannot be read" in re.sub(r"\s+", " ", out.replace("│", " "))  # headers only
    code, out, _ = cli("audit", mixed(tmp_path / "m"), "--metadata-only")
    rows = re.findall(r"^│ (error|warning|info)\s+│ (\w+)", out, flags=re.M)  # severity and kind, row by row
    assert [s for s, _ in rows] == ["error", "warning", "warning", "info"], out
    assert rows[0][1] == "unreadable" and rows[-1][1] == "duplicate"
    assert "1 error, 2 warnings, 1 info." in out


@pytest.mark.slow
def test_report_html_has_plots_and_thumbnails(tmp_path, cli):
    root = af.confounded(tmp_path / "d")
    report = tmp_path / "audit.html"
    code, out, _ = cli("audit", root, "--metadata-only", "--report", report)
    assert code == 0 and report.exists()
    html = report.read_text()
    assert html.count("data:image/png;base64,") >= 3  # orientation bars, heat map, class counts
    for alt in ('alt="orientation by class"', 'alt="attribute by label heat map"', 'alt="class counts"'):
        assert alt in html
    assert 'alt="as stored"' in html and 'alt="upright"' in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html  # self-contained


def test_report_of_messy_dataset(tmp_path):
    root = af.messy(tmp_path / "d")
    r = run_audit(root, content=False, progress=False)
    html = write_report(r, tmp_path / "r.html", data=root).read_text()
    assert "empty file (0 bytes)" in html and "duplicate" in html


@pytest.mark.slow
def test_content_checks_on_a_small_dataset(tmp_path):
    """The embedding pass finds undecodable files; the sideways head says it needs more images."""
    root = af.messy(tmp_path / "d", n=6)
    r = run_audit(root, content=True, progress=False)
    assert {u["path"].rsplit("/", 1)[1] for u in r["unreadable"]} == {"empty.jpg", "notes.jpg", "truncated.jpg"}
    (sw,) = [f for f in r["findings"] if f["kind"] == "sideways"]
    assert sw["severity"] == "info" and "at least" in sw["message"] and sw["skipped"]
    assert r["checks"]["near_duplicates"]
