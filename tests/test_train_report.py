"""MODEL/report.html after every train: held-out figures, the worst mistakes with their top-3
scores, learning curves when fine-tuned, and the audit's warnings on the training photos."""

from __future__ import annotations

import json
import re

import pytest

import upright
from fixtures import class_picture, make_dataset, write_photo
from upright.train_report import summarise, write_train_report

HOSTILE = "<script>x"


def data_urls(html: str, kind: str) -> int:
    return len(re.findall(rf'src="data:image/{kind};base64,', html))


@pytest.fixture(scope="module")
def shortcut_model(tmp_path_factory):
    """The soda-can shortcut: every 'dog' photo stored sideways (EXIF 6), every 'cat' upright."""
    root = tmp_path_factory.mktemp("report")
    data = make_dataset(root / "data", n_per_class=12, classes=("cat", "dog"), orientation={"dog": 6})
    result = upright.train(data, root / "model", augment="none")
    return result, root / "model"


def test_every_train_writes_the_report(shortcut_model):
    result, model = shortcut_model
    assert result.report == str(model / "report.html") and result.to_dict()["report"] == result.report
    html = (model / "report.html").read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html.lower()
    assert f"{result.val_accuracy:.3f}</span> accuracy on" in html
    assert "Per class (held-out photos)" in html and 'alt="confusion matrix"' in html
    # the audit's header checks saw the shortcut in the training photos
    assert "label_leak (exif_orientation)" in html and ("badge warning" in html or "badge error" in html)
    assert str(model.parent) not in html  # DATA and MODEL by their folder names, photos below DATA
    assert "Learning curves" not in html  # not fine-tuned
    assert "Worst mistakes (" in html


def test_report_content_with_mistakes_history_and_hostile_names(tmp_path):
    photo = write_photo(tmp_path / HOSTILE.replace("/", "_") / "a.jpg", class_picture(0, 1, 320, 240))
    labels = [HOSTILE, "b", "c"]
    heldout = [  # two right, two wrong (one surer than the other), one photo gone
        {"path": str(photo), "label": HOSTILE, "predicted": HOSTILE, "p_true": 0.9,
         "top": [{"label": HOSTILE, "score": 0.9}, {"label": "b", "score": 0.06}, {"label": "c", "score": 0.04}]},
        {"path": str(photo), "label": "b", "predicted": "b", "p_true": 0.8,
         "top": [{"label": "b", "score": 0.8}, {"label": "c", "score": 0.15}, {"label": HOSTILE, "score": 0.05}]},
        {"path": str(photo), "label": "b", "predicted": "c", "p_true": 0.3,
         "top": [{"label": "c", "score": 0.6}, {"label": "b", "score": 0.3}, {"label": HOSTILE, "score": 0.1}]},
        {"path": str(photo), "label": "c", "predicted": HOSTILE, "p_true": 0.02,
         "top": [{"label": HOSTILE, "score": 0.97}, {"label": "b", "score": 0.01}, {"label": "c", "score": 0.02}]},
        {"path": str(tmp_path / "gone.jpg"), "label": "c", "predicted": "b", "p_true": 0.4,
         "top": [{"label": "b", "score": 0.5}, {"label": "c", "score": 0.4}, {"label": HOSTILE, "score": 0.1}]},
    ]
    meta = {"labels": labels, "backbone": "efficientnet-lite0", "orientation_policy": "upright", "augment": "flip",
            "test_views": ["id"], "fine_tuned": True, "head": {"l2": 0.01, "selected_by": "validation split"},
            "training": {"seconds": 12.5, "classes": {HOSTILE: 10, "b": 10, "c": 10}},
            "fine_tune": {"history": [{"epoch": e, "loss": 1.0 / e, "val_accuracy": 0.7 + 0.05 * e, "seconds": 3.0}
                                      for e in (1, 2, 3)], "best_epoch": 3}}
    result = {"model": HOSTILE, "data": HOSTILE, "val_accuracy": 0.4, "val_method": "validation split",
              "n_train": 25, "n_val": 5, "n_fitted": 30, "test_not_read": None}
    warnings = [{"kind": "label_leak", "severity": "warning", "attribute": "camera", "message": f"leak {HOSTILE}",
                 "folder": HOSTILE}]
    path = tmp_path / "report.html"
    write_train_report(path, meta=meta, result=result, summary=summarise(heldout, meta["labels"]), warnings=warnings)
    html = path.read_text()
    assert "<script" not in html.lower() and html.count("&lt;script&gt;x") >= 5
    assert "Learning curves" in html and "The model keeps epoch 3." in html
    assert data_urls(html, "png") == 2  # confusion matrix + learning curves
    assert "Worst mistakes (3)" in html and data_urls(html, "jpeg") == 2 and "<em>unreadable</em>" in html
    # surest mistake first: the one with 0.97 on a wrong label
    first = html.index("Worst mistakes")
    assert html.index("0.97", first) < html.index("0.60", first)
    assert html.count('class="bar true"') >= 3 and 'class="bar wrong"' in html
    assert "leak &lt;script&gt;x" in html and "n/a" not in html.split("Per class")[1].split("</table>")[0]


def test_worst_mistakes_surest_first_named_below_data(tmp_path):
    """'Surest first' means the highest score on a wrong label, not the lowest on the true one;
    the cards name each photo by its path below DATA (IMG_0001.jpg is in every class), and no
    absolute path of this machine is anywhere on the page."""
    from upright.train_report import surest_first

    data = tmp_path / "phone photos"
    photos = {lab: write_photo(data / "train" / lab / "IMG_0001.jpg", class_picture(i, 1, 64, 48))
              for i, lab in enumerate(("a", "b", "c", "d"))}

    def wrong(label, predicted, top):
        scores = dict(top)
        return {"path": str(photos[label]), "label": label, "predicted": predicted, "p_true": scores.get(label, 0.0),
                "top": [{"label": k, "score": v} for k, v in top]}

    heldout = [wrong("a", "b", [("b", 0.55), ("c", 0.4), ("d", 0.03)]),  # true label at 0.02: lowest p_true
               wrong("b", "a", [("a", 0.9), ("b", 0.1)]),  # surest of a wrong label
               wrong("c", "d", [("d", 0.7), ("c", 0.3)]),
               {**wrong("d", "d", [("d", 0.99)])}]  # right: not a mistake
    assert [m["label"] for m in surest_first([r for r in heldout if r["label"] != r["predicted"]])] == ["b", "c", "a"]
    meta = {"labels": ["a", "b", "c", "d"], "backbone": "efficientnet-lite0", "orientation_policy": "upright",
            "augment": "flip", "test_views": ["id"], "fine_tuned": False, "head": {"l2": 0.01, "selected_by": "cv"},
            "training": {"seconds": 1.0, "classes": {k: 1 for k in "abcd"}}}
    result = {"model": str(tmp_path / "models" / "flowers"), "data": str(data), "val_accuracy": 0.25,
              "val_method": "cv", "n_train": 4, "n_val": 0, "n_fitted": 4, "test_not_read": str(data / "test")}
    warnings = [{"kind": "duplicate", "severity": "warning", "attribute": None, "folder": str(data / "train"),
                 "message": f"1 group of identical files (2 files): {photos['a']} and {photos['b']}."}]
    path = tmp_path / "report.html"
    write_train_report(path, meta=meta, result=result, summary=summarise(heldout, meta["labels"]), warnings=warnings)
    html = path.read_text()
    cards = re.findall(r'<div class="sub" title="([^"]*)">([^<]*)</div>', html)
    assert cards == [(f"train/{k}/IMG_0001.jpg",) * 2 for k in ("b", "c", "a")], cards  # the order the words say
    assert str(tmp_path) not in html
    assert "<code>phone photos</code>" in html and "<code>phone photos/test</code> was not read" in html
    assert "phone photos/train/a/IMG_0001.jpg and phone photos/train/b/IMG_0001.jpg" in html
    assert "upright train: flowers" in html


def test_report_never_costs_the_model(tmp_path, monkeypatch):
    import upright.train_report as tr

    data = make_dataset(tmp_path / "d", n_per_class=4, classes=("a", "b"))
    monkeypatch.setattr(tr, "write_train_report", lambda *a, **k: 1 / 0)
    r = upright.train(data, tmp_path / "m", augment="none")
    assert r.report is None and (tmp_path / "m" / "model.json").is_file()
    assert not (tmp_path / "m" / "report.html").exists()


@pytest.mark.browser
def test_report_renders_in_a_browser(shortcut_model, browser):
    """Every picture on the page decodes in a real browser (Debian chromium)."""
    _, model = shortcut_model
    page = browser.new_page()
    page.goto((model / "report.html").as_uri())
    sizes = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
    title = page.title()
    page.close()
    assert sizes and all(done and width > 0 for done, width in sizes), sizes
    assert title.startswith("upright train")
    meta = json.loads((model / "model.json").read_text())
    assert meta["fitted_on"]["photos"] == 24
