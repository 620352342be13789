"""MODEL/report.html, written by every `upright train` (unless --no-report): how good the model
is on photos it was not fitted on, where it goes wrong, and what the audit says about the
training photos.

Figures come from the head selection's held-out predictions (val/, the hash split, or
cross-validation folds: each photo predicted by a head not fitted on it). The audit's
warnings come from what the run already knows (`audit_warnings`): the scan's records and
hashes, the header facts recorded in the cache, the embedding pass's decode failures; the
thumbnails of the worst mistakes are recorded in the cache too. So a warm re-train's report
reads no header, hashes no file and decodes no picture; a cold one reads each header once
(recorded for the next run) and decodes at most MAX_MISTAKES_SHOWN thumbnails.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .report.paths import below, shown_root, unrooted

MAX_MISTAKES_SHOWN = 24
THUMB_SIDE = 256


def heldout_rows(heldout, records, y, labels: list[str]) -> list[dict]:
    """Per held-out photo (head.HeldOut): path, label, predicted, top labels with scores, score
    of the true label, content hash."""
    rows = []
    for j, i in enumerate(heldout.index):
        top = [{"label": labels[int(c)], "score": float(p)} for c, p in zip(heldout.top[j], heldout.top_p[j])]
        rows.append({"path": str(records[int(i)].path), "label": labels[int(y[int(i)])],
                     "predicted": top[0]["label"], "top": top, "p_true": float(heldout.p_true[j]),
                     "sha256": records[int(i)].sha256})
    return rows


def summarise(heldout: list[dict], labels: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1, confusion matrix and the worst mistakes."""
    from .metrics import classification_metrics as _metrics

    idx = {lab: i for i, lab in enumerate(labels)}
    y = np.array([idx[r["label"]] for r in heldout], int)
    pred = np.array([idx[r["predicted"]] for r in heldout], int)
    metrics = _metrics(y, pred, labels) if len(heldout) else {"accuracy": 0.0, "per_class": {}, "confusion": [],
                                                               "macro_f1": None}
    mistakes = surest_first([r for r in heldout if r["predicted"] != r["label"]])
    return {**metrics, "n": len(heldout), "mistakes": mistakes}


def card_figures(summary: dict, warnings: list[dict] | None, root) -> dict:
    """What a model card shows beside val_accuracy without opening the report (model.json
    "training"): per class precision, recall, F1 and n on the held-out photos, how many of them
    were predicted wrong, and the audit's warnings in a line each (not when the run skipped the
    report, which audits), every path below DATA (root). summary: summarise()'s."""
    from .audit.headline import headline

    figures: dict = {"per_class": summary["per_class"], "n_mistakes": len(summary["mistakes"])}
    if warnings is not None:
        figures["audit_warnings"] = [
            {"severity": w["severity"], "kind": w["kind"], "attribute": w.get("attribute"), "class": w.get("class"),
             "headline": unrooted(headline(w), root), "folder": unrooted(str(w.get("folder", root)), root)}
            for w in warnings]
    return figures


def surest_first(mistakes: list[dict]) -> list[dict]:
    """Wrong predictions, the one the model was surest of first: by the wrong label's score
    (the top score), highest first; ties by path, so the order is stable."""
    return sorted(mistakes, key=lambda r: (-_wrong_score(r), str(r["path"])))


def _wrong_score(r: dict) -> float:
    top = r.get("top") or []
    return float(top[0]["score"]) if top else float(r.get("score") or 0.0)


def _thumb(path: str, side: int = THUMB_SIDE) -> str | None:
    from .imaging import open_upright
    from .report.html import image_data_url

    try:
        return image_data_url(open_upright(path, size=side), max_side=side)
    except Exception:  # noqa: BLE001 (a photo that cannot be shown is named, not fatal)
        return None


def mistake_views(mistakes: list[dict], root=None, known=None) -> list[dict]:
    """What macros.mistake_card shows: the upright picture (256 px), the top scores and the
    photo's path below root (DATA; IMG_0055.jpg alone is in every class), never an absolute one.
    known (known_files.KnownFiles): thumbnails recorded by content hash are reused."""
    if known is not None and all(mk.get("sha256") for mk in mistakes):
        srcs = known.thumbnails([mk["path"] for mk in mistakes], [mk["sha256"] for mk in mistakes], THUMB_SIDE,
                                _thumb)
    else:
        srcs = [_thumb(mk["path"]) for mk in mistakes]
    return [{"src": src, "name": below(mk["path"], root), "path": below(mk["path"], root),
             "label": mk["label"], "predicted": mk["predicted"],
             "top": mk.get("top") or [{"label": mk["predicted"], "score": mk["score"]}]}
            for mk, src in zip(mistakes, srcs)]


def folder_dataset(ds, folder):
    """What scan(folder) gives for one folder the run read (DATA, or DATA/train, DATA/val),
    from the records it already has: a plain folder-per-class tree, hash-split as the audit
    splits it. No file is listed, read or hashed again (only the class folders are listed)."""
    from dataclasses import replace

    from .pipeline.scan import DEFAULT_VAL_FRACTION, Dataset, class_folders, hash_split

    top = os.fspath(folder).rstrip(os.sep) + os.sep
    records = [replace(r, split=hash_split(r.sha256, DEFAULT_VAL_FRACTION)) for r in ds.records
               if os.fspath(r.path).startswith(top)]
    labels = [p.name for p in class_folders(Path(folder))]
    skipped = [(p, why) for p, why in ds.skipped if p.startswith(top)]
    return Dataset(Path(folder), records, labels, skipped)


def audit_warnings(ds, unreadable: list[dict], known) -> list[dict]:
    """Warnings and errors of the header audit on the photos a model is fitted on, one audit per
    folder the run read, from what the run knows (see the module docstring): the files that
    did not decode are the embedding pass's `unreadable` [{"path", "reason"}]."""
    from .audit.run import audit_dataset, plan

    failures = {u["path"]: u["reason"] for u in unreadable}
    found = []
    for folder in ds.read_folders:
        result = audit_dataset(folder_dataset(ds, folder), plan(content=False), known,
                               decoded=(failures, "this train's embedding pass"))
        found += [{**f.to_dict(), "folder": str(folder)} for f in result.findings
                  if f.severity in ("warning", "error")]
    return found


def write_train_report(path, *, meta: dict, result: dict, summary: dict, warnings: list[dict],
                       known=None) -> None:
    """A self-contained HTML page about a freshly trained model (see the module docstring).
    summary: summarise() of the held-out rows; known (known_files.KnownFiles): where the
    mistakes' thumbnails are recorded."""
    from .atomic import atomic_write_text
    from .report.html import figure_data_url
    from .report.plots import confusion_figure, learning_curve_figure
    from .report.templating import render
    from .views import describe as describe_views

    labels, s = meta["labels"], summary
    root = result.get("data")
    fine_tune = meta.get("fine_tune") or {}
    history = fine_tune.get("history") or []
    html = render(
        "train.html", title=f"upright train: {shown_root(result['model'])}",
        subtitle="thumbnails are shown upright" + ("" if meta["orientation_policy"] == "upright" else
                                                   "; this model read the pixels as stored (tag ignored)"),
        result=result, meta=meta, held_out=s["n"], macro_f1=s["macro_f1"], data=shown_root(root),
        test_not_read=unrooted(result["test_not_read"], root) if result.get("test_not_read") else None,
        test_views_text=describe_views(meta.get("test_views", ["id"])),
        per_class=[{"label": lab, **v, "total": meta["training"]["classes"].get(lab, 0)}
                   for lab, v in s["per_class"].items()],
        confusion_plot=figure_data_url(confusion_figure(s["confusion"], labels)) if s["confusion"] else "",
        learning_plot=figure_data_url(learning_curve_figure(history)) if history else "",
        best_epoch=fine_tune.get("best_epoch"),
        warnings=[{**w, "message": unrooted(w["message"], root), "folder": unrooted(w["folder"], root)}
                  for w in warnings],
        n_mistakes=len(s["mistakes"]), mistakes=mistake_views(s["mistakes"][:MAX_MISTAKES_SHOWN], root, known))
    atomic_write_text(path, html)
