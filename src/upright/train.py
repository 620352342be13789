"""`upright train`: the pipeline's stages in order, for the photos train may read.

    scan (train/ + val/) -> embed every training view (cached) -> fit the head (choose l2 and
    test views on the held-out photos, fit on all) -> [fine-tune the backbone] -> audit the
    photos' headers -> package the model folder (with its input contract, and the held-out figures
    and audit warnings a model card shows) -> the report (from what the run recorded: no file
    is hashed, read or decoded again; known_files.py, train_report.py)

The stages live in upright.pipeline (scan, embed, fit, finetune, package); this module decides
the recipe (presets.py), keeps the run honest and writes the folder whole.

Honest by construction: DATA/test is never opened here (it is `eval`'s), the model records
the content fingerprints of every photo the final head was fitted on (provenance.py), and the
model folder is built beside MODEL and swapped in whole (a crash leaves the old or the new).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import backbones, presets, provenance
from .atomic import stage_folder, swap_folder
from .console import step
from .contract import InputContract
from .errors import UprightError
from .known_files import KnownFiles
from .modelfile import META_FILE
from .pipeline.embed import Embeddings, embed_paths
from .pipeline.finetune import DEFAULT_FINE_TUNE_EPOCHS, FINE_TUNE_BATCH, FINE_TUNE_LR, run_fine_tune
from .head import DEFAULT_HEAD_ITERS, select_head
from .pipeline.fit import HeadFit, embedded_views, fit_head, fit_on, split_indices
from .pipeline.package import fitted_on, model_json, save_model
from .pipeline.scan import DEFAULT_VAL_FRACTION, Dataset, scan
from .presets import DEFAULT_AUGMENT, DEFAULT_PRESET, PRESETS
from .results import TrainResult
from .train_report import audit_warnings, card_figures, heldout_rows, summarise
from .views import describe as describe_views
from .words import count

TRAIN_SPLITS = ("train", "val")  # what train reads; DATA/test is eval's alone
REPORT_FILE = "report.html"
AUDIT_STEP = "auditing the training photos"  # the report's "Audit of the training photos"


def check_dataset(ds: Dataset) -> None:
    counts = ds.counts()
    empty = [lab for lab, n in counts.items() if n == 0]
    if empty:
        raise UprightError(f"class folder '{empty[0]}' has no images"
                           + (f" (and {len(empty) - 1} more empty classes)" if len(empty) > 1 else ""))
    if len(ds.labels) < 2:
        raise UprightError(f"{ds.root}: only one class ('{ds.labels[0]}'); a classifier needs at least two")


# -- the model folder ---------------------------------------------------------------------
def check_target(out, force: bool) -> bool:
    """Refuse to overwrite a model unless forced; never replace a folder that is not a model.

    Returns True when an existing model will be replaced. Called before any work is done.
    """
    out = Path(out)
    if not out.exists():
        return False
    if not out.is_dir():
        raise UprightError(f"{out}: exists and is not a folder; choose another -o")
    if not any(out.iterdir()):
        return False
    if not (out / META_FILE).is_file():
        raise UprightError(f"{out}: exists and is not an upright model folder (no {META_FILE}); "
                           "refusing to replace it, choose another -o")
    if not force:
        raise UprightError(f"{out}: a model is already there; pass --force to replace it, or choose another -o")
    return True


# -- the whole run ------------------------------------------------------------------------
def train_dataset(data, out, *, backbone: str | None = None, augment: str = DEFAULT_AUGMENT,
                  epochs: int | None = None, fine_tune: bool = False, val_split: float = DEFAULT_VAL_FRACTION, seed: int = 0,
                  orient: bool = True, cache_dir=None, progress: bool = True, workers: int | None = None,
                  force: bool = False, report: bool = True, resume: bool = False, preset: str = DEFAULT_PRESET,
                  engine: str = "local", ray_address: str | None = None) -> TrainResult:
    """Train a model folder at `out` from DATA (its train/ and val/ only; test/ is never read).

    `preset`: "fast" (the backbone is `backbone`, default Lite0; --augment views) or "accurate"
    (presets.py: Lite0+Lite2, 10 crops of each photo); both fit the linear head on frozen features.
    `force` replaces an existing model folder (atomically); `report` writes MODEL/report.html.
    `epochs`: epochs of fine-tuning (the plain head is fitted to convergence and refuses it);
    `resume` continues a fine-tune run from its last checkpoint (pipeline/finetune.py).
    `engine`/`ray_address`: where the embedding step runs (local process pool or Ray Data).
    Returns a TrainResult whose to_dict() is the contracts' train JSON.
    """
    t0 = time.perf_counter()
    backbone, train_views = _recipe(preset, backbone, augment, epochs, fine_tune, resume, val_split)
    replacing = check_target(out, force)
    weights_hash = backbones.weights_sha256(backbone)
    with KnownFiles(cache_dir) as known:  # hashes recorded by earlier runs are reused (known_files.py)
        ds = scan(data, val_split, read=TRAIN_SPLITS, known=known)
    check_dataset(ds)
    records = [r for r in ds.records if r.split in TRAIN_SPLITS]
    variants = embedded_views(train_views)
    emb = embed_paths([r.path for r in records], backbone=backbone, variants=variants, orient=orient,
                      cache_dir=cache_dir, progress=progress, hashes=[r.sha256 for r in records],
                      workers=workers, description="embedding", engine=engine, ray_address=ray_address)
    if not emb.ok.any():
        raise UprightError(f"{ds.root}: no readable images ({count(len(records), 'file')}, all unreadable)")
    y, train_idx, val_idx = split_indices(records, ds.labels, emb.ok)
    kw = {"cache_dir": cache_dir, "progress": progress, "workers": workers, "engine": engine, "ray_address": ray_address}
    made, fast_acc = (emb, backbone, orient), None  # embeddings at hand for the near-copy record
    if preset == "accurate":  # what the fast preset would have validated at, on the same photos and split
        made = (_default_views(records, made, presets.AUGMENT_VARIANTS[DEFAULT_AUGMENT], orient, kw,
                               "embedding (the fast preset, to compare)"), backbones.DEFAULT, orient)
        fast_acc = fast_val_accuracy(made[0], y, train_idx, val_idx, len(ds.labels), seed)
    near = _default_views(records, made, (provenance.RECORD_VIEW,), True, kw, "embedding (near-copy record)")
    near_vectors = near.vectors[:, 0]  # a view of the run's own vectors when they hold the record's view
    if preset == "accurate":
        near_vectors = near_vectors.copy()  # so the fast preset's vectors are freed with `made`
    del made, near
    backbones.release_runners()  # every embedding is made: ONNX Runtime's working memory goes before the head's
    step("fitting the head")
    fit = fit_head(emb.vectors, y, len(ds.labels), emb.ok, train_idx, val_idx, variants, train_views, seed,
                   test_views=[presets.TEST_VIEWS] if preset == "accurate" else None)
    tuned = None
    if fine_tune:
        tuned = _fine_tune(out, records, y, train_idx, val_idx, ds.labels, backbone, weights_hash, fit, emb,
                           train_views, augment=augment, epochs=epochs or DEFAULT_FINE_TUNE_EPOCHS, seed=seed,
                           orient=orient, progress=progress, resume=resume)
    run = _Run(ds, records, y, train_idx, val_idx, emb, fit, tuned, preset, augment, train_views, seed, orient,
               backbone, weights_hash, replacing, out, t0, near_vectors, fast_acc)
    meta, result = run.model_json(), run.result()
    fitted = (run.fitted, run.fitted_embeddings)
    del run, near_vectors, emb  # the report needs no embedding: their memory is free before it is made
    W, b, state = (fit.weight, fit.bias, None) if tuned is None else (tuned.weight, tuned.bias, tuned.state)
    summary = summarise(heldout_rows(fit.choice.heldout, records, y, ds.labels), ds.labels)
    warnings = _audit_warnings(ds, result, cache_dir) if report else None
    meta["training"].update(card_figures(summary, warnings, ds.root))  # what a model card shows
    return _write_model(out, meta, W, b, state, fitted, result, None if warnings is None else (summary, warnings),
                        None if tuned is None else tuned.checkpoint, t0, cache_dir)


def _default_views(records, run: tuple[Embeddings, str, bool], views, orient: bool, kw: dict,
                   description: str) -> Embeddings:
    """Embeddings of `views` of every record by the default backbone (Lite0), read upright or as
    stored (`orient`): the run's own (`run`: its embeddings, backbone, orient) when it made them,
    else one more pass through the cache (what the near-copy record and the fast comparison need)."""
    emb, run_backbone, run_orient = run
    if run_backbone == backbones.DEFAULT and run_orient == orient and all(v in emb.variants for v in views):
        cols = [emb.variants.index(v) for v in views]
        run_of_cols = cols == list(range(cols[0], cols[0] + len(cols)))  # a slice: a view, not a copy
        return replace(emb, vectors=emb.vectors[:, cols[0]:cols[0] + len(cols)] if run_of_cols else emb.vectors[:, cols],
                       variants=tuple(views))
    return embed_paths([r.path for r in records], backbone=backbones.DEFAULT, variants=tuple(views), orient=orient,
                       hashes=[r.sha256 for r in records], description=description, **kw)


def fast_val_accuracy(fast: Embeddings, y, train_idx, val_idx, n_labels: int, seed: int) -> float:
    """The val accuracy `--preset fast` (default backbone and --augment) reaches on these photos
    and this split: the same choice (head.select_head) a fast run makes."""
    ok = fast.ok
    choice = select_head(fast.vectors, y, n_labels, train_idx[ok[train_idx]], val_idx[ok[val_idx]], fast.variants,
                         fast.variants, seed, DEFAULT_HEAD_ITERS)
    return float(choice.accuracy)


def _recipe(preset: str, backbone: str | None, augment: str, epochs, fine_tune: bool, resume: bool,
            val_split: float) -> tuple[str, tuple[str, ...]]:
    """Check the options before any work -> (backbone, training views)."""
    if preset not in PRESETS:
        raise UprightError(f"unknown --preset '{preset}' ({', '.join(PRESETS)})")
    if preset == "accurate":
        if fine_tune:
            raise UprightError("--preset accurate does not fine-tune (measured: it did not help); drop --fine-tune")
        if backbone not in (None, presets.BACKBONE):
            raise UprightError(f"--preset accurate uses {presets.BACKBONE}; drop --backbone")
        if augment != DEFAULT_AUGMENT:
            raise UprightError("--preset accurate trains on 10 crops and their mirrors; --augment is the fast preset's")
    views = presets.augment_variants(augment)
    if not 0.0 <= val_split < 1.0:
        raise UprightError(f"--val-split must be in [0, 1), got {val_split}")
    if epochs is not None and epochs < 1:
        raise UprightError(f"--epochs must be at least 1, got {epochs}")
    if epochs is not None and not fine_tune:
        raise UprightError("--epochs counts epochs of --fine-tune; the plain head (both presets) is fitted to "
                           "convergence (add --fine-tune, or drop --epochs)")
    if resume and not fine_tune:
        raise UprightError("--resume continues a --fine-tune run; add --fine-tune")
    if preset == "accurate":
        return presets.BACKBONE, presets.VIEW_NAMES
    return backbone or backbones.DEFAULT, views


@dataclass
class _Tuned:
    """What fine-tuning gives: the new head and backbone, its record, and its checkpoint."""

    weight: np.ndarray
    bias: np.ndarray
    state: dict
    info: dict
    checkpoint: object


def _fine_tune(out, records, y, train_idx, val_idx, labels, backbone, weights_hash, fit: HeadFit, emb: Embeddings,
               train_views, *, augment, epochs, seed, orient, progress, resume) -> _Tuned:
    """Fine-tune the backbone end to end from a head fitted on the train photos alone: the val
    photos choose the best epoch, so no weight may have seen them (fit's head saw train + val)."""
    from .pipeline.finetune import Checkpoint, checkpoint_folder, run_key

    checkpoint = Checkpoint(checkpoint_folder(out), run_key(
        kind="fine-tune", photos=[(r.sha256, r.split, r.label) for r in records], labels=labels,
        backbone=backbone, weights=weights_hash, augment=augment, epochs=epochs, seed=seed, orient=orient,
        lr=FINE_TUNE_LR, batch=FINE_TUNE_BATCH, head=[float(fit.choice.l2)]))
    start = (fit.weight, fit.bias)
    if len(val_idx) and len(np.unique(y[train_idx])) == len(labels):
        start = fit_on(emb.vectors, y, train_idx, emb.variants, train_views, fit.choice.l2)
    ft = run_fine_tune([str(records[i].path) for i in train_idx], y[train_idx],
                       [str(records[i].path) for i in val_idx], y[val_idx], labels, backbone, start,
                       train_views, epochs=epochs, seed=seed, orient=orient, progress=progress,
                       checkpoint=checkpoint, resume=resume)
    return _Tuned(ft["weight"], ft["bias"], ft["state"], ft["info"], checkpoint)


@dataclass
class _Run:
    """One training run's facts, from which model.json and the TrainResult are both written."""

    ds: Dataset
    records: list
    y: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    emb: Embeddings
    fit: HeadFit
    tuned: _Tuned | None
    preset: str
    augment: str
    train_views: tuple[str, ...]
    seed: int
    orient: bool
    backbone: str
    weights_hash: str
    replacing: bool
    out: object
    t0: float
    near_vectors: np.ndarray  # [N, D]: each record's near-copy embedding (provenance.record)
    fast_val_accuracy: float | None = None  # --preset accurate: what the fast preset validates at

    def __post_init__(self):
        rows = self.fit.fitted
        self.fitted, self.fitted_embeddings = provenance.record([self.records[i].sha256 for i in rows],
                                                                self.near_vectors, rows)
        tuned_acc = None if self.tuned is None else self.tuned.info.get("val_accuracy")
        self.val_accuracy = self.fit.choice.accuracy if tuned_acc is None else tuned_acc
        self.val_photos = len(self.fit.choice.heldout.index) if tuned_acc is None else len(self.val_idx)
        self.test_views = ["id"] if self.tuned is not None else list(self.fit.choice.test_views)
        self.contract = InputContract.for_backbone(self.backbone, test_views=self.test_views,
                                                   orientation="upright" if self.orient else "stored")
        self.classes = {lab: int(((self.y == i) & self.emb.ok).sum()) for i, lab in enumerate(self.ds.labels)}
        self.unreadable = [{"path": str(self.records[i].path), "reason": why} for i, why in sorted(self.emb.errors.items())]

    def model_json(self) -> dict:
        extra = {}
        if self.tuned is not None:
            extra = {"fine_tune": self.tuned.info}  # backbone_sha256: save_model hashes what it writes
        choice = self.fit.choice
        training = {"val_accuracy": round(self.val_accuracy, 6), "n_train": int(len(self.train_idx)),
                    "n_val": int(len(self.val_idx)), "classes": self.classes, "seed": self.seed,
                    "seconds": round(time.perf_counter() - self.t0, 3), "l2_grid": choice.grid,
                    "unreadable": len(self.unreadable), "val_photos": self.val_photos}
        if self.fast_val_accuracy is not None:
            training["fast_val_accuracy"] = round(self.fast_val_accuracy, 6)
        splits = sorted({self.records[i].split for i in self.fit.fitted})
        return model_json(labels=self.ds.labels, contract=self.contract, weights_sha256=self.weights_hash,
                          preset=self.preset, augment=self.augment if self.preset == "fast" else "10-crop",
                          train_views=self.train_views, fine_tuned=self.tuned is not None, head=self.fit.record(),
                          training=training, fitted=fitted_on(self.fitted, splits, self.ds.not_read.get("test")),
                          **extra)

    def result(self) -> TrainResult:
        choice, ds = self.fit.choice, self.ds
        return TrainResult(
            model=str(Path(self.out)), labels=ds.labels, val_accuracy=round(float(self.val_accuracy), 6),
            n_train=int(len(self.train_idx)), n_val=int(len(self.val_idx)), seconds=0.0, backbone=self.backbone,
            augment=self.augment if self.preset == "fast" else "10-crop", val_method=choice.method,
            l2=choice.l2, test_views=self.test_views, classes=self.classes,
            orientation_policy=self.contract.orientation, fine_tuned=self.tuned is not None,
            unreadable=self.unreadable, skipped=[{"path": p, "reason": why} for p, why in ds.skipped],
            cache_hits=int(self.emb.hits), decoded=int(self.emb.decoded), n_fitted=int(len(self.fitted)),
            test_not_read=ds.not_read.get("test"), replaced=self.replacing, data=str(ds.root),
            fine_tune=None if self.tuned is None else {k: self.tuned.info[k] for k in (
                "epochs", "best_epoch", "resumed_from_epoch", "history")}, preset=self.preset,
            val_photos=self.val_photos,
            fast_val_accuracy=None if self.fast_val_accuracy is None else round(self.fast_val_accuracy, 6))


def _audit_warnings(ds: Dataset, result: TrainResult, cache_dir=None) -> list[dict] | None:
    """The header audit's warnings and errors on the photos the run read (train_report.py), for
    model.json and the report; None, said in a yellow line, when they cannot be made (then no
    report: the model is the product, the page a bonus)."""
    from .console import err, within
    from .errors import one_line

    step(AUDIT_STEP)
    try:
        with within(AUDIT_STEP), KnownFiles(cache_dir) as known:
            return audit_warnings(ds, result.unreadable, known)
    except Exception as exc:  # noqa: BLE001
        err.print(f"[yellow]report.html not written:[/] {one_line(exc)}")
        return None


def _write_model(out, meta, W, b, backbone_state, fitted: tuple, result: TrainResult, report: tuple | None,
                 checkpoint, t0, cache_dir=None) -> TrainResult:
    """Build the model folder beside `out` and swap it in whole; then drop the run's checkpoint.
    report: (held-out summary, audit warnings) for MODEL/report.html, None for none."""
    stage = stage_folder(out)
    try:
        step("writing the model")
        save_model(stage, meta, W, b, backbone_state, *fitted)  # fingerprints, near-copy record
        if report is not None:
            step("writing the report")
            result.report = _write_report(stage, out, meta, result, *report, cache_dir)
        swap_folder(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if checkpoint is not None:
        checkpoint.remove()  # the model is written: nothing left to resume
    result.seconds = round(time.perf_counter() - t0, 3)
    return result


def _write_report(stage: Path, out, meta: dict, result: TrainResult, summary: dict, warnings: list[dict],
                  cache_dir=None) -> str | None:
    """MODEL/report.html; a report that cannot be made is a warning, never a lost model. It
    reuses what the run recorded (train_report.py): no second scan, hash, header read or decode."""
    from .console import err
    from .errors import one_line
    from .train_report import write_train_report

    try:
        with KnownFiles(cache_dir) as known:
            write_train_report(stage / REPORT_FILE, meta=meta, result=result.to_dict(), summary=summary,
                               warnings=warnings, known=known)
    except Exception as exc:  # noqa: BLE001 (the model is the product; the page is a bonus)
        err.print(f"[yellow]report.html not written:[/] {one_line(exc)}")
        return None
    return str(Path(out) / REPORT_FILE)


def print_summary(result) -> None:
    """The human summary of a training run: a table of classes, counts, accuracy and time."""
    from rich.markup import escape
    from rich.table import Table

    from .console import err, out

    for item in result.get("unreadable", []):
        err.print(f"[yellow]skipped unreadable[/] {item['path']}: {item['reason']}")
    t = Table(title=f"upright train -> {result['model']}", show_edge=True)
    t.add_column("class")
    t.add_column("images", justify="right")
    for lab, n in result["classes"].items():
        t.add_row(lab, str(n))
    t.add_section()
    t.add_row("train / val", f"{result['n_train']} / {result['n_val']}")
    t.add_row("fitted on (train + val)", str(result["n_fitted"]))
    if result.get("test_not_read"):
        t.add_row("test photos", "not read (eval's)")
    t.add_row("val accuracy", f"{result['val_accuracy']:.3f} ({result['val_method']}"
              + (f", {count(result['val_photos'], 'photo')})" if result.get("val_photos") else ")"))
    if result.get("fast_val_accuracy") is not None:
        t.add_row("the fast preset, same photos", f"{result['fast_val_accuracy']:.3f}")
    t.add_row("backbone", f"{result['backbone']}{' (fine-tuned)' if result['fine_tuned'] else ''}")
    t.add_row("augment / test views", f"{result['augment']} / {describe_views(result['test_views'])}")
    t.add_row("head l2", f"{result['l2']:g}")
    t.add_row("cache hits / decoded", f"{result['cache_hits']} / {result['decoded']}")
    if result.get("unreadable"):
        t.add_row("unreadable (skipped)", str(len(result["unreadable"])))
    t.add_row("time", f"{result['seconds']:.1f} s")
    out.print(t)
    if result.get("replaced"):
        out.print(f"replaced the model that was in {result['model']}")
    if result.get("report"):
        out.print(f"report: {result['report']}")
    advice = fast_or_accurate(result)
    if advice:
        out.print(f"[yellow]{escape(advice)}[/yellow]")


def fast_or_accurate(result) -> str | None:
    """After an accurate run that validates no higher than the fast preset would have: which to keep."""
    fast, acc, n = result.get("fast_val_accuracy"), result["val_accuracy"], result.get("val_photos") or 0
    if fast is None or fast < acc:
        return None
    gap = round((fast - acc) * n)
    where = f"{fast:.3f} vs {acc:.3f}, {gap} of {n} held-out photos" if gap else f"both {acc:.3f} on {n} held-out photos"
    return (f"the fast preset validates {'higher than' if gap else 'as well as'} this accurate model on the same "
            f"photos ({where}) at a fraction of the cost per prediction (2 views of one network instead of 10 of "
            f"two): keep a fast model unless your test photos say otherwise. `upright train {result.get('data') or 'DATA'} "
            "-o MODEL --preset fast` takes seconds now (its embeddings are cached); `upright eval` compares both.")
