"""Train: scan train/ (+ val/) -> cached embeddings of every variant -> softmax head -> model folder.

Head (head.py): multinomial logistic regression on standardised embeddings, fitted with
L-BFGS, L2 strength chosen on the validation photos (val/ or the hash split; 3-fold
cross-validation on the training photos when they are too few), then refitted on train +
val. Test-time views ("id", or "id" + "flip" averaged) are chosen on the same held-out
photos. Deterministic for a seed.

Honest by construction: DATA/test is never opened here (it is `eval`'s), the model records
the content fingerprints of every photo the final head was fitted on (provenance.py), and the
model folder is built beside MODEL and swapped in whole (a crash leaves the old or the new).
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import numpy as np

from . import backbones, presets, provenance
from .views import describe as describe_views
from .atomic import stage_folder, swap_folder
from .pipeline.scan import DEFAULT_VAL_FRACTION, Dataset, scan
from .errors import UprightError
from .pipeline.embed import AUGMENT_VARIANTS, embed_paths
from .head import DEFAULT_HEAD_ITERS, SoftmaxRegression, _rows, select_head
from .model import META_FILE, save_model
from .pipeline.decode import describe as describe_preprocessing
from .results import TrainResult

DEFAULT_AUGMENT = "flip"
PRESETS = ("fast", "accurate")
TRAIN_SPLITS = ("train", "val")  # what train reads; DATA/test is eval's alone
REPORT_FILE = "report.html"


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


def audit_warnings(folders) -> list[dict]:
    """Warnings the header audit raises on the photos a model is fitted on (about a second).

    One small function so the audit's check registry can be wired in here alone.
    """
    from .audit import run_audit

    found = []
    for folder in folders:
        for f in run_audit(folder, content=False, progress=False)["findings"]:
            if f.get("severity") in ("warning", "error"):
                found.append({**f, "folder": str(folder)})
    return found


def _split_indices(records, labels, ok):
    """-> (class index per record, readable train rows, readable val rows); every class needs a photo."""
    y = np.array([labels.index(r.label) for r in records])
    is_train = np.array([r.split == "train" for r in records]) & ok
    is_val = np.array([r.split == "val" for r in records]) & ok
    train_counts = np.bincount(y[is_train], minlength=len(labels))
    missing = [labels[c] for c in range(len(labels)) if train_counts[c] == 0 and not (is_val & (y == c)).any()]
    if missing:
        raise UprightError(f"class '{missing[0]}' has no readable images")
    return y, np.flatnonzero(is_train), np.flatnonzero(is_val)


# -- the whole run ------------------------------------------------------------------------
def train_dataset(data, out, *, backbone: str | None = None, augment: str = DEFAULT_AUGMENT,
                  epochs: int | None = None, fine_tune: bool = False, val_split: float = DEFAULT_VAL_FRACTION, seed: int = 0,
                  orient: bool = True, cache_dir=None, progress: bool = True, workers: int | None = None,
                  force: bool = False, report: bool = True, resume: bool = False, preset: str = "fast",
                  engine: str = "local", ray_address: str | None = None) -> TrainResult:
    """Train a model folder at `out` from DATA (its train/ and val/ only; test/ is never read).

    `preset`: "fast" (the backbone is `backbone`, default Lite0; --augment views) or "accurate"
    (accurate.py: Lite0+Lite2, 10 crops of each photo); both fit the linear head on frozen features.
    `force` replaces an existing model folder (atomically); `report` writes MODEL/report.html.
    `epochs`: epochs of fine-tuning (the plain head is fitted to convergence and refuses it);
    `resume` continues a fine-tune run from its last checkpoint (finetune.py).
    `engine`/`ray_address`: where the embedding step runs (local process pool or Ray Data).
    Returns a TrainResult whose to_dict() is the contracts' train JSON.
    """
    t0 = time.perf_counter()
    if preset not in PRESETS:
        raise UprightError(f"unknown --preset '{preset}' ({', '.join(PRESETS)})")
    if preset == "accurate":
        if fine_tune:
            raise UprightError("--preset accurate does not fine-tune (measured: it did not help); drop --fine-tune")
        if backbone not in (None, presets.BACKBONE):
            raise UprightError(f"--preset accurate uses {presets.BACKBONE}; drop --backbone")
        if augment != DEFAULT_AUGMENT:
            raise UprightError("--preset accurate trains on 10 crops and their mirrors; --augment is the fast preset's")
        backbone = presets.BACKBONE
    backbone = backbone or backbones.DEFAULT
    if augment not in AUGMENT_VARIANTS:
        raise UprightError(f"unknown --augment '{augment}' (none, flip, rotate, d4)")
    if not 0.0 <= val_split < 1.0:
        raise UprightError(f"--val-split must be in [0, 1), got {val_split}")
    if epochs is not None and epochs < 1:
        raise UprightError(f"--epochs must be at least 1, got {epochs}")
    if epochs is not None and not fine_tune:
        raise UprightError("--epochs counts epochs of --fine-tune; the plain head (both presets) is fitted to "
                           "convergence (add --fine-tune, or drop --epochs)")
    if resume and not fine_tune:
        raise UprightError("--resume continues a --fine-tune run; add --fine-tune")
    spec = backbones.spec(backbone)
    replacing = check_target(out, force)
    weights_hash = backbones.weights_sha256(backbone)
    ds = scan(data, val_split, read=TRAIN_SPLITS)
    check_dataset(ds)
    labels = ds.labels
    records = [r for r in ds.records if r.split in TRAIN_SPLITS]
    aug_views = AUGMENT_VARIANTS[augment] if preset == "fast" else presets.VIEW_NAMES
    variants = tuple(dict.fromkeys(aug_views + ("id", "flip")))
    emb = embed_paths([r.path for r in records], backbone=backbone, variants=variants, orient=orient,
                cache_dir=cache_dir, progress=progress, hashes=[r.sha256 for r in records],
                workers=workers, description="embedding", engine=engine, ray_address=ray_address)
    unreadable = [{"path": str(records[i].path), "reason": why} for i, why in sorted(emb.errors.items())]
    skipped = [{"path": p, "reason": why} for p, why in ds.skipped]
    ok = emb.ok
    if not ok.any():
        raise UprightError(f"{ds.root}: no readable images ({len(records)} files, all unreadable)")
    y, train_idx, val_idx = _split_indices(records, labels, ok)
    max_iter = DEFAULT_HEAD_ITERS
    X3 = emb.vectors
    choice = select_head(X3, y, len(labels), train_idx, val_idx, variants, aug_views, seed, max_iter,
                         tta_options=[presets.TEST_VIEWS] if preset == "accurate" else None)
    vi = {v: i for i, v in enumerate(variants)}
    aug = [vi[v] for v in aug_views]
    val_acc = choice["accuracy"]
    # final fit on every readable photo train reads (train + val) with the chosen l2
    all_idx = np.flatnonzero(ok)
    X, yy = _rows(X3, all_idx, y, aug)
    head = SoftmaxRegression(l2=choice["l2"], max_iter=max_iter).fit(X, yy)
    W, b = head.coef_, head.intercept_
    fitted = provenance.fingerprints(records[i].sha256 for i in all_idx)
    meta_extra: dict = {}
    backbone_state = None
    checkpoint = None
    if fine_tune:
        from .pipeline.finetune import Checkpoint, checkpoint_folder, run_key

        epochs = epochs or DEFAULT_FINE_TUNE_EPOCHS
        checkpoint = Checkpoint(checkpoint_folder(out), run_key(
            kind="fine-tune", photos=[(r.sha256, r.split, r.label) for r in records], labels=labels,
            backbone=backbone, weights=weights_hash, augment=augment, epochs=epochs, seed=seed, orient=orient,
            lr=FINE_TUNE_LR, batch=FINE_TUNE_BATCH, head=[float(choice["l2"])]))
        # start from a head fitted on the train photos alone: the val photos choose the best
        # epoch, so no weight may have seen them (the head above was fitted on train + val)
        start = (W, b)
        if len(val_idx) and len(np.unique(y[train_idx])) == len(labels):
            Xt, yt = _rows(X3, np.asarray(train_idx), y, aug)
            h0 = SoftmaxRegression(l2=choice["l2"], max_iter=max_iter).fit(Xt, yt)
            start = (h0.coef_, h0.intercept_)
        ft = run_fine_tune([str(records[i].path) for i in train_idx], y[train_idx],
                           [str(records[i].path) for i in val_idx], y[val_idx], labels, backbone, start,
                           aug_views, epochs=epochs, seed=seed, orient=orient, progress=progress,
                           checkpoint=checkpoint, resume=resume)
        W, b, backbone_state = ft["weight"], ft["bias"], ft["state"]
        meta_extra["fine_tune"] = ft["info"]
        meta_extra["backbone_sha256"] = backbones.state_dict_sha256(backbone_state)
        choice["test_views"] = ["id"]
        if ft["info"].get("val_accuracy") is not None:
            val_acc = ft["info"]["val_accuracy"]
    seconds = time.perf_counter() - t0
    n_train, n_val = int(len(train_idx)), int(len(val_idx))
    fitted_splits = sorted({records[i].split for i in all_idx})
    meta = {
        "labels": labels,
        "backbone": backbone,
        "backbone_parts": list(spec.components),
        "weights_sha256": weights_hash,
        "embedding_dim": spec.dim,
        "input_size": spec.size,
        "preprocessing": describe_preprocessing(backbone),
        "orientation_policy": "upright" if orient else "stored",
        "preset": preset,
        "augment": augment if preset == "fast" else "10-crop",
        "train_variants": list(aug_views),
        "test_views": choice["test_views"],
        "fine_tuned": bool(fine_tune),
        "head": {"type": "linear-softmax", "estimator": "upright.head.SoftmaxRegression", "l2": choice["l2"],
                 "selected_by": choice["method"], "solver": "L-BFGS", "max_iter": max_iter,
                 "final_fit": "train+val", "iterations": int(head.n_iter_),
                 "applies_to": "raw embedding (standardisation folded into weight and bias)"},
        "onnx_input": {"name": "input", "shape": ["batch", 3, spec.size, spec.size], "dtype": "float32",
                       "layout": "NCHW RGB", "scaling": spec.scaling,
                       "output": "probabilities [batch, n_labels], averaged over test_views"},
        "training": {"val_accuracy": round(val_acc, 6), "n_train": n_train, "n_val": n_val,
                     "classes": {lab: int(((y == i) & ok).sum()) for i, lab in enumerate(labels)},
                     "seed": seed, "seconds": round(seconds, 3), "l2_grid": choice["grid"],
                     "unreadable": len(unreadable)},
        "fitted_on": _fitted_on(fitted, fitted_splits, ds),
        **meta_extra,
    }
    result = TrainResult(
        model=str(Path(out)), labels=labels, val_accuracy=round(float(val_acc), 6), n_train=n_train, n_val=n_val,
        seconds=0.0, backbone=backbone, augment=meta["augment"], val_method=choice["method"], l2=choice["l2"],
        test_views=choice["test_views"], classes=meta["training"]["classes"],
        orientation_policy=meta["orientation_policy"], fine_tuned=bool(fine_tune), unreadable=unreadable,
        skipped=skipped, cache_hits=int(emb.hits), decoded=int(emb.decoded), n_fitted=int(len(fitted)),
        test_not_read=ds.not_read.get("test"), replaced=replacing, data=str(ds.root),
        fine_tune={k: meta_extra["fine_tune"][k] for k in ("epochs", "best_epoch", "resumed_from_epoch", "history")}
        if fine_tune else None, preset=preset)
    return _write_model(out, meta, W, b, backbone_state, fitted, result, report, ds, records, y, choice,
                        checkpoint, t0)


def _fitted_on(fitted, splits, ds: Dataset) -> dict:
    return {"photos": int(len(fitted)), "splits": splits, "tensor": provenance.TENSOR,
            "fingerprint": f"first {provenance.PREFIX_BYTES} bytes of each photo's SHA-256, rows sorted, "
                           "in head.safetensors",
            "test_not_read": ds.not_read.get("test")}


def _write_model(out, meta, W, b, backbone_state, fitted, result: TrainResult, report: bool, ds, records, y,
                 choice, checkpoint, t0) -> TrainResult:
    """Build the model folder beside `out` and swap it in whole; then drop the run's checkpoint."""
    stage = stage_folder(out)
    try:
        save_model(stage, meta, W, b, backbone_state, fitted)
        if report:
            result.report = _write_report(stage, out, meta, result, ds, records, y, choice)
        swap_folder(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if checkpoint is not None:
        checkpoint.remove()  # the model is written: nothing left to resume
    result.seconds = round(time.perf_counter() - t0, 3)
    return result


def _write_report(stage: Path, out, meta: dict, result: TrainResult, ds: Dataset, records, y, choice) -> str | None:
    """MODEL/report.html; a report that cannot be made is a warning, never a lost model."""
    from .console import err
    from .errors import one_line
    from .train_report import heldout_rows, write_train_report

    try:
        folders = [Path(p) for p in ds.read_folders]
        write_train_report(stage / REPORT_FILE, meta=meta, result=result.to_dict(),
                           heldout=heldout_rows(choice["heldout"], records, y, meta["labels"]),
                           warnings=audit_warnings(folders))
    except Exception as exc:  # noqa: BLE001 (the model is the product; the page is a bonus)
        err.print(f"[yellow]report.html not written:[/] {one_line(exc)}")
        return None
    return str(Path(out) / REPORT_FILE)


# -- optional end-to-end fine-tuning -------------------------------------------------------
def _load_crops(paths, backbone, orient, progress, description):
    from .console import progress as progress_bar
    from .pipeline.engines import CHUNK, decoded_stream, default_workers

    spec = backbones.spec(backbone)
    crops = np.zeros((len(paths), spec.size, spec.size, 3), np.uint8)
    ok = np.zeros(len(paths), bool)
    jobs = [([(i, paths[i]) for i in range(j, min(j + CHUNK, len(paths)))], backbone, orient, False)
            for j in range(0, len(paths), CHUNK)]
    with progress_bar(len(paths), description, enabled=progress) as advance:
        for i, crop, _err in decoded_stream(jobs, default_workers(len(paths))):
            if crop is not None:
                crops[i], ok[i] = crop, True
            advance(1)
    return crops[ok], ok


FINE_TUNE_LR = 1e-4  # backbone; the head gets 10x
FINE_TUNE_BATCH = 16
DEFAULT_FINE_TUNE_EPOCHS = 3


def run_fine_tune(train_paths, y_train, val_paths, y_val, labels, backbone, head, aug_views, *,
                  epochs=DEFAULT_FINE_TUNE_EPOCHS, seed=0, orient=True, progress=True, batch_size=FINE_TUNE_BATCH,
                  lr=FINE_TUNE_LR, checkpoint=None, resume=False):
    """Fine-tune backbone + head end to end through finetune.train_epochs (AdamW, warm-up +
    cosine, BatchNorm statistics frozen, one random training variant per image per epoch,
    from the decoded crops held in memory; one line per epoch, the best epoch by val accuracy
    kept, a checkpoint per epoch). Uses CUDA when present. Returns the new head (on raw
    embeddings), the backbone state and figures."""
    import torch

    from .pipeline.finetune import print_epoch, train_epochs
    from .orientation import variant_array
    from .pipeline.decode import to_input

    t0 = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    crops, ok = _load_crops(list(train_paths), backbone, orient, progress, "decoding (fine-tune)")
    ytr = np.asarray(y_train)[ok]
    vcrops, vok = _load_crops(list(val_paths), backbone, orient, False, "") if len(val_paths) else (crops[:0], ok[:0])
    yva = np.asarray(y_val)[vok] if len(val_paths) else np.zeros(0, int)
    net = backbones.torch_module(backbone).to(device)
    lin = torch.nn.Linear(backbones.spec(backbone).dim, len(labels)).to(device)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(head[0]))
        lin.bias.copy_(torch.from_numpy(head[1]))
    whole = torch.nn.Sequential(net, lin)

    def batches(epoch):
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(crops))
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            views = rng.choice(len(aug_views), len(idx))
            xb = to_input(np.stack([variant_array(crops[i], aug_views[v]) for i, v in zip(idx, views)]), backbone)
            yield torch.from_numpy(xb).to(device), torch.from_numpy(ytr[idx]).to(device)

    def evaluate():
        logits = torch.cat([whole(torch.from_numpy(to_input(vcrops[s:s + 32], backbone)).to(device))
                            for s in range(0, len(vcrops), 32)])
        target = torch.from_numpy(yva).to(device)
        return (float((logits.argmax(1) == target).float().mean()),
                float(torch.nn.functional.cross_entropy(logits, target)))

    run = train_epochs(whole, [{"params": list(net.parameters()), "lr": lr},
                               {"params": list(lin.parameters()), "lr": lr * 10}],
                       batches=batches, n_batches=math.ceil(len(crops) / batch_size),
                       evaluate=evaluate if len(vcrops) else None, epochs=epochs, seed=seed,
                       checkpoint=checkpoint, resume=resume, progress=progress,
                       on_epoch=print_epoch if progress else None)
    best = next((h for h in run.history if h["epoch"] == run.best_epoch), {})
    state = {k: v.detach().cpu().contiguous() for k, v in net.net.state_dict().items()}
    info = {"epochs": epochs, "optimizer": "AdamW, linear warm-up + cosine", "lr_backbone": lr, "lr_head": lr * 10,
            "batch_size": batch_size, "device": device, "batchnorm": "frozen statistics",
            "val_accuracy": best.get("val_accuracy"), "best_epoch": run.best_epoch,
            "kept": "the epoch with the best val accuracy (then val loss)" if len(vcrops) else "the last epoch",
            "history": run.history, "resumed_from_epoch": run.resumed_from,
            "seconds": round(time.perf_counter() - t0, 2)}
    return {"weight": lin.weight.detach().cpu().numpy().astype(np.float32),
            "bias": lin.bias.detach().cpu().numpy().astype(np.float32), "state": state, "info": info}


def print_summary(result) -> None:
    """The human summary of a training run: a table of classes, counts, accuracy and time."""
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
    t.add_row("val accuracy", f"{result['val_accuracy']:.3f} ({result['val_method']})")
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
