"""Accuracy of `upright train --preset fast` vs `--preset accurate`, by 5-fold cross-validation.

    .venv/bin/python bench/accuracy.py                  # flowers-500 (../shared/data), 5 folds
    .venv/bin/python bench/accuracy.py --quick          # tiny generated set: a smoke test
    .venv/bin/python bench/accuracy.py --json out.json  # also the figures as JSON
    .venv/bin/python bench/accuracy.py --seeds 3        # also 3 x 5-fold CV (other fold seeds)

Folds are stratified by class and seeded. In each fold, the held-out fifth is never used for
any choice: each preset picks what it picks (the head's l2 and test views for fast; the head
init, the best epoch and early stopping for accurate, on a 20% val split of the training
four-fifths, as `upright train` does with a plain folder-per-class DATA) on the training
photos only, and is scored once on the held-out fifth.

Reported per preset: mean and spread (standard deviation, min, max) of the 5 fold
accuracies; for accurate also the frozen-feature baseline on the same cached views (a linear
head on the stock Lite0+Lite2 features of the same 10 training crops, centre + mirror at
test); the rotation check (accuracy on the held-out photos of fold 1 turned 90/180/270, the
model's test views composed with each turn, as `upright eval` does); the time of each step.
Train time and peak RSS of the real command are measured separately with
`/usr/bin/time -v upright train DATA -o M --preset accurate` (see the table in docs/accuracy.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "flowers-500"
ROT = {"90": "r90", "180": "r180", "270": "r270"}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def folds_of(y: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(y), int)
    for c in np.unique(y):
        where = np.flatnonzero(y == c)
        rng.shuffle(where)
        fold[where] = np.arange(len(where)) % k
    return fold


def inner_split(idx: np.ndarray, y: np.ndarray, frac: float = 0.2, seed: int = 1):
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(y[idx]):
        where = idx[y[idx] == c]
        rng.shuffle(where)
        val.extend(where[: max(1, int(round(frac * len(where))))])
    val = np.array(sorted(val))
    return np.setdiff1d(idx, val), val


def make_tiny(root: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures import make_dataset

    return make_dataset(root / "tiny", 10, ("cat", "dog", "owl"))


def spread(accs) -> dict:
    a = np.asarray(accs, float)
    return {"mean": round(float(a.mean()), 4), "std": round(float(a.std()), 4), "min": round(float(a.min()), 4),
            "max": round(float(a.max()), 4), "folds": [round(float(x), 4) for x in a]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=1,
                    help="repeat the CV with this many fold seeds (0, 1, ...): the spread of a 100-photo fold is wide")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--last-blocks", action="store_true",
                    help="also the recipe not shipped: the last blocks fine-tuned on cached activations")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--store", type=Path, default=None,
                    help="keep the cached activations here (.npy) and reuse them on the next run (a sweep)")
    ap.add_argument("--lr", type=float, default=None, help="--last-blocks: peak lr of the tuned blocks")
    ap.add_argument("--head-lr-factor", type=float, default=None, help="--last-blocks: the head's lr / the blocks'")
    args = ap.parse_args(argv)

    from upright import presets as accurate
    from upright.pipeline.scan import scan
    from upright.pipeline.embed import embed_paths
    from upright.head import SoftmaxRegression, _rows, select_head
    from upright.numerics import softmax
    from upright.views import compose

    tmp = tempfile.TemporaryDirectory()
    data = make_tiny(Path(tmp.name)) if args.quick else args.data
    if not data.is_dir():
        print(f"no data at {data}")
        return 2
    epochs = args.epochs or (2 if args.quick else 8)
    print(machine("torch", "onnxruntime"))
    ds = scan(data, 0.0, read=("train", "val"))
    recs = ds.records
    labels = ds.labels
    y = np.array([labels.index(r.label) for r in recs])
    paths = [str(r.path) for r in recs]
    fold = folds_of(y, args.folds)
    rot_idx = np.flatnonzero(fold == 0)  # the rotation check: fold 1's held-out photos
    out: dict = {"data": str(data), "photos": len(recs), "classes": len(labels), "folds": args.folds,
                 "machine": machine("torch", "onnxruntime"), "timing_s": {}}
    print(f"{len(recs)} photos, {len(labels)} classes, {args.folds}-fold CV")

    def run_preset(name, emb, rot_emb, views, rv, tta_options=None, fold=fold, quiet=False):
        """Per fold: l2 and test views chosen on a 20% val split of the training four-fifths (as
        `upright train` does on a plain folder-per-class DATA; accurate's test views are fixed, its
        10 crops), fitted on all of them, scored once. -> the fold accuracies."""
        accs, rot = [], {}
        vi = {v: i for i, v in enumerate(views)}
        for f in range(args.folds):
            tr, te = np.flatnonzero((fold != f) & emb.ok), np.flatnonzero((fold == f) & emb.ok)
            fit_idx, val_idx = inner_split(tr, y)
            ch = select_head(emb.vectors, y, len(labels), fit_idx, val_idx, views, views, seed=0,
                             tta_options=tta_options)
            X, yy = _rows(emb.vectors, tr, y, list(range(len(views))))
            h = SoftmaxRegression(l2=ch.l2).fit(X, yy)
            p = np.mean([softmax(emb.vectors[te, vi[v]] @ h.coef_.T + h.intercept_) for v in ch.test_views], axis=0)
            accs.append(float((p.argmax(1) == y[te]).mean()))
            if f == 0 and rot_emb is not None:
                for deg, r in ROT.items():
                    cols = [rv.index(compose(r, v)) for v in ch.test_views]
                    p = np.mean([softmax(rot_emb.vectors[:, c] @ h.coef_.T + h.intercept_) for c in cols], axis=0)
                    rot[deg] = round(float((p.argmax(1) == y[rot_idx]).mean()), 4)
                rot["0"] = round(accs[0], 4)
            if not quiet:
                print(f"{name} fold {f + 1}: {accs[-1]:.4f}  (l2 {ch.l2:g}, test views "
                      f"{'+'.join(ch.test_views)})", flush=True)
        if rot_emb is not None:
            out[name] = {**spread(accs), "rotation_fold1": {k: rot[k] for k in ("0", "90", "180", "270")}}
            print(f"{name}: {out[name]}", flush=True)
        return accs

    hashes = [r.sha256 for r in recs]
    rv = tuple(dict.fromkeys(compose(r, v) for r in ROT.values() for v in ("id", "flip")))
    # -- fast: today's default (Lite0 224 px, augment flip) -----------------------------------
    t = time.perf_counter()
    fv = ("id", "flip")
    emb = embed_paths(paths, variants=fv, progress=False, hashes=hashes)
    remb = embed_paths([paths[i] for i in rot_idx], variants=rv, progress=False, hashes=[hashes[i] for i in rot_idx])
    out["timing_s"]["fast_embedding"] = round(time.perf_counter() - t, 1)
    run_preset("fast", emb, remb, fv, rv)
    # -- accurate: Lite0+Lite2, 10 crops (the product's own embedding of them) -----------------
    t = time.perf_counter()
    emb = embed_paths(paths, backbone=accurate.BACKBONE, variants=accurate.VIEW_NAMES, progress=False, hashes=hashes)
    out["timing_s"]["accurate_embedding"] = round(time.perf_counter() - t, 1)
    arv = tuple(dict.fromkeys(compose(r, v) for r in ROT.values() for v in accurate.TEST_VIEWS))
    remb = embed_paths([paths[i] for i in rot_idx], backbone=accurate.BACKBONE, variants=arv, progress=False,
                       hashes=[hashes[i] for i in rot_idx])
    run_preset("accurate", emb, remb, accurate.VIEW_NAMES, arv, tta_options=[accurate.TEST_VIEWS])
    if args.seeds > 1:  # repeated CV: the same two presets on other fold seeds (no rotation check)
        fast_emb = embed_paths(paths, variants=fv, progress=False, hashes=hashes)
        rep = {"fast": [], "accurate": []}
        for seed in range(args.seeds):
            sf = folds_of(y, args.folds, seed)
            rep["fast"] += run_preset("fast", fast_emb, None, fv, None, fold=sf, quiet=True)
            rep["accurate"] += run_preset("accurate", emb, None, accurate.VIEW_NAMES, None,
                                          tta_options=[accurate.TEST_VIEWS], fold=sf, quiet=True)
        for name, accs in rep.items():
            out[f"{name}_repeated"] = {**spread(accs), "seeds": args.seeds,
                                       "seed_means": [round(float(np.mean(accs[i:i + args.folds])), 4)
                                                      for i in range(0, len(accs), args.folds)]}
            print(f"{name}, {args.seeds} x {args.folds}-fold CV: {out[f'{name}_repeated']}", flush=True)
    # where the gain comes from (not presets): the pair on the centre crop + mirror only (trained
    # and tested on them), and the accurate head tested on the centre crop + mirror alone (what
    # the exported ONNX graph averages: export.graph_views)
    pair, centre_test = [], []
    for f in range(args.folds):
        tr, te = np.flatnonzero((fold != f) & emb.ok), np.flatnonzero((fold == f) & emb.ok)
        fit_idx, val_idx = inner_split(tr, y)
        for cols, accs in (([0, 5], pair), (list(range(10)), centre_test)):
            views = tuple(accurate.VIEW_NAMES[c] for c in cols)
            ch = select_head(emb.vectors[:, cols], y, len(labels), fit_idx, val_idx, views, views, seed=0,
                             tta_options=[("id", "flip")])
            X, yy = _rows(emb.vectors[:, cols], tr, y, list(range(len(cols))))
            h = SoftmaxRegression(l2=ch.l2).fit(X, yy)
            p = np.mean([softmax(emb.vectors[te, c] @ h.coef_.T + h.intercept_) for c in (0, 5)], axis=0)
            accs.append(float((p.argmax(1) == y[te]).mean()))
    out["pair_centre_and_mirror"], out["accurate_tested_on_centre_and_mirror"] = spread(pair), spread(centre_test)
    print(f"pair on centre + mirror only: {out['pair_centre_and_mirror']}")
    print(f"accurate head tested on centre + mirror only (the exported graph): "
          f"{out['accurate_tested_on_centre_and_mirror']}", flush=True)
    out["peak_rss_mb"] = round(rss_mb(), 0)
    if args.last_blocks:
        last_blocks(args, out, paths, y, fold, rot_idx, labels, epochs)

    print(json.dumps({k: out[k] for k in ("fast", "accurate", "last_blocks_frozen", "last_blocks_tuned")
                      if k in out}))
    print(f"timing (s): {out['timing_s']}; peak RSS {out['peak_rss_mb']:.0f} MB")
    print("| preset | 5-fold CV mean | std | min | max | 0 / 90 / 180 / 270 (fold 1) |")
    print("|---|---|---|---|---|---|")
    for k in ("fast", "accurate", "fast_repeated", "accurate_repeated", "pair_centre_and_mirror",
              "accurate_tested_on_centre_and_mirror", "last_blocks_frozen",
              "last_blocks_tuned"):
        if k in out:
            r = out[k]
            rr = r.get("rotation_fold1")
            rtxt = " / ".join(f"{rr[d]:.2f}" for d in ("0", "90", "180", "270")) if rr else "-"
            print(f"| {k} | {r['mean']:.4f} | {r['std']:.4f} | {r['min']:.4f} | {r['max']:.4f} | {rtxt} |")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


def last_blocks(args, out, paths, y, fold, rot_idx, labels, epochs) -> None:
    """The last block of each network fine-tuned on cached activations, vs the frozen features
    of the same cached views (both: head l2 on the inner val split, fitted on its train part)."""
    import torch

    import _last_blocks as accurate

    TEST_VIEWS = ("id", "flip")  # the last-block recipe tests on the centre crop and its mirror

    if args.head_lr_factor is not None:
        accurate.HEAD_LR_FACTOR = args.head_lr_factor
    from upright.head import SoftmaxRegression, _rows, select_head
    from upright.numerics import softmax
    from upright.views import compose


    t = time.perf_counter()
    store = args.store / f"acts-{len(paths)}" if args.store else None
    if store is not None and (store / "ok.npy").is_file():  # a sweep over settings reuses the cached views
        acts = [np.load(store / f"acts{k}.npy") for k in range(2)]
        racts = [np.load(store / f"racts{k}.npy") for k in range(2)]
        ok = np.load(store / "ok.npy")
    else:
        acts, ok, errors = accurate.cache_activations(paths, progress=False)
    out["timing_s"]["accurate_cache_train_views"] = round(time.perf_counter() - t, 1)
    out["cache_mb"] = round(sum(a.nbytes for a in acts) / 2**20, 1)
    print(f"cached {acts[0].shape[1]} views x {len(paths)} photos in {out['timing_s']['accurate_cache_train_views']} s, "
          f"{out['cache_mb']} MB, rss {rss_mb():.0f} MB", flush=True)
    t = time.perf_counter()
    rviews = tuple(dict.fromkeys(compose(r, v) for r in ROT.values() for v in TEST_VIEWS))
    if store is None or not (store / "ok.npy").is_file():
        racts, _, _ = accurate.cache_activations([paths[i] for i in rot_idx], views=rviews, progress=False)
    if store is not None and not (store / "ok.npy").is_file():
        store.mkdir(parents=True, exist_ok=True)
        for k in range(2):
            np.save(store / f"acts{k}.npy", acts[k])
            np.save(store / f"racts{k}.npy", racts[k])
        np.save(store / "ok.npy", ok)
    out["timing_s"]["accurate_cache_rotated"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    nets = accurate._nets()
    cuts = {p: accurate.cut_index(n) for p, n in nets.items()}
    stock = accurate._top_module(nets, cuts, len(labels))
    all_idx = np.arange(len(paths))
    nv = acts[0].shape[1]
    feats = accurate.stock_features(stock, acts, all_idx, list(range(nv)))
    out["timing_s"]["accurate_stock_features"] = round(time.perf_counter() - t, 1)
    names = ("id", "c1", "c2", "c3", "c4", "flip", "f1", "f2", "f3", "f4")
    test_cols = [names.index(v) for v in TEST_VIEWS]
    frozen, tuned, rot, per_fold_s, best_epochs = [], [], {}, [], []
    for f in range(args.folds):
        tf = time.perf_counter()
        tr, te = np.flatnonzero((fold != f) & ok), np.flatnonzero((fold == f) & ok)
        fit_idx, val_idx = inner_split(tr, y)
        # frozen baseline and head init: l2 chosen on the training photos only (3-fold inside)
        ch = select_head(feats, y, len(labels), fit_idx, val_idx, names, names, seed=0)
        X, yy = _rows(feats, fit_idx, y, list(range(nv)))
        h = SoftmaxRegression(l2=ch.l2).fit(X, yy)
        p = np.mean([softmax(feats[te, c] @ h.coef_.T + h.intercept_) for c in test_cols], axis=0)
        frozen.append(float((p.argmax(1) == y[te]).mean()))
        torch.manual_seed(f)
        top, run = accurate.fit_top(acts, y, fit_idx, val_idx, len(labels), (h.coef_, h.intercept_),
                                    epochs=epochs, seed=f, progress=False, test_views=test_cols,
                                    lr=args.lr or accurate.LR_BLOCKS)
        best_epochs.append(run.best_epoch)
        with torch.no_grad():
            p = sum(torch.softmax(top([torch.from_numpy(a[te, c]).float() for a in acts]), 1) for c in test_cols)
        tuned.append(float((p.argmax(1) == torch.from_numpy(y[te])).float().mean()))
        if f == 0:
            pos = {i: j for j, i in enumerate(rot_idx)}
            rows = np.array([pos[i] for i in te])
            for deg, r in ROT.items():
                cols = [rviews.index(compose(r, v)) for v in TEST_VIEWS]
                with torch.no_grad():
                    p = sum(torch.softmax(top([torch.from_numpy(a[rows, c]).float() for a in racts]), 1) for c in cols)
                rot[deg] = round(float((p.argmax(1) == torch.from_numpy(y[te])).float().mean()), 4)
            rot["0"] = round(tuned[0], 4)
        per_fold_s.append(round(time.perf_counter() - tf, 1))
        print(f"accurate fold {f + 1}: frozen {frozen[-1]:.4f}  tuned {tuned[-1]:.4f}  best epoch {run.best_epoch}/"
              f"{len(run.history)}  {per_fold_s[-1]} s  rss {rss_mb():.0f} MB  "
              f"val {[h_['val_accuracy'] for h_ in run.history]}", flush=True)
    out["last_blocks_frozen"] = spread(frozen)
    out["last_blocks_tuned"] = {**spread(tuned), "rotation_fold1": {k: rot[k] for k in ("0", "90", "180", "270")},
                                "best_epochs": best_epochs, "epochs": epochs, "tuned_blocks": accurate.TUNED_BLOCKS}
    out["timing_s"]["last_blocks_per_fold"] = per_fold_s


if __name__ == "__main__":
    raise SystemExit(main())
