"""MODEL/report.html, written by every `upright train`: how good the model is on photos it was
not fitted on, where it goes wrong, and what the audit says about the training photos.

Figures come from the head selection's held-out predictions (val/, the hash split, or
cross-validation folds: each photo predicted by a head not fitted on it).
"""

from __future__ import annotations

import numpy as np

MAX_MISTAKES_SHOWN = 24


def heldout_rows(heldout: dict, records, y, labels: list[str]) -> list[dict]:
    """Per held-out photo: path, label, predicted, top labels with scores, score of the true label."""
    rows = []
    for j, i in enumerate(heldout["index"]):
        top = [{"label": labels[int(c)], "score": float(p)} for c, p in zip(heldout["top"][j], heldout["top_p"][j])]
        rows.append({"path": str(records[int(i)].path), "label": labels[int(y[int(i)])],
                     "predicted": top[0]["label"], "top": top, "p_true": float(heldout["p_true"][j])})
    return rows


def summarise(heldout: list[dict], labels: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1, confusion matrix and the worst mistakes."""
    from .metrics import classification_metrics as _metrics

    idx = {lab: i for i, lab in enumerate(labels)}
    y = np.array([idx[r["label"]] for r in heldout], int)
    pred = np.array([idx[r["predicted"]] for r in heldout], int)
    metrics = _metrics(y, pred, labels) if len(heldout) else {"accuracy": 0.0, "per_class": {}, "confusion": [],
                                                               "macro_f1": None}
    # worst first: the model was surest of a wrong label (lowest score on the true label)
    mistakes = sorted((r for r in heldout if r["predicted"] != r["label"]), key=lambda r: r["p_true"])
    return {**metrics, "n": len(heldout), "mistakes": mistakes}


def _thumb(path: str, side: int = 256) -> str | None:
    from .imaging import open_upright
    from .report.html import image_data_url

    try:
        return image_data_url(open_upright(path, size=side), max_side=side)
    except Exception:  # noqa: BLE001 (a photo that cannot be shown is named, not fatal)
        return None


def mistake_views(mistakes: list[dict]) -> list[dict]:
    """What macros.mistake_card shows: the upright picture (256 px) and the top scores."""
    import os

    return [{"src": _thumb(mk["path"]), "name": os.path.basename(mk["path"]), "path": mk["path"],
             "label": mk["label"], "predicted": mk["predicted"],
             "top": mk.get("top") or [{"label": mk["predicted"], "score": mk["score"]}]} for mk in mistakes]


def write_train_report(path, *, meta: dict, result: dict, heldout: list[dict], warnings: list[dict]) -> None:
    """A self-contained HTML page about a freshly trained model (see the module docstring)."""
    from .atomic import atomic_write_text
    from .report.html import figure_data_url
    from .report.plots import confusion_figure, learning_curve_figure
    from .report.templating import render
    from .views import describe as describe_views

    labels = meta["labels"]
    s = summarise(heldout, labels)
    fine_tune = meta.get("fine_tune") or {}
    history = fine_tune.get("history") or []
    html = render(
        "train.html", title=f"upright train: {result['model']}",
        subtitle="thumbnails are shown upright" + ("" if meta["orientation_policy"] == "upright" else
                                                   "; this model read the pixels as stored (tag ignored)"),
        result=result, meta=meta, held_out=s["n"], macro_f1=s["macro_f1"],
        test_views_text=describe_views(meta.get("test_views", ["id"])),
        per_class=[{"label": lab, **v, "total": meta["training"]["classes"].get(lab, 0)}
                   for lab, v in s["per_class"].items()],
        confusion_plot=figure_data_url(confusion_figure(s["confusion"], labels)) if s["confusion"] else "",
        learning_plot=figure_data_url(learning_curve_figure(history)) if history else "",
        best_epoch=fine_tune.get("best_epoch"), warnings=warnings,
        n_mistakes=len(s["mistakes"]), mistakes=mistake_views(s["mistakes"][:MAX_MISTAKES_SHOWN]))
    atomic_write_text(path, html)
