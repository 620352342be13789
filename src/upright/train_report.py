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
    from .evaluate import _metrics

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


def _num(value, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


EXTRA_CSS = """
.mistakes .thumb{max-width:300px}.mistakes .thumb img{max-width:280px;max-height:280px}
.scores{margin:4px 0 0;padding:0;list-style:none}.scores li{display:flex;gap:6px;align-items:center}
.scores .bar{height:8px;background:#1e88e5;border-radius:3px}.scores .bar.true{background:#2e7d32}
.scores .bar.wrong{background:#c62828}.facts td:first-child{color:#5b6475}
"""


def mistake_cards(mistakes: list[dict], limit: int = MAX_MISTAKES_SHOWN) -> str:
    """Thumbnails (upright, 256 px) with the label and the top-3 scores as bars (shared with eval's report)."""
    import os

    from .report.html import esc

    cells = []
    for mk in mistakes[:limit]:
        src = _thumb(mk["path"])
        img = f'<img alt="{esc(os.path.basename(mk["path"]))}" src="{src}">' if src else "<em>cannot be shown</em>"
        scores = "".join(
            f'<li><span style="min-width:90px">{esc(t["label"])}</span>'
            f'<span class="bar {"true" if t["label"] == mk["label"] else "wrong" if i == 0 else ""}" '
            f'style="width:{max(2, round(120 * t["score"]))}px"></span>{t["score"]:.2f}</li>'
            for i, t in enumerate(mk["top"]))
        cells.append(f'<div class="thumb">{img}<div><b>{esc(mk["label"])}</b> &rarr; {esc(mk["predicted"])}</div>'
                     f'<ul class="scores">{scores}</ul><div class="sub">{esc(os.path.basename(mk["path"]))}</div></div>')
    more = (f'<p class="sub">and {len(mistakes) - limit} more.</p>' if len(mistakes) > limit else "")
    return f'<div class="grid mistakes">{"".join(cells)}</div>{more}' if cells else "<p>None.</p>"


def write_train_report(path, *, meta: dict, result: dict, heldout: list[dict], warnings: list[dict]) -> None:
    """A self-contained HTML page about a freshly trained model (see the module docstring)."""
    from .atomic import atomic_write_text
    from .report.html import esc, figure_data_url, page
    from .report.plots import confusion_figure, learning_curve_figure

    labels = meta["labels"]
    s = summarise(heldout, labels)
    train = meta["training"]
    body = [f"<style>{EXTRA_CSS}</style>"]
    body.append(
        f'<div class="card"><span class="big">{result["val_accuracy"]:.3f}</span> accuracy on {s["n"]} held-out '
        f'photos ({esc(result["val_method"])}: each scored by a head that was not fitted on it)'
        + ("" if s["macro_f1"] is None else ", macro-F1 " + format(s["macro_f1"], ".3f")) + "."
        + (' <span class="sub">After fine-tuning; the figures below are from the head before it.</span>'
           if meta.get("fine_tuned") else "") + "</div>")
    facts = [
        ("data", f"<code>{esc(result.get('data', ''))}</code>" if result.get("data") else ""),
        ("photos", f"{result['n_train']} train + {result['n_val']} val; the final head was fitted on "
                   f"{result['n_fitted']} (their fingerprints are in the model, so eval can tell)"),
        ("test photos", f"<code>{esc(result['test_not_read'])}</code> was not read: score it with "
                        f"<code>upright eval</code>" if result.get("test_not_read") else
                        "none (keep new photos in DATA/test/ for an honest <code>upright eval</code>)"),
        ("backbone", esc(meta["backbone"]) + (" (fine-tuned)" if meta.get("fine_tuned") else "")),
        ("photos read", esc(meta["orientation_policy"])),
        ("augment / test views", f"{esc(meta['augment'])} / {esc('+'.join(meta['test_views']))}"),
        ("head", f"softmax regression, l2 {meta['head']['l2']:g} chosen by {esc(meta['head']['selected_by'])}"),
        ("time", f"{train['seconds']:.1f} s"),
    ]
    body.append('<table class="facts">' + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in facts if v)
                + "</table>")
    body.append("<h2>Audit of the training photos</h2>")
    if warnings:
        for w in warnings:
            body.append(f'<div class="card {esc(w["severity"])}"><span class="badge {esc(w["severity"])}">'
                        f'{esc(w["severity"])}</span><b>{esc(w["kind"])}</b>'
                        f'{" (" + esc(w["attribute"]) + ")" if w.get("attribute") else ""}: {esc(w["message"])}'
                        f'<div class="sub">in <code>{esc(w["folder"])}</code>; run <code>upright audit</code> '
                        f"for the whole audit</div></div>")
    else:
        body.append('<p>The header checks found nothing to warn about (run <code>upright audit</code> for the '
                    "content checks too).</p>")
    history = (meta.get("fine_tune") or {}).get("history")
    if history:
        body.append("<h2>Learning curves</h2>"
                    f'<img class="plot" alt="loss and val accuracy per epoch" '
                    f'src="{figure_data_url(learning_curve_figure(history))}">')
        best = meta["fine_tune"].get("best_epoch")
        if best is not None:
            body.append(f'<p class="sub">The model keeps epoch {esc(best)}.</p>')
    rows = "".join(f"<tr><td>{esc(lab)}</td><td>{_num(v['precision'])}</td><td>{_num(v['recall'])}</td>"
                   f"<td>{_num(v['f1'])}</td><td>{v['n']}</td><td>{train['classes'].get(lab, 0)}</td></tr>"
                   for lab, v in s["per_class"].items())
    body.append("<h2>Per class (held-out photos)</h2><table><tr><th>class</th><th>precision</th><th>recall</th>"
                f"<th>F1</th><th>held out</th><th>photos in all</th></tr>{rows}</table>"
                '<p class="sub">n/a: no photo of the class was held out, or none was predicted as it.</p>')
    if s["confusion"]:
        body.append("<h2>Confusion matrix (held-out photos)</h2>"
                    f'<img class="plot" alt="confusion matrix" '
                    f'src="{figure_data_url(confusion_figure(s["confusion"], labels))}">')
    body.append(f"<h2>Worst mistakes ({len(s['mistakes'])})</h2>"
                '<p class="sub">Held-out photos the model got wrong, surest first; bars: its top-3 scores '
                "(green: the true label).</p>" + mistake_cards(s["mistakes"]))
    atomic_write_text(path, page(f"upright train: {result['model']}", body,
                                 "thumbnails are shown upright, as upright reads them"))
