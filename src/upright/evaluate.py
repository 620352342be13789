"""`upright eval MODEL DATA`: accuracy, per-class figures, confusion matrix, rotation check,
and whether the scored photos are new to the model.

The rotation check embeds every test photo rotated 0/90/180/270 degrees (variants of the
same decode, cached) and reports the accuracy at each: a model that learned "which way is
up" as a feature loses accuracy on the rotated copies; one trained with --augment d4 is flat.
`--rotation-check` (ROTATION_CHECKS) says which of the model's test views each turn is scored
on: "centre" (the default) the views at the centre of the picture, which are all of a fast
model's, and the centre crop and its mirror of an accurate model's 10 crops (16 views a photo
instead of 40); "full" every test view; "none" skips the turns.

Honest numbers: `seen_in_training` counts the scored photos whose content the model was fitted
on (provenance.py fingerprints); `near_copies_of_training` the others whose embedding is within
the audit's near-duplicate threshold of a fitted photo (a resized or re-encoded copy has other
bytes but scores like a training photo), from the near-copy record in the model folder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import provenance
from .audit.duplicates import NEAR_THRESHOLD
from .pipeline.scan import scan
from .errors import UprightError
from .metrics import classification_metrics
from .orientation import ROTATIONS
from .results import EvalResult
from .views import compose
from .views import parse as parse_view
from .words import count, verb

#: the rotation check's turns, keyed as in the eval JSON ("0", "90", "180", "270") -> variant
ROTATION_CHECK = {str(deg): variant for deg, variant in ROTATIONS.items()}
#: --rotation-check: which test views each turn is scored on (module docstring)
ROTATION_CHECKS = ("centre", "full", "none")
DEFAULT_ROTATION_CHECK = "centre"
MAX_MISTAKES_SHOWN = 48


TOP_K = (1, 2, 3, 5)  # reported where k < the number of labels
MAX_MISTAKES_JSON = 100
CSV_COLUMNS = ("path", "label", "predicted", "score", "seen_in_training", "correct", "top", "error",
               "near_copy_of_training")


def held_out_records(ds):
    """What eval scores: test/ when DATA has one, else val/, else every photo (-> records, split name)."""
    if ds.explicit_split:
        for split in ("test", "val", "train"):
            if ds.split(split):
                return ds.split(split), split
    return ds.records, "all"


def scored_records(data, labels: list[str]):
    """DATA's held-out records of the model's classes -> (dataset, records, unknown labels, split)."""
    ds = scan(data, 0.0)
    records, split = held_out_records(ds)
    known = [r for r in records if r.label in labels]
    unknown = sorted({r.label for r in records if r.label not in labels})
    if not known:
        raise UprightError(f"{ds.root}: no images of the model's classes ({', '.join(labels[:20])})"
                           + (f"; found classes {', '.join(unknown)}" if unknown else ""))
    return ds, known, unknown, split


def rotation_views(views, check: str) -> list[str]:
    """The test views each turn of the rotation check is scored on (`check`: ROTATION_CHECKS)."""
    if check not in ROTATION_CHECKS:
        raise UprightError(f"unknown rotation check '{check}' ({', '.join(ROTATION_CHECKS)})")
    if check == "none":
        return []
    centre = [v for v in views if parse_view(v)[1] == "centre"]
    return list(views) if check == "full" or not centre else centre


def evaluate(model, data, *, rotation_check: str = DEFAULT_ROTATION_CHECK, rotations: bool = True, cache_dir=None,
             progress: bool = True, report=None, csv=None, workers: int | None = None) -> EvalResult:
    """Evaluate a model (folder or Model) on DATA -> EvalResult (to_dict() is the eval JSON).

    DATA with a test/ folder is scored on test/ only (else val/, else everything); a plain
    folder-per-class tree on every photo. `seen_in_training` counts the scored photos the
    model was fitted on (by content), so scoring training photos never passes for a test;
    `near_copies_of_training` the others that are near copies of a fitted photo.
    `rotation_check`: "centre" (default), "full" or "none" (ROTATION_CHECKS); `rotations=False`
    is "none" (the keyword of earlier versions).
    """
    from .model import Model, load_model

    m = model if isinstance(model, Model) else load_model(model, cache_dir=cache_dir)
    ds, known, unknown, split = scored_records(data, m.labels)
    views = list(m.views)
    check = rotation_check if rotations else "none"
    turned = rotation_views(views, check)
    rots = ROTATION_CHECK if turned else {}
    needed = list(dict.fromkeys(views + [compose(rot, v) for rot in rots.values() for v in turned]))
    emb = m.embed_paths([r.path for r in known], needed, progress, workers, "evaluating",
                        hashes=[r.sha256 for r in known], cache_dir=cache_dir)
    ok = emb.ok
    if not ok.any():
        raise UprightError(f"{ds.root}: no readable images ({count(len(known), 'file')}, all unreadable)")
    vidx = {v: i for i, v in enumerate(needed)}
    X = emb.vectors[ok]
    probs = {"0": m.proba_from_embeddings(X[:, [vidx[v] for v in views]])}
    turns = {deg: m.proba_from_embeddings(X[:, [vidx[compose(rot, v)] for v in turned]]) for deg, rot in rots.items()}
    ok_records = [r for r, good in zip(known, ok) if good]
    overlap = training_overlap(m, ok_records, cache_dir=m.cache_dir if cache_dir is None else cache_dir,
                               progress=progress, workers=workers, run=(X, needed))
    result = score(known, ok, emb.errors, probs, m.labels, overlap.seen, split=split, model=str(m.folder),
                   data=str(ds.root), orientation_policy="upright" if m.orient else "stored", unknown=unknown,
                   turned=turns or None, near=overlap.near)
    result.near_copies_note = overlap.note
    # what ran: "centre" on a model whose test views all sit at the centre is the full check
    result.rotation_check, result.rotation_views = ("full" if turned == views else check), turned
    return finish(result, csv, report)


@dataclass
class Overlap:
    """What the scored (readable) photos share with the photos a model was fitted on."""

    seen: np.ndarray | None  # bool: the content was fitted; None: the model keeps no fingerprints
    near: np.ndarray | None  # bool: not fitted itself, but a near copy of a fitted photo; None: unknown
    note: str  # how near copies were counted, or why they could not be


def training_overlap(m, records, *, cache_dir=None, progress: bool = False, workers: int | None = None,
                     run: tuple[np.ndarray, list[str]] | None = None) -> Overlap:
    """Fingerprint matches and near copies (the audit's NEAR_THRESHOLD on the record's embedding,
    provenance.py) of `records` against the photos model `m` was fitted on. `run`: the caller's
    embeddings of `records` by `m` ([n, V, D], view names), reused when they are the record's."""
    from . import backbones, modelfile

    seen = provenance.seen(m.fitted, [r.sha256 for r in records])
    try:
        rows = modelfile.read_fitted_embeddings(m.folder, m.info)
    except UprightError as exc:
        return Overlap(seen, None, f"near copies not counted: {exc}")
    rec = m.info.fitted_on.embeddings
    if backbones.weights_sha256(rec.backbone) != rec.weights_sha256:
        return Overlap(seen, None, f"near copies not counted: the installed {rec.backbone} weights are not those "
                                   "the model's record of its training photos was made with")
    near = provenance.nearest(rows, _record_view(m, rec, records, run, cache_dir, progress, workers)) >= NEAR_THRESHOLD
    if seen is not None:
        near &= ~seen
    return Overlap(seen, near, f"near copy: embedding cosine >= {NEAR_THRESHOLD} with a training photo "
                               f"({rec.backbone}, centre crop, upright: the audit's near-duplicate check)")


def _record_view(m, rec, records, run, cache_dir, progress: bool, workers: int | None) -> np.ndarray:
    """[n, D]: the view of `records` the near-copy record holds (its backbone's stock weights, read
    upright). The caller's own embeddings when `m` made them that way (its backbone, not fine-tuned,
    upright) and they include the view (train.py's _default_views is the twin); else one more pass
    through the cache."""
    from .pipeline.embed import embed_paths

    if (run is not None and rec.view in run[1] and m.backbone == rec.backbone and m.backbone_state is None
            and m.orient):
        return run[0][:, run[1].index(rec.view)]
    emb = embed_paths([r.path for r in records], backbone=rec.backbone, variants=(rec.view,), orient=True,
                      cache_dir=cache_dir, progress=progress, workers=workers, hashes=[r.sha256 for r in records],
                      description="near-copy check")
    return emb.vectors[:, 0]


def score(known, ok, errors: dict, probs: dict, labels: list[str], seen, *, split: str, model: str, data: str,
          orientation_policy: str, unknown: list[str], model_format: str = "upright", turned: dict | None = None,
          near=None) -> EvalResult:
    """The eval result from per-rotation probabilities of the readable photos (any model kind).

    known: the scored records; ok: bool mask over them; errors: {index in known: reason};
    probs: {"0": [n_ok, C], "90": ...}, "0" the model's answer; turned: the rotation check's
    probabilities when they are not `probs` (other views); seen, near: bool per readable photo,
    or None (unknown).
    """
    y = np.array([labels.index(r.label) for r in known])[ok]
    p0 = probs["0"]
    pred = p0.argmax(1)
    order = np.argsort(-p0, axis=1, kind="stable")
    metrics = classification_metrics(y, pred, labels)
    top_k = {str(k): round(float((order[:, :k] == y[:, None]).any(1).mean()), 6)
             for k in TOP_K if k == 1 or k < len(labels)}
    photos, j = [], 0
    for i, r in enumerate(known):
        if not ok[i]:
            photos.append({"path": str(r.path), "label": r.label, "predicted": None, "score": None,
                           "seen_in_training": None, "correct": None, "top": [], "error": errors.get(i),
                           "near_copy_of_training": None})
            continue
        top = [{"label": labels[int(c)], "score": round(float(p0[j, c]), 4)} for c in order[j, :3]]
        photos.append({"path": str(r.path), "label": r.label, "predicted": labels[int(pred[j])],
                       "score": round(float(p0[j, pred[j]]), 4),
                       "seen_in_training": None if seen is None else bool(seen[j]),
                       "correct": bool(pred[j] == y[j]), "top": top, "error": None,
                       "near_copy_of_training": None if near is None else bool(near[j])})
        j += 1
    mistakes = sorted((p for p in photos if p["correct"] is False), key=lambda p: -p["score"])
    new = None if seen is None or near is None else ~(seen | near)  # neither fitted nor a near copy
    return EvalResult(
        accuracy=metrics["accuracy"], n=int(len(y)), per_class=metrics["per_class"], confusion=metrics["confusion"],
        labels=list(labels),
        rotations={deg: round(float((p.argmax(1) == y).mean()), 6) for deg, p in (turned or probs).items()},
        seen_in_training=None if seen is None else int(seen.sum()), macro_f1=metrics["macro_f1"],
        top_k_accuracy=top_k, split=split, model=model, data=data, orientation_policy=orientation_policy,
        unreadable=[{"path": str(known[i].path), "reason": why} for i, why in sorted(errors.items())],
        unknown_labels=unknown, n_mistakes=len(mistakes),
        mistakes=[{k: mk[k] for k in ("path", "label", "predicted", "score", "top", "seen_in_training",
                                      "near_copy_of_training")} for mk in mistakes[:MAX_MISTAKES_JSON]],
        photos=photos, model_format=model_format,
        near_copies_of_training=None if near is None else int(near.sum()),
        accuracy_on_new_photos=None if new is None or not new.any() else round(float((pred == y)[new].mean()), 6))


def finish(result: EvalResult, csv=None, report=None) -> EvalResult:
    """Write the --csv rows and the --report page when asked, and note where they went."""
    if csv is not None:
        write_csv(result, csv)
        result.csv = str(csv)
    if report is not None:
        write_report(result, report)
        result.report = str(report)
    return result


def write_csv(result: EvalResult, path) -> None:
    """One row per photo: path, label, predicted, score, seen_in_training, correct, top, error,
    near_copy_of_training."""
    import csv as _csv
    import io

    from .atomic import atomic_write_text

    buf = io.StringIO()
    w = _csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for p in result.photos:
        w.writerow([p["path"], p["label"], p["predicted"] or "", "" if p["score"] is None else f"{p['score']:.4f}",
                    _csv_bool(p["seen_in_training"]), _csv_bool(p["correct"]),
                    "; ".join(f"{t['label']} {t['score']:.4f}" for t in p["top"]), p["error"] or "",
                    _csv_bool(p.get("near_copy_of_training"))])
    try:
        atomic_write_text(path, buf.getvalue())
    except OSError as exc:
        raise UprightError(f"cannot write the CSV {path}: {exc.strerror or exc}") from exc


def _csv_bool(value) -> str:
    return "" if value is None else str(bool(value)).lower()


def seen_sentence(result) -> tuple[str, str]:
    """(severity, sentence) about whether the scored photos were held out: "error" (some were
    fitted), "warning" (near copies of fitted photos), "ok" or "unknown"."""
    n, seen, near = result["n"], result["seen_in_training"], result.get("near_copies_of_training")
    exported = result.get("exported_by_upright")
    origin = ""
    if exported and exported.get("model_folder"):
        origin = f"checked against the model folder this file was exported from ({exported['model_folder']}): "
    elif exported:
        photos = exported.get("fitted_photos")
        return "unknown", (f"this ONNX file was exported by upright {exported.get('upright_version') or ''}".rstrip()
                           + (f" from a model fitted on {photos} photos" if photos is not None else "")
                           + "; the file does not carry their fingerprints and no model folder with its head is "
                           "beside it: seen_in_training unknown. `upright eval MODEL DATA` on the model folder counts "
                           "the photos it was fitted on and their near copies.")
    elif seen is None and result.get("model_format") == "onnx":
        return "unknown", ("this model was trained elsewhere: nothing records which photos it was fitted on "
                           "(seen_in_training unknown), so these figures are a test only if you know it never "
                           "saw these photos.")
    elif seen is None and result.get("model_format") == "tflite":
        return "unknown", ("nothing in a TFLite file records which photos its model was fitted on (seen_in_training "
                           "unknown), so these figures are a test only if you know it never saw these photos; for "
                           "upright's own export, `upright eval MODEL DATA` on its model folder counts them.")
    if seen is None:
        return "unknown", ("this model does not record which photos it was fitted on (trained by an older "
                           "upright): nothing says these photos are new to it.")
    copies = "" if not near else f"{near} " + ("is a near copy of a training photo" if near == 1 else
                                               "are near copies of training photos")
    fresh = n - (seen or 0) - (near or 0)
    if seen:
        return "error", (origin + f"{seen} of {n} photos {verb(seen, 'was', 'were')} used in training: this is not a test"
                         + ("" if seen == n else f"; only {fresh} {verb(fresh, 'is', 'are')} new to the model")
                         + (f" ({copies})" if copies else "")
                         + ". Keep test photos in DATA/test/: train never reads it.")
    if near:
        rest = result.get("accuracy_on_new_photos")
        return "warning", (origin + f"none of the {n} photos was used in training, but {copies} (embedding cosine "
                           f">= {NEAR_THRESHOLD}, the audit's near-duplicate threshold): "
                           + ("it scores like a training photo" if near == 1 else "they score like training photos")
                           + ", so this is partly a re-test"
                           + (f"; accuracy on the other {n - near}: {rest:.3f}" if rest is not None else "")
                           + ". --csv marks them (near_copy_of_training); move them out of test/ for a clean test.")
    if near is None:
        return "ok", (origin + f"none of the {n} photos was used in training; "
                      + (result.get("near_copies_note") or "near copies not counted") + ".")
    return "ok", origin + f"none of the {n} photos was used in training or is a near copy of one: a fair test."


def write_report(result, path) -> None:
    """A self-contained HTML page: whether this was a test, accuracy, per-class figures,
    confusion matrix, rotation bars, and the mistakes shown upright, large, with their top-3."""
    from .atomic import atomic_write_text
    from .report.html import figure_data_url
    from .report.paths import below, shown_root, unrooted
    from .report.plots import confusion_figure, rotation_figure
    from .report.templating import render
    from .train_report import mistake_views

    result = {"seen_in_training": None, "macro_f1": None, "top_k_accuracy": {},
              **(result.to_dict() if hasattr(result, "to_dict") else result)}
    rot = result["rotations"]
    spread = max(rot.values()) - min(rot.values())
    verdict = ("not run (--rotation-check none): only the upright photos were scored" if len(rot) < 2 else
               "accuracy barely changes with rotation: the model does not rely on which way is up"
               if spread < 0.05 else
               "accuracy drops on rotated photos: the model relies on the upright view (expected for "
               "a model trained without rotation augmentation; a problem only if your photos arrive sideways)")
    if len(rot) > 1:
        verdict += _turn_views(result)
    mistakes = result.get("mistakes", [])
    level, sentence = seen_sentence(result)
    for folder in (result["model"], (result.get("exported_by_upright") or {}).get("model_folder")):
        sentence = unrooted(sentence, folder)  # the page names folders, not this machine's paths
    html = render(
        "eval.html", title="upright eval",
        subtitle="thumbnails are shown upright" + (", as the model read them" if result["orientation_policy"] == "upright"
                                                   else "; this model reads the pixels as stored (tag ignored)"),
        seen_level=level, seen_sentence=sentence[0].upper() + sentence[1:],
        accuracy=result["accuracy"], n=result["n"], split=result["split"], data=shown_root(result["data"]),
        model=shown_root(result["model"]), orientation_policy=result["orientation_policy"], macro_f1=result["macro_f1"],
        top_k=[(k, a) for k, a in result["top_k_accuracy"].items() if k != "1"],
        per_class=[{"label": lab, "f1": None, **v} for lab, v in result["per_class"].items()],
        confusion_plot=figure_data_url(confusion_figure(result["confusion"], result["labels"])),
        rotation_plot=figure_data_url(rotation_figure(rot)), verdict=verdict,
        n_mistakes=result.get("n_mistakes", len(mistakes)),
        mistakes=mistake_views(mistakes[:MAX_MISTAKES_SHOWN], result["data"]),
        unreadable=[{**u, "path": below(u["path"], result["data"])} for u in result.get("unreadable") or []])
    try:
        atomic_write_text(path, html)
    except OSError as exc:
        raise UprightError(f"cannot write the report {path}: {exc.strerror or exc}") from exc


def _num(value, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def rotation_words(result) -> str:
    """The rotation check in one clause: its accuracies, and the views when not the model's own."""
    rot = result["rotations"]
    if len(rot) < 2:
        return "rotation check skipped (--rotation-check none)"
    return ("accuracy with the photos turned 0/90/180/270°" + _turn_views(result) + ": "
            + " / ".join(f"{a:.2f}" for a in rot.values()))


def _turn_views(result) -> str:
    """' (each turn scored on id+flip of the test views)' when the check scored fewer views than
    the model's own (--rotation-check centre), else ''."""
    if result.get("rotation_check") != "centre":
        return ""
    return f" (each turn scored on {'+'.join(result.get('rotation_views') or [])} of the test views)"


def print_summary(result) -> None:
    """Human output: per-class table, macro-F1, top-k, rotations, and loudly whether this was a test."""
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table

    from .console import err, out

    for u in result["unreadable"]:
        err.print(f"[yellow]skipped unreadable[/] {escape(u['path'])}: {escape(u['reason'])}")
    if result["unknown_labels"]:
        err.print(f"[yellow]skipped classes the model does not know:[/] {escape(', '.join(result['unknown_labels']))}")
    t = Table(title=f"upright eval: accuracy {result['accuracy']:.3f} on {count(result['n'], 'image')} ({result['split']})", min_width=60)
    for col in ("class", "precision", "recall", "F1", "n"):
        t.add_column(col, justify="left" if col == "class" else "right")
    for lab, v in result["per_class"].items():
        t.add_row(escape(lab), _num(v["precision"]), _num(v["recall"]), _num(v.get("f1")), str(v["n"]))
    out.print(t)
    out.print(f"macro-F1 {_num(result['macro_f1'])}; "
              + ", ".join(f"top-{k} accuracy {a:.3f}" for k, a in result["top_k_accuracy"].items()) + "; "
              + rotation_words(result))
    if result.get("input_contract"):
        out.print(f"photos fed as: {escape(result['input_contract'])}")
    level, sentence = seen_sentence(result)
    if level == "error":
        out.print(Panel(f"[bold]{escape(sentence)}[/bold]", title="[bold]NOT A TEST[/bold]", border_style="red",
                        style="red", expand=False))
    elif level == "warning":
        out.print(f"[bold yellow]{escape(sentence)}[/bold yellow]")
    elif level == "unknown":
        out.print(f"[yellow]{escape(sentence)}[/yellow]")
    else:
        out.print(f"[green]{escape(sentence)}[/green]")
    for key, what in (("csv", "per-photo rows"), ("report", "report")):
        if result.get(key):
            err.print(f"{what} written to {escape(result[key])}")
