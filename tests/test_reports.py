"""The HTML reports are Jinja2 templates: values are escaped, a missing value fails the render,
each report still shows its plots and thumbnails, and the templates ship with the package."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import jinja2
import pytest

from fixtures import class_picture, make_dataset, write_photo
from upright.audit import Finding, run_audit
from upright.audit.report import write_report as write_audit_report
from upright.demo.data import DemoData
from upright.demo.report import write_report as write_demo_report
from upright.evaluate import write_report as write_eval_report
from upright.report.templating import environment, render

HOSTILE = '<script>alert(1)</script>'
HOSTILE_LABEL = "<script>diet"  # a folder name cannot hold "/", so no closing tag in labels
HOSTILE_FILE = 'x" onmouseover="alert(1)'  # breaks out of an unescaped attribute


def assert_escaped(html: str) -> None:
    """No tag or attribute came from data: the pages themselves have no script and no handlers."""
    assert "<script" not in html.lower()
    assert "onmouseover=" not in html.replace('onmouseover=&#34;', "")
    assert "&lt;script&gt;" in html


def images(html: str, kind: str) -> int:
    return len(re.findall(rf'src="data:image/{kind};base64,', html))


def hostile_dataset(root: Path) -> Path:
    """The soda-can shortcut under hostile names: the sideways class's label is markup."""
    make_dataset(root, 12, (HOSTILE_LABEL, "zero"), orientation={HOSTILE_LABEL: 6, "zero": None})
    write_photo(root / "zero" / f"{HOSTILE_FILE}.jpg", class_picture(1, 99))
    return root


def test_audit_report_escapes_labels_and_paths(tmp_path):
    root = hostile_dataset(tmp_path / HOSTILE.replace("/", "_"))
    result = run_audit(root, content=False, progress=False)
    leak = [f for f in result["findings"] if f["kind"] == "label_leak"]
    assert leak and leak[0]["table"]["labels"] == [HOSTILE_LABEL, "zero"]
    # a sideways finding shows a third view (turned back); its message carries markup too
    paths = leak[0]["paths"][:2]
    result.findings.insert(0, Finding("sideways", "warning", f"looks sideways {HOSTILE}", None, 0.9, paths,
                                      {"items": [{"path": p, "rotation": 90, "confidence": 0.9} for p in paths]}))
    zero = str(root / "zero" / f"{HOSTILE_FILE}.jpg")
    result.findings.append(Finding("duplicate", "info", "same", None, 1.0, [zero, zero], {"groups": [[zero, zero]]}))
    html = write_audit_report(result, tmp_path / "audit.html", data=root).read_text()
    assert_escaped(html)
    assert "&lt;script&gt;diet" in html  # the label, in the leak table and thumbnail captions
    assert 'x&#34; onmouseover=&#34;alert(1).jpg' in html  # the file name, as text and in title=""
    assert images(html, "png") >= 3 and images(html, "jpeg") >= 2 * len(paths) + len(paths) + 2
    assert html.count('alt="turned back"') == len(paths)
    assert 'alt="as stored"' in html and 'alt="upright"' in html


def test_eval_report_escapes_and_shows_plots_and_mistakes(tmp_path):
    bad = write_photo(tmp_path / HOSTILE.replace("/", "_") / f"{HOSTILE_FILE}.jpg", class_picture(0, 1))
    labels = [HOSTILE_LABEL, "zero"]
    result = {
        "accuracy": 0.5, "n": 2, "labels": labels, "split": HOSTILE, "data": HOSTILE, "model": HOSTILE,
        "orientation_policy": "upright", "confusion": [[1, 0], [1, 0]],
        "per_class": {HOSTILE_LABEL: {"precision": 0.5, "recall": 1.0, "n": 1},
                      "zero": {"precision": 0.0, "recall": 0.0, "n": 1}},
        "rotations": {"0": 0.5, "90": 0.5, "180": 0.5, "270": 0.5},
        "mistakes": [{"path": str(bad), "label": "zero", "predicted": HOSTILE_LABEL, "score": 0.7},
                     {"path": str(tmp_path / "gone.jpg"), "label": "zero", "predicted": HOSTILE_LABEL, "score": 0.6}],
        "unreadable": [{"path": f"/data/{HOSTILE_FILE}.jpg", "reason": HOSTILE}],
    }
    path = tmp_path / "eval.html"
    write_eval_report(result, path)
    html = path.read_text()
    assert_escaped(html)
    assert 'alt="confusion matrix"' in html and 'alt="accuracy per rotation"' in html and images(html, "png") == 2
    assert images(html, "jpeg") == 1 and "<em>unreadable</em>" in html  # one thumbnail, one gone
    assert "Mistakes (2)" in html and "Unreadable (skipped)" in html


def test_eval_report_names_photos_below_data_never_absolute(tmp_path):
    data = tmp_path / "flowers"
    photo = write_photo(data / "test" / "roses" / "IMG_0055.jpg", class_picture(0, 1))
    result = {
        "accuracy": 0.5, "n": 2, "labels": ["roses", "tulips"], "split": "test", "data": str(data),
        "model": str(tmp_path / "models" / "m1"), "orientation_policy": "upright", "confusion": [[0, 1], [0, 1]],
        "per_class": {"roses": {"precision": 0.0, "recall": 0.0, "n": 1},
                      "tulips": {"precision": 0.5, "recall": 1.0, "n": 1}},
        "rotations": {"0": 0.5}, "seen_in_training": 0, "near_copies_of_training": 0,
        "mistakes": [{"path": str(photo), "label": "roses", "predicted": "tulips", "score": 0.8}],
        "unreadable": [{"path": str(data / "test" / "tulips" / "IMG_0056.jpg"), "reason": "truncated"}],
    }
    write_eval_report(result, tmp_path / "eval.html")
    html = (tmp_path / "eval.html").read_text()
    assert str(tmp_path) not in html
    assert ">test/roses/IMG_0055.jpg</div>" in html and "<code>test/tulips/IMG_0056.jpg</code>" in html
    assert "<code>flowers</code>" in html and "<code>m1</code>" in html


def test_demo_report_escapes_and_shows_pictures(tmp_path):
    train = hostile_dataset(tmp_path / "photos")
    audit = run_audit(train, content=False, progress=False)
    labels = (HOSTILE_LABEL, "zero")
    data = DemoData(
        root=tmp_path, train_dir=train, test_dir=tmp_path / HOSTILE.replace("/", "_"), labels=labels,
        n_train={HOSTILE_LABEL: 12, "zero": 13}, n_test={HOSTILE_LABEL: 2, "zero": 2}, sources=[HOSTILE],
        phones={HOSTILE_LABEL: [{"name": HOSTILE, "orientation": 6, "stores": "sideways"}],
                "zero": [{"name": "phone", "orientation": 1, "stores": "upright"}]},
        examples={lab: [str(p) for p in sorted((train / lab).glob("*.jpg"))[:4]] for lab in labels},
    )

    def run(acc):
        return {"how": HOSTILE, "accuracy": acc, "val_accuracy": 0.9, "confusion": [[2, 0], [1, 1]],
                "per_class": {HOSTILE_LABEL: {"recall": 1.0}, "zero": {"recall": 0.5}},
                "rotations": {"0": acc, "90": 0.5, "180": 0.5, "270": 0.5}}

    result = {"backbone": HOSTILE, "naive": run(0.5), "upright": run(0.75)}
    html = write_demo_report(result, audit, data, tmp_path / "demo.html").read_text()
    assert_escaped(html)
    assert "sideways = &lt;script&gt;diet" in html  # the label, in the story's text
    assert images(html, "jpeg") == 2 * 8  # 4 examples per class, as stored and as seen
    assert images(html, "png") == 5  # orientation by class; confusion and rotations for each model
    assert 'alt="as stored"' in html and 'alt="as seen"' in html and "exif_orientation" in html


def test_missing_value_fails_the_render():
    with pytest.raises(jinja2.UndefinedError):
        render("base.html", title="no subtitle given")
    with pytest.raises(jinja2.UndefinedError):
        render("eval.html", title="t", subtitle="s", accuracy=1.0)  # the rest of the context is missing
    macro = environment().from_string('{% import "macros.html" as m %}{{ m.leak_table(t, "a") }}')
    with pytest.raises(jinja2.UndefinedError):
        macro.render(t={"labels": ["x"], "counts": [[1]]})  # no "values"


def test_macros_render_escaped_tables():
    env = environment()
    html = env.from_string('{% import "macros.html" as m %}{{ m.confusion_table(c, labels) }}'
                           '{{ m.leak_table(t, attr) }}').render(
        c=[[3, 1], [0, 2]], labels=[HOSTILE, "b"], attr=HOSTILE,
        t={"values": ["1", HOSTILE], "labels": ["a", "b"], "counts": [[4, 0], [0, 5]]})
    assert "<script" not in html and html.count("&lt;script&gt;") == 4
    assert "<td><b>3</b></td><td>1</td>" in html and "<td>0</td><td><b>2</b></td>" in html
    assert "\\ class</th><th>a</th><th>b</th>" in html and "<td>4</td><td>0</td>" in html


def test_templates_ship_as_package_data():
    """A non-editable install has every template: pyproject's package-data names them all."""
    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["upright"]
    folder = root / "src" / "upright" / "report" / "templates"
    names = [p.relative_to(folder.parents[1]).as_posix() for p in folder.rglob("*") if p.is_file()]
    assert {"report/templates/base.html", "report/templates/macros.html"} <= set(names)
    for name in names:
        assert any(fnmatch.fnmatch(name, pat) for pat in patterns), name
        environment().get_template(name.removeprefix("report/templates/"))  # parses
