"""`upright eval MODEL DATA`: accuracy, per-class figures, confusion matrix, rotation check.

The rotation check embeds every test photo rotated 0/90/180/270 degrees (variants of the
same decode, cached) and reports the accuracy at each: a model that learned "which way is
up" as a feature loses accuracy on the rotated copies; one trained with --augment d4 is flat.
"""

from __future__ import annotations

import json
import os

import numpy as np

from .dataset import scan
from .errors import UprightError
from .preprocess import compose

ROTATIONS = {"0": "id", "90": "r90", "180": "r180", "270": "r270"}
MAX_MISTAKES_SHOWN = 48


def _metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    n_cls = len(labels)
    cm = np.zeros((n_cls, n_cls), int)
    np.add.at(cm, (y_true, y_pred), 1)
    per = {}
    for i, lab in enumerate(labels):
        tp, col, row = cm[i, i], cm[:, i].sum(), cm[i].sum()
        per[lab] = {"precision": round(float(tp / col), 6) if col else 0.0,
                    "recall": round(float(tp / row), 6) if row else 0.0, "n": int(row)}
    return {"accuracy": round(float((y_true == y_pred).mean()), 6) if len(y_true) else 0.0,
            "per_class": per, "confusion": cm.tolist()}


def evaluate(model, data, *, rotations: bool = True, cache_dir=None, progress: bool = True, report=None,
             workers: int | None = None) -> dict:
    """Evaluate a model (folder or Model) on DATA; returns the contracts' eval JSON (plus extra keys).

    DATA with train/ and val|test/ folders is evaluated on its held-out split; a plain
    folder-per-class tree is evaluated on every image.
    """
    from .model import Model, load_model

    m = model if isinstance(model, Model) else load_model(model, cache_dir=cache_dir)
    if cache_dir is not None:
        m.cache_dir = cache_dir
    ds = scan(data, 0.0)
    records = (ds.val if ds.explicit_split else ds.records)
    split = ("test" if not ds.split("val") else "val") if ds.explicit_split else "all"
    known = [r for r in records if r.label in m.labels]
    unknown = sorted({r.label for r in records if r.label not in m.labels})
    if not known:
        raise UprightError(f"{ds.root}: no images of the model's classes ({', '.join(m.labels)})"
                           + (f"; found classes {', '.join(unknown)}" if unknown else ""))
    views = list(m.views)
    rots = ROTATIONS if rotations else {"0": "id"}
    needed = list(dict.fromkeys(compose(rot, v) for rot in rots.values() for v in views))
    from .features import embed_paths

    emb = embed_paths([r.path for r in known], backbone=m.backbone, variants=needed, orient=m.orient,
                      cache_dir=m.cache_dir, progress=progress, workers=workers, hashes=[r.sha256 for r in known],
                      runner=m.runner, description="evaluating")
    ok = emb.ok
    if not ok.any():
        raise UprightError(f"{ds.root}: no readable images ({len(known)} files, all unreadable)")
    vidx = {v: i for i, v in enumerate(needed)}
    y = np.array([m.labels.index(r.label) for r in known])[ok]
    X = emb.vectors[ok]
    probs = {deg: m.proba_from_embeddings(X[:, [vidx[compose(rot, v)] for v in views]]) for deg, rot in rots.items()}
    pred = probs["0"].argmax(1)
    result = {**_metrics(y, pred, m.labels), "n": int(len(y)), "labels": list(m.labels)}
    result = {"accuracy": result["accuracy"], "n": result["n"], "per_class": result["per_class"],
              "confusion": result["confusion"], "labels": result["labels"],
              "rotations": {deg: round(float((p.argmax(1) == y).mean()), 6) for deg, p in probs.items()},
              "split": split, "model": str(m.folder), "data": str(ds.root),
              "orientation_policy": "upright" if m.orient else "stored",
              "unreadable": [{"path": str(known[i].path), "reason": why} for i, why in sorted(emb.errors.items())],
              "unknown_labels": unknown}
    ok_records = [r for r, good in zip(known, ok) if good]
    mistakes = [{"path": str(r.path), "label": r.label, "predicted": m.labels[int(p)],
                 "score": round(float(probs["0"][i, int(p)]), 4)}
                for i, (r, p) in enumerate(zip(ok_records, pred)) if m.labels[int(p)] != r.label]
    result["mistakes"] = mistakes
    if report is not None:
        write_report(result, report)
        result["report"] = str(report)
    return result


def write_report(result: dict, path) -> None:
    """A self-contained HTML page: summary, confusion matrix, rotation bars, mistakes shown upright."""
    from .atomic import atomic_write_text
    from .imaging import open_upright
    from .report.html import figure_data_url, image_data_url
    from .report.plots import confusion_figure, rotation_figure
    from .report.templating import render

    rot = result["rotations"]
    spread = max(rot.values()) - min(rot.values())
    verdict = ("accuracy barely changes with rotation: the model does not rely on which way is up"
               if spread < 0.05 else
               "accuracy drops on rotated photos: the model relies on the upright view (expected for "
               "a model trained without rotation augmentation; a problem only if your photos arrive sideways)")
    mistakes = result.get("mistakes", [])
    shown = []
    for mk in mistakes[:MAX_MISTAKES_SHOWN]:
        try:
            src = image_data_url(open_upright(mk["path"], size=160), max_side=160)
        except Exception:
            src = None
        shown.append({"src": src, "label": mk["label"], "predicted": mk["predicted"], "score": mk["score"],
                      "name": os.path.basename(mk["path"])})
    html = render(
        "eval.html", title="upright eval", subtitle="thumbnails are shown upright, as the model read them",
        accuracy=result["accuracy"], n=result["n"], split=result["split"], data=result["data"],
        model=result["model"], orientation_policy=result["orientation_policy"],
        per_class=[{"label": lab, **v} for lab, v in result["per_class"].items()],
        confusion_plot=figure_data_url(confusion_figure(result["confusion"], result["labels"])),
        rotation_plot=figure_data_url(rotation_figure(rot)), verdict=verdict,
        n_mistakes=len(mistakes), mistakes=shown, more=len(mistakes) - len(shown),
        unreadable=result.get("unreadable") or [])
    try:
        atomic_write_text(path, html)
    except OSError as exc:
        raise UprightError(f"cannot write the report {path}: {exc.strerror or exc}") from exc


def run_eval(model, data, *, json_out: bool = False, report=None, cache_dir=None) -> dict:
    result = evaluate(model, data, cache_dir=cache_dir, progress=not json_out, report=report)
    if json_out:
        out = {k: v for k, v in result.items() if k != "mistakes"}
        out["mistakes"] = result["mistakes"][:100]
        print(json.dumps(out))
        return result
    from rich.table import Table

    from .console import err, out

    for u in result["unreadable"]:
        err.print(f"[yellow]skipped unreadable[/] {u['path']}: {u['reason']}")
    if result["unknown_labels"]:
        err.print(f"[yellow]skipped classes the model does not know:[/] {', '.join(result['unknown_labels'])}")
    t = Table(title=f"upright eval: accuracy {result['accuracy']:.3f} on {result['n']} images ({result['split']})")
    t.add_column("class")
    t.add_column("precision", justify="right")
    t.add_column("recall", justify="right")
    t.add_column("n", justify="right")
    for lab, v in result["per_class"].items():
        t.add_row(lab, f"{v['precision']:.3f}", f"{v['recall']:.3f}", str(v["n"]))
    t.add_section()
    t.add_row("rotated 0/90/180/270", " / ".join(f"{a:.2f}" for a in result["rotations"].values()), "", "")
    out.print(t)
    if report is not None:
        err.print(f"report written to {report}")
    return result
