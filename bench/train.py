"""Benchmark `upright train` against the loader + forward a user would write, same weights, same head.

    .venv/bin/python bench/train.py                 # flowers-500 (../shared/data), cold + warm + baseline
    .venv/bin/python bench/train.py --quick         # tiny generated dataset: a smoke test
    .venv/bin/python bench/train.py --folds 5       # + mean val accuracy over 5 hash folds
    .venv/bin/python bench/train.py --backbone efficientnet-lite0+lite2   # the accurate pair

Backbone: upright's default (efficientnet-lite0) unless --backbone says otherwise; the
baseline uses the same one.
Baseline (what `ImageFolder` + a pretrained net gives): Pillow `Image.open().convert("RGB")`
with NO EXIF handling (that is the point), full decode, bicubic short side to the backbone's
resize (256 for Lite0, 297 for Lite0+Lite2), centre crop to its input size (224 / 260),
the spec's (x - mean) / std, torch eager forward at batch 32 for the same variants, then upright's own head
selection on the same hash split. This file is in bench/, outside the one-door rule.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "flowers-500"


def _rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0


def make_tiny(root: Path, classes=("red", "blue"), n=6) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for ci, lab in enumerate(classes):
        (root / lab).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            base = np.zeros((120, 160, 3), np.float32)
            base[..., ci % 3] = 200
            arr = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / lab / f"{lab}{i}.jpg", quality=90)
    return root


# -- children (each measured in its own process for a clean peak RSS) -----------------------
def child_upright(data: str, out: str, cache: str, augment: str, backbone: str) -> dict:
    from upright.train import train_dataset

    t = time.perf_counter()
    r = train_dataset(data, out, augment=augment, cache_dir=cache, progress=False, backbone=backbone)
    return {"seconds": time.perf_counter() - t, "val_accuracy": r["val_accuracy"], "n_train": r["n_train"],
            "n_val": r["n_val"], "decoded": r["decoded"], "cache_hits": r["cache_hits"], "l2": r["l2"],
            "rss_mb": _rss_mb(), "children_rss_mb": _rss_mb(resource.RUSAGE_CHILDREN)}


def child_baseline(data: str, augment: str, backbone: str) -> dict:
    import torch
    from PIL import Image

    from upright import backbones
    from upright.pipeline.scan import scan
    from upright.presets import AUGMENT_VARIANTS
    from upright.head import select_head
    from upright.orientation import variant_array

    t = time.perf_counter()
    ds = scan(data, 0.2)
    variants = tuple(dict.fromkeys(AUGMENT_VARIANTS[augment] + ("id", "flip")))
    spec = backbones.spec(backbone)
    net = backbones.torch_module(backbone)
    torch.set_num_threads(backbones.cpu_count())
    emb = np.zeros((len(ds.records), len(variants), spec.dim), np.float32)
    S, R = spec.size, spec.resize
    batch, where = [], []

    def run():
        with torch.no_grad():
            x = (np.stack(batch).astype(np.float32) - spec.mean) / spec.std
            x = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
            e = net(x).numpy()
        for (i, j), v in zip(where, e):
            emb[i, j] = v
        batch.clear(), where.clear()

    for i, r in enumerate(ds.records):
        im = Image.open(r.path).convert("RGB")  # ImageFolder's pil_loader: no exif_transpose
        w, h = im.size
        s = R / min(w, h)
        im = im.resize((max(S, round(w * s)), max(S, round(h * s))), Image.Resampling.BICUBIC)
        w, h = im.size
        a = np.asarray(im)[(h - S) // 2:(h - S) // 2 + S, (w - S) // 2:(w - S) // 2 + S]
        for j, v in enumerate(variants):
            batch.append(np.ascontiguousarray(variant_array(a, v)))
            where.append((i, j))
            if len(batch) == 32:
                run()
    if batch:
        run()
    labels = ds.labels
    y = np.array([labels.index(r.label) for r in ds.records])
    tr = np.array([i for i, r in enumerate(ds.records) if r.split == "train"])
    va = np.array([i for i, r in enumerate(ds.records) if r.split != "train"])
    choice = select_head(emb, y, len(labels), tr, va, variants, AUGMENT_VARIANTS[augment])
    return {"seconds": time.perf_counter() - t, "val_accuracy": choice["accuracy"], "rss_mb": _rss_mb()}


def child_folds(data: str, cache: str, augment: str, backbone: str, folds: int) -> dict:
    """Val accuracy on `folds` disjoint hash folds (embeddings from the warm cache)."""
    from upright.pipeline.scan import scan
    from upright.pipeline.embed import embed_paths
    from upright.presets import AUGMENT_VARIANTS
    from upright.head import select_head

    ds = scan(data, 0.2)
    variants = tuple(dict.fromkeys(AUGMENT_VARIANTS[augment] + ("id", "flip")))
    emb = embed_paths([r.path for r in ds.records], backbone=backbone, variants=variants, cache_dir=cache,
                      progress=False, hashes=[r.sha256 for r in ds.records])
    y = np.array([ds.labels.index(r.label) for r in ds.records])
    fold = np.array([int(r.sha256[12:24], 16) % folds for r in ds.records])
    accs = []
    for k in range(folds):
        tr, va = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        accs.append(select_head(emb.vectors, y, len(ds.labels), tr, va, variants, AUGMENT_VARIANTS[augment])["accuracy"])
    return {"folds": accs, "mean": float(np.mean(accs))}


def _child(kind: str, *args) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_child", kind, *map(str, args)],
                       capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"bench child {kind} failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--quick", action="store_true", help="tiny generated dataset (smoke test)")
    ap.add_argument("--augment", default="flip", choices=["none", "flip", "rotate", "d4"])
    ap.add_argument("--backbone", default=None, help="backbone (default: upright's default)")
    ap.add_argument("--folds", type=int, default=0, help="also report mean val accuracy over N hash folds")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--_child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._child:
        kind, *rest = a._child
        fn = {"upright": child_upright, "baseline": child_baseline, "folds": child_folds}[kind]
        if kind == "folds":
            rest[-1] = int(rest[-1])
        print(json.dumps(fn(*rest)))
        return {}
    with tempfile.TemporaryDirectory(prefix="upright-bench-") as tmp:
        tmp = Path(tmp)
        data = a.data
        if a.quick:
            data = make_tiny(tmp / "data")
        elif not data.is_dir():
            print(f"SKIP: benchmark data not found at {data} (expected ../shared/data/flowers-500)")
            return {"skipped": str(data)}
        cache = tmp / "cache"  # cold: a fresh, empty embedding cache (ONNX export included)
        from upright.backbones import DEFAULT

        bb = a.backbone or DEFAULT
        res = {"machine": machine("torch", "onnxruntime"), "data": str(data), "augment": a.augment, "backbone": bb}
        res["cold"] = _child("upright", data, tmp / "m1", cache, a.augment, bb)
        res["warm"] = _child("upright", data, tmp / "m2", cache, a.augment, bb)
        if not a.no_baseline:
            res["baseline"] = _child("baseline", data, a.augment, bb)
        if a.folds:
            res["folds"] = _child("folds", data, cache, a.augment, bb, a.folds)
    if a.json:
        print(json.dumps(res))
        return res
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"upright train vs baseline on {res['data']} ({bb}, augment {a.augment})")
    for col in ("run", "seconds", "val acc", "peak RSS MB", "ratio vs baseline"):
        t.add_column(col)
    base = res.get("baseline")
    for name in ("cold", "warm", "baseline"):
        r = res.get(name)
        if not r:
            continue
        ratio = f"{base['seconds'] / r['seconds']:.1f}x faster" if base and name != "baseline" else ""
        rss = f"{r['rss_mb']:.0f}" + (f" (+workers {r['children_rss_mb']:.0f})" if r.get("children_rss_mb") else "")
        t.add_row(name, f"{r['seconds']:.1f}", f"{r['val_accuracy']:.3f}", rss, ratio)
    con = Console()
    con.print(res["machine"])
    con.print(t)
    if "folds" in res:
        con.print(f"val accuracy over {a.folds} hash folds: "
                  f"{', '.join(f'{x:.3f}' for x in res['folds']['folds'])}; mean {res['folds']['mean']:.3f}")
    return res


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
