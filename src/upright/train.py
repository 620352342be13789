"""Train: scan -> cached embeddings of every variant -> regularised softmax head -> model folder.

Head: multinomial logistic regression on standardised embeddings, fitted with L-BFGS,
L2 strength chosen on the validation split (or by 3-fold cross-validation on the training
images when the split is too small), then refitted on train + val. Test-time views ("id",
or "id" + "flip" averaged) are chosen on the same held-out data. Deterministic for a seed.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from . import backbones
from .dataset import DEFAULT_VAL_FRACTION, Dataset, scan
from .errors import UprightError
from .features import AUGMENT_VARIANTS, embed_paths
from .model import save_model
from .numerics import softmax
from .preprocess import describe as describe_preprocessing

L2_GRID = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
TTA_CHOICES = (("id",), ("id", "flip"))
DEFAULT_AUGMENT = "flip"
DEFAULT_HEAD_ITERS = 100


def check_dataset(ds: Dataset) -> None:
    counts = ds.counts()
    empty = [lab for lab, n in counts.items() if n == 0]
    if empty:
        raise UprightError(f"class folder '{empty[0]}' has no images"
                           + (f" (and {len(empty) - 1} more empty classes)" if len(empty) > 1 else ""))
    if len(ds.labels) < 2:
        raise UprightError(f"{ds.root}: only one class ('{ds.labels[0]}'); a classifier needs at least two")


# -- the head -----------------------------------------------------------------------------
def fit_softmax(X: np.ndarray, y: np.ndarray, n_classes: int, l2: float, max_iter: int = DEFAULT_HEAD_ITERS,
                init: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression: mean cross-entropy + l2/2 * |W|^2 by L-BFGS (numpy).

    -> (W [C, D], b [C]). Deterministic; no torch import (a warm re-train stays in seconds).
    """
    X = np.ascontiguousarray(X, np.float32)
    n, d = X.shape
    Y = np.zeros((n, n_classes), np.float32)
    Y[np.arange(n), np.asarray(y)] = 1.0
    rows = np.arange(n)
    y = np.asarray(y)

    def fg(theta):
        W = theta[: n_classes * d].reshape(n_classes, d)
        b = theta[n_classes * d:]
        z = X @ W.T.astype(np.float32) + b.astype(np.float32)
        z -= z.max(axis=1, keepdims=True)
        ez = np.exp(z)
        s = ez.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(s[:, 0]) - z[rows, y])) + 0.5 * l2 * float(np.dot(W.ravel(), W.ravel()))
        G = (ez / s - Y) / n
        gW = (G.T @ X).astype(np.float64) + l2 * W
        return loss, np.concatenate([gW.ravel(), G.sum(axis=0).astype(np.float64)])

    theta0 = np.zeros(n_classes * d + n_classes)
    if init is not None:
        theta0 = np.concatenate([np.asarray(init[0], np.float64).ravel(), np.asarray(init[1], np.float64)])
    theta = _lbfgs(fg, theta0, max_iter)
    return (theta[: n_classes * d].reshape(n_classes, d).astype(np.float32),
            theta[n_classes * d:].astype(np.float32))


def _lbfgs(fg, x, max_iter: int, m: int = 10, gtol: float = 1e-5, ftol: float = 1e-9):
    """Plain L-BFGS with a backtracking (Armijo) line search; enough for a smooth convex loss."""
    f, g = fg(x)
    hist: list[tuple[np.ndarray, np.ndarray, float]] = []
    for _ in range(max_iter):
        q = g.copy()
        alphas = []
        for s, yv, rho in reversed(hist):
            a = rho * float(s @ q)
            q -= a * yv
            alphas.append(a)
        if hist:
            s, yv, _ = hist[-1]
            q *= float(s @ yv) / float(yv @ yv)
        else:
            q /= max(1.0, float(np.abs(g).max()))
        for (s, yv, rho), a in zip(hist, reversed(alphas)):
            q += s * (a - rho * float(yv @ q))
        direction = -q
        slope = float(g @ direction)
        if slope >= 0:  # not a descent direction: restart from the gradient
            hist.clear()
            direction, slope = -g / max(1.0, float(np.abs(g).max())), -float(g @ g) / max(1.0, float(np.abs(g).max()))
        t = 1.0
        while True:
            x_new = x + t * direction
            f_new, g_new = fg(x_new)
            if f_new <= f + 1e-4 * t * slope or t < 1e-8:
                break
            t *= 0.5
        s, yv = x_new - x, g_new - g
        sy = float(s @ yv)
        if sy > 1e-12:
            hist.append((s, yv, 1.0 / sy))
            if len(hist) > m:
                hist.pop(0)
        done = abs(f - f_new) <= ftol * max(1.0, abs(f)) or float(np.abs(g_new).max()) < gtol
        x, f, g = x_new, f_new, g_new
        if done:
            break
    return x


def _proba(W, b, X):
    return softmax(X @ W.T + b)


class Standardiser:
    def __init__(self, X: np.ndarray):
        self.mean = X.mean(axis=0)
        self.std = X.std(axis=0) + 1e-3

    def __call__(self, X):
        return (X - self.mean) / self.std

    def fold(self, W, b):
        """Head on standardised inputs -> the same head on raw embeddings."""
        W2 = W / self.std
        return W2.astype(np.float32), (b - W2 @ self.mean).astype(np.float32)


def _rows(emb: np.ndarray, idx: np.ndarray, y: np.ndarray, views: list[int]):
    """Training rows: every listed view of every image in idx."""
    X = emb[idx][:, views].reshape(-1, emb.shape[-1])
    return X, np.repeat(y[idx], len(views))


def _score(W, b, std: Standardiser, emb, idx, y, tta_views):
    p = np.mean([_proba(W, b, std(emb[idx, v])) for v in tta_views], axis=0)
    acc = float((p.argmax(1) == y[idx]).mean())
    nll = float(-np.log(np.clip(p[np.arange(len(idx)), y[idx]], 1e-12, None)).mean())
    return acc, nll


def select_head(emb: np.ndarray, y: np.ndarray, n_classes: int, train_idx, val_idx, variants, aug_views,
                seed: int = 0, max_iter: int = DEFAULT_HEAD_ITERS):
    """Pick (l2, test views) on val (or 3-fold CV on train). Returns dict with the choice and figures."""
    vi = {v: i for i, v in enumerate(variants)}
    aug = [vi[v] for v in aug_views]
    tta_options = [t for t in TTA_CHOICES if all(v in vi for v in t)]
    counts = np.bincount(y[val_idx], minlength=n_classes) if len(val_idx) else np.zeros(n_classes, int)
    use_val = len(val_idx) >= max(10, 2 * n_classes) and (counts > 0).sum() >= 2
    if use_val:
        folds = [(np.asarray(train_idx), np.asarray(val_idx))]
        method = "validation split"
    else:  # 3-fold CV on train, stratified, grouped by image (all variants of one image together)
        rng = np.random.default_rng(seed)
        tr = np.concatenate([np.asarray(train_idx, int), np.asarray(val_idx, int)])
        fold_of = np.zeros(len(tr), int)
        for c in range(n_classes):
            where = np.flatnonzero(y[tr] == c)
            rng.shuffle(where)
            fold_of[where] = np.arange(len(where)) % 3
        k = min(3, max(2, int(min(np.bincount(y[tr], minlength=n_classes)[np.bincount(y[tr]) > 0]))))
        fold_of %= k
        folds = [(tr[fold_of != f], tr[fold_of == f]) for f in range(k)]
        method = f"{k}-fold cross-validation on train"
    results = {(l2, tta): [0.0, 0.0] for l2 in L2_GRID for tta in tta_options}
    for tr, va in folds:
        X, yy = _rows(emb, tr, y, aug)
        std = Standardiser(X)
        Xs = std(X)
        init = None
        for l2 in sorted(L2_GRID, reverse=True):  # warm-started regularisation path
            W, b = fit_softmax(Xs, yy, n_classes, l2, max_iter, init=init)
            init = (W, b)
            for tta in tta_options:
                acc, nll = _score(W, b, std, emb, va, y, [vi[v] for v in tta])
                results[(l2, tta)][0] += acc * len(va)
                results[(l2, tta)][1] += nll * len(va)
    total = sum(len(va) for _, va in folds)
    # best accuracy, then lowest log-loss, then fewer test views (cheaper), then stronger l2
    best = min(results, key=lambda k: (-round(results[k][0] / total, 6), len(k[1]),
                                       round(results[k][1] / total, 4), -k[0]))
    return {
        "l2": best[0], "test_views": list(best[1]), "method": method,
        "accuracy": results[best][0] / total,
        "grid": {f"{l2:g}|{'+'.join(t)}": round(v[0] / total, 4) for (l2, t), v in results.items()},
    }


# -- the whole run ------------------------------------------------------------------------
def train_dataset(data, out, *, backbone: str = backbones.DEFAULT, augment: str = DEFAULT_AUGMENT,
                  epochs: int | None = None, fine_tune: bool = False, val_split: float = DEFAULT_VAL_FRACTION,
                  seed: int = 0, orient: bool = True, cache_dir=None, progress: bool = True,
                  workers: int | None = None) -> dict:
    """Train a model folder at `out` from DATA; returns the contracts' train JSON (plus extra keys)."""
    t0 = time.perf_counter()
    if augment not in AUGMENT_VARIANTS:
        raise UprightError(f"unknown --augment '{augment}' (none, flip, rotate, d4)")
    if not 0.0 <= val_split < 1.0:
        raise UprightError(f"--val-split must be in [0, 1), got {val_split}")
    if epochs is not None and epochs < 1:
        raise UprightError(f"--epochs must be at least 1, got {epochs}")
    spec = backbones.spec(backbone)
    weights_hash = backbones.weights_sha256(backbone)
    ds = scan(data, val_split)
    check_dataset(ds)
    labels = ds.labels
    records = [r for r in ds.records if r.split in ("train", "val", "test")]
    aug_views = AUGMENT_VARIANTS[augment]
    variants = tuple(dict.fromkeys(aug_views + ("id", "flip")))
    emb = embed_paths([r.path for r in records], backbone=backbone, variants=variants, orient=orient,
                      cache_dir=cache_dir, progress=progress, hashes=[r.sha256 for r in records],
                      workers=workers, description="embedding")
    unreadable = [{"path": str(records[i].path), "reason": why} for i, why in sorted(emb.errors.items())]
    skipped = [{"path": p, "reason": why} for p, why in ds.skipped]
    ok = emb.ok
    if not ok.any():
        raise UprightError(f"{ds.root}: no readable images ({len(records)} files, all unreadable)")
    y = np.array([labels.index(r.label) for r in records])
    is_train = np.array([r.split == "train" for r in records]) & ok
    is_val = np.array([r.split != "train" for r in records]) & ok
    train_counts = np.bincount(y[is_train], minlength=len(labels))
    missing = [labels[c] for c in range(len(labels)) if train_counts[c] == 0 and not (is_val & (y == c)).any()]
    if missing:
        raise UprightError(f"class '{missing[0]}' has no readable images")
    train_idx, val_idx = np.flatnonzero(is_train), np.flatnonzero(is_val)
    max_iter = DEFAULT_HEAD_ITERS if (epochs is None or fine_tune) else int(epochs)
    X3 = emb.vectors
    choice = select_head(X3, y, len(labels), train_idx, val_idx, variants, aug_views, seed, max_iter)
    vi = {v: i for i, v in enumerate(variants)}
    aug = [vi[v] for v in aug_views]
    val_acc = choice["accuracy"]
    # final fit on every readable labelled image (train + val) with the chosen l2
    all_idx = np.flatnonzero(ok)
    X, yy = _rows(X3, all_idx, y, aug)
    std = Standardiser(X)
    W, b = fit_softmax(std(X), yy, len(labels), choice["l2"], max_iter)
    W, b = std.fold(W, b)
    meta_extra: dict = {}
    backbone_state = None
    if fine_tune:
        ft = run_fine_tune([str(records[i].path) for i in train_idx], y[train_idx],
                           [str(records[i].path) for i in val_idx], y[val_idx], labels, backbone, (W, b),
                           aug_views, epochs=epochs or 3, seed=seed, orient=orient, progress=progress)
        W, b, backbone_state = ft["weight"], ft["bias"], ft["state"]
        meta_extra["fine_tune"] = ft["info"]
        meta_extra["backbone_sha256"] = backbones.state_dict_sha256(backbone_state)
        choice["test_views"] = ["id"]
        if ft["info"].get("val_accuracy") is not None:
            val_acc = ft["info"]["val_accuracy"]
    seconds = time.perf_counter() - t0
    n_train, n_val = int(len(train_idx)), int(len(val_idx))
    meta = {
        "labels": labels,
        "backbone": backbone,
        "backbone_parts": list(spec.components),
        "weights_sha256": weights_hash,
        "embedding_dim": spec.dim,
        "input_size": spec.size,
        "preprocessing": describe_preprocessing(backbone),
        "orientation_policy": "upright" if orient else "stored",
        "augment": augment,
        "train_variants": list(aug_views),
        "test_views": choice["test_views"],
        "fine_tuned": bool(fine_tune),
        "head": {"type": "linear-softmax", "l2": choice["l2"], "selected_by": choice["method"],
                 "solver": "L-BFGS", "max_iter": max_iter, "final_fit": "train+val",
                 "applies_to": "raw embedding (standardisation folded into weight and bias)"},
        "onnx_input": {"name": "input", "shape": ["batch", 3, spec.size, spec.size], "dtype": "float32",
                       "layout": "NCHW RGB", "scaling": spec.scaling,
                       "output": "probabilities [batch, n_labels], averaged over test_views"},
        "training": {"val_accuracy": round(val_acc, 6), "n_train": n_train, "n_val": n_val,
                     "classes": {lab: int(((y == i) & ok).sum()) for i, lab in enumerate(labels)},
                     "seed": seed, "seconds": round(seconds, 3), "l2_grid": choice["grid"],
                     "unreadable": len(unreadable)},
        **meta_extra,
    }
    save_model(out, meta, W, b, backbone_state)
    seconds = time.perf_counter() - t0
    return {
        "model": str(Path(out)), "labels": labels, "val_accuracy": round(float(val_acc), 6),
        "n_train": n_train, "n_val": n_val, "seconds": round(seconds, 3), "backbone": backbone,
        "augment": augment,
        "val_method": choice["method"], "l2": choice["l2"], "test_views": choice["test_views"],
        "classes": meta["training"]["classes"], "orientation_policy": meta["orientation_policy"],
        "fine_tuned": bool(fine_tune), "unreadable": unreadable, "skipped": skipped,
        "cache_hits": int(emb.hits), "decoded": int(emb.decoded),
    }


# -- optional end-to-end fine-tuning -------------------------------------------------------
def _load_crops(paths, backbone, orient, progress, description):
    from .console import progress as progress_bar
    from .features import CHUNK, _decoded_stream, default_workers

    spec = backbones.spec(backbone)
    crops = np.zeros((len(paths), spec.size, spec.size, 3), np.uint8)
    ok = np.zeros(len(paths), bool)
    jobs = [([(i, paths[i]) for i in range(j, min(j + CHUNK, len(paths)))], backbone, orient)
            for j in range(0, len(paths), CHUNK)]
    with progress_bar(len(paths), description, enabled=progress) as advance:
        for i, crop, _err in _decoded_stream(jobs, default_workers(len(paths))):
            if crop is not None:
                crops[i], ok[i] = crop, True
            advance(1)
    return crops[ok], ok


def run_fine_tune(train_paths, y_train, val_paths, y_val, labels, backbone, head, aug_views, *, epochs=3,
                  seed=0, orient=True, progress=True, batch_size=16, lr=1e-4):
    """Fine-tune backbone + head end to end (AdamW, BatchNorm statistics frozen, one random
    training variant per image per epoch, from the decoded crops held in memory). Uses CUDA
    when present. Returns the new head (on raw embeddings), the backbone state and figures."""
    import torch

    from .orientation import variant_array
    from .preprocess import to_input

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
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
    opt = torch.optim.AdamW([{"params": net.parameters(), "lr": lr}, {"params": lin.parameters(), "lr": lr * 10}],
                            weight_decay=1e-4)
    steps = epochs * math.ceil(len(crops) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[lr, lr * 10], total_steps=max(1, steps))
    from .console import progress as progress_bar

    with progress_bar(steps, "fine-tuning", enabled=progress) as advance:
        for _ in range(epochs):
            net.train()
            for m in net.modules():  # small batches: keep the ImageNet BatchNorm statistics
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
            order = rng.permutation(len(crops))
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                views = rng.choice(len(aug_views), len(idx))
                xb = np.stack([variant_array(crops[i], aug_views[v]) for i, v in zip(idx, views)])
                xb = to_input(xb, backbone)
                xb = torch.from_numpy(xb).to(device)
                loss = torch.nn.functional.cross_entropy(lin(net(xb)), torch.from_numpy(ytr[idx]).to(device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                advance(1)
    net.eval()
    val_acc = None
    if len(vcrops):
        preds = []
        with torch.no_grad():
            for s in range(0, len(vcrops), 32):
                xb = torch.from_numpy(to_input(vcrops[s:s + 32], backbone)).to(device)
                preds.append(lin(net(xb)).argmax(1).cpu().numpy())
        val_acc = float((np.concatenate(preds) == yva).mean())
    state = {k: v.detach().cpu().contiguous() for k, v in net.net.state_dict().items()}
    info = {"epochs": epochs, "optimizer": "AdamW + one-cycle", "lr_backbone": lr, "lr_head": lr * 10,
            "batch_size": batch_size, "device": device, "batchnorm": "frozen statistics",
            "val_accuracy": val_acc, "seconds": round(time.perf_counter() - t0, 2)}
    return {"weight": lin.weight.detach().cpu().numpy().astype(np.float32),
            "bias": lin.bias.detach().cpu().numpy().astype(np.float32), "state": state, "info": info}


def print_summary(result: dict) -> None:
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
    t.add_row("val accuracy", f"{result['val_accuracy']:.3f} ({result['val_method']})")
    t.add_row("backbone", f"{result['backbone']}{' (fine-tuned)' if result['fine_tuned'] else ''}")
    t.add_row("augment / test views", f"{result['augment']} / {'+'.join(result['test_views'])}")
    t.add_row("head l2", f"{result['l2']:g}")
    t.add_row("cache hits / decoded", f"{result['cache_hits']} / {result['decoded']}")
    if result.get("unreadable"):
        t.add_row("unreadable (skipped)", str(len(result["unreadable"])))
    t.add_row("time", f"{result['seconds']:.1f} s")
    out.print(t)
