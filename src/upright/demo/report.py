"""The demo's one self-contained HTML page: the story told with pictures.

Sections: the two numbers; how the photos were made; as stored vs as seen; the audit's
finding; the two trainings; both confusion matrices and rotation checks; what to do.
Every picture is read through imaging.py and inlined as a data URL (no network, no files).
The page is the template report/templates/demo.html; this module prepares its data.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import UnreadableImage, UprightError
from ..report.html import figure_data_url, image_data_url
from ..report.templating import render as render_template
from ..imaging import open_image


def _pair(path: str, label: str) -> dict:
    """As stored | as seen, for macros.thumb_pair."""
    view = {"label": label, "name": os.path.basename(path), "error": None, "stored": None, "seen": None, "tag": None}
    try:
        stored = open_image(path, size=150, orient=False)
        upright = open_image(path, size=150).image
    except UnreadableImage as exc:
        view["error"] = exc.reason
        return view
    view.update(stored=image_data_url(stored.image, 120), seen=image_data_url(upright, 120),
                tag=stored.orientation.tag)
    return view


def orientation_finding(findings: list[dict]) -> dict | None:
    """The audit finding that says the EXIF orientation predicts the class (or folds it in)."""
    for f in findings:
        if f.get("kind") == "label_leak" and (
                f.get("attribute") == "exif_orientation" or "exif_orientation" in (f.get("also") or [])):
            return f
    return None


def _finding(f: dict) -> dict:
    return {"severity": f["severity"], "title": f["kind"] + (f" · {f['attribute']}" if f.get("attribute") else ""),
            "message": f["message"], "attribute": f.get("attribute") or "",
            "table": f.get("table") if f.get("kind") == "label_leak" else None}


def _model(key: str, r: dict, labels: list[str]) -> dict:
    from ..report.plots import confusion_figure, rotation_figure

    title = "Naive: pixels as stored, tag ignored" if key == "naive" else "upright: photos read upright"
    return {"css": "bad" if key == "naive" else "good", "title": title, "how": r["how"],
            "accuracy": r["accuracy"], "val_accuracy": r["val_accuracy"],
            "recalls": [{"label": lab, "recall": r["per_class"][lab]["recall"]} for lab in labels],
            "confusion_plot": figure_data_url(confusion_figure(r["confusion"], labels,
                                                               title=f"{title.split(':')[0]}: confusion")),
            "rotation_plot": figure_data_url(rotation_figure(r["rotations"],
                                                             title="Accuracy with the test photos rotated"))}


def rotation_drop(rotations: dict) -> float:
    """How far accuracy moves from the upright photos' when they are turned (the rotation check)."""
    return max(abs(float(v) - float(rotations["0"])) for v in rotations.values())


def render(result: dict, audit: dict, data) -> str:
    from ..audit.report import orientation_plot

    labels = list(data.labels)
    naive, upright = result["naive"], result["upright"]
    sideways = [lab for lab in labels if any(p["orientation"] == 6 for p in data.phones[lab])]
    main = orientation_finding(audit["findings"])
    table = (audit.get("attributes") or {}).get("exif_orientation")
    plot = None
    if table:
        try:
            plot = orientation_plot(table)
        except Exception:  # a plot is a nicety; the report must still be written
            plot = None
    return render_template(
        "demo.html", title="upright demo: the sideways shortcut",
        subtitle=f"{sum(data.n_train.values())} training photos, {sum(data.n_test.values())} test photos, "
                 "made offline from photos bundled with scikit-image and matplotlib",
        naive_accuracy=naive["accuracy"], upright_accuracy=upright["accuracy"],
        gap=upright["accuracy"] - naive["accuracy"], backbone=result.get("backbone", "?"),
        backbone_name=result.get("backbone", ""),
        story=list(data.story()), train_dir=str(data.train_dir), test_dir=str(data.test_dir),
        sideways=", ".join(sideways), sideways_first=sideways[0],
        thumbs=[_pair(p, lab) for lab in labels for p in data.examples.get(lab, [])[:4]],
        n_audited=audit["n_images"], finding=_finding(main) if main is not None else None,
        orientation_plot=plot, other_findings=[_finding(f) for f in audit["findings"] if f is not main],
        models=[_model("naive", naive, labels), _model("upright", upright, labels)],
        naive_val_accuracy=naive["val_accuracy"], naive_sideways_recall=naive["per_class"][sideways[0]]["recall"],
        upright_drop=rotation_drop(upright["rotations"]), naive_drop=rotation_drop(naive["rotations"]),
    )


def write_report(result: dict, audit: dict, data, path) -> Path:
    path = Path(path)
    try:
        atomic_write_text(path, render(result, audit, data))
    except OSError as exc:
        raise UprightError(f"cannot write the report {path}: {exc.strerror or exc}") from exc
    return path
