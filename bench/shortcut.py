"""Shortcut benchmark: what the EXIF-orientation shortcut costs, and what upright and d4 buy.

From any folder-per-class dataset (default ../shared/data/flowers-500):
  * split every class by a stable hash of the file bytes into train (70%) and test (30%);
  * training split, "shot" by phones: the chosen classes (default: the first half of the
    classes, alphabetically) are stored sideways, the first with EXIF Orientation 6, the
    next with 8, and so on (pixels rotated + tag, as phones do: one phone per class, held
    one way or the other); the other classes are stored upright (tag 1);
  * test split: every photo stored upright (tag 1), so every loader sees the same pixels;
  * train twice with upright's own train code, same backbone, same head, same seed:
    naive (pixels as stored, tag ignored: a faithful imitation of EXIF-ignoring loaders)
    and upright; then both again with --augment d4 (all 8 dihedral variants in training);
  * evaluate all four on the upright test split (accuracy, per-class recall, accuracy with
    the test photos turned 90/180/270 degrees), and run `upright audit` on the training split.

Every photo is decoded upright first (through upright.imaging) and re-encoded as JPEG q95,
so the train and test files went through the same encoder.
By default (flowers-500) two configurations run: all five classes with daisy and dandelion
sideways, then the most confusable pair alone (roses vs tulips, roses sideways): how much the
shortcut costs depends on how subtle the content difference is.
Usage: python bench/shortcut.py [--data DIR] [--classes a,b] [--sideways a] [--quick]
Exit status 77 (skipped) with a one-line reason when the dataset is absent.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers-500"
SKIP = 77  # the conventional "skipped" exit status (automake, pytest plugins)
TEST_FRACTION = 0.3


def _encode(picture, orientation: int) -> bytes:
    from PIL import Image

    from upright.imaging import store_as

    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    store_as(picture, orientation).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def build(source: Path, out: Path, sideways: list[str], test_fraction: float = TEST_FRACTION,
          train_per_class: int | None = None, classes: list[str] | None = None) -> dict:
    """Write out/train/<label> (confounded) and out/test/<label> (upright). Returns counts."""
    from upright.pipeline.scan import scan
    from upright.errors import UnreadableImage
    from upright.imaging import open_upright

    ds = scan(source, 0.0)
    labels = classes or ds.labels
    unknown = [s for s in sideways if s not in labels]
    if unknown:
        raise SystemExit(f"--sideways: no class named {unknown[0]!r} in {source} (classes: {', '.join(labels)})")
    counts = {"train": {lab: 0 for lab in labels}, "test": {lab: 0 for lab in labels}}
    tags = {lab: {} for lab in labels}
    skipped = 0
    for r in sorted(ds.records, key=lambda r: str(r.path)):
        if r.label not in labels:
            continue
        try:
            picture = open_upright(r.path)
        except UnreadableImage:
            skipped += 1
            continue
        split = "test" if int(r.sha256[:12], 16) / float(1 << 48) < test_fraction else "train"
        if split == "train" and train_per_class is not None and counts["train"][r.label] >= train_per_class:
            continue
        if split == "train" and r.label in sideways:
            orientation = 6 if sideways.index(r.label) % 2 == 0 else 8
        else:
            orientation = 1
        if split == "train":
            tags[r.label][orientation] = tags[r.label].get(orientation, 0) + 1
        folder = out / split / r.label
        folder.mkdir(parents=True, exist_ok=True)
        (folder / (Path(r.path).stem + ".jpg")).write_bytes(_encode(picture, orientation))
        counts[split][r.label] += 1
    return {"counts": counts, "tags": tags, "skipped": skipped, "labels": labels}


def quick_source(folder: Path) -> Path:
    """A tiny generated dataset (the demo's bundled-photo generator, stored upright)."""
    import numpy as np

    from upright.demo.data import LABELS, _shot, load_sources

    sources = load_sources()
    rng = np.random.default_rng(0)
    for label in LABELS:
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(14):
            pic = _shot(sources[i % len(sources)][2], rng, label)
            pic.save(folder / label / f"{label}_{i:02d}.jpg", "JPEG", quality=90)
    return folder


def verdict(audit: dict) -> str:
    if not audit["findings"]:
        return "no findings"
    parts = []
    for f in audit["findings"]:
        what = f["kind"] + (f"/{f['attribute']}" if f.get("attribute") else "")
        also = f" (+{', '.join(f['also'])})" if f.get("also") else ""
        parts.append(f"{f['severity']} {what}{also} score {float(f.get('score') or 0):.2f}")
    return "; ".join(parts)


def run_config(source: Path, origin: str, tmp: Path, classes: list[str] | None, sideways: list[str] | None,
               args) -> dict:
    """One confounded dataset, audited, trained naive/upright for each augment setting, evaluated."""
    from upright.audit import run_audit
    from upright.pipeline.scan import scan
    from upright.evaluate import evaluate
    from upright.train import train_dataset

    t_start = time.perf_counter()
    labels = scan(source, 0.0).labels
    if classes:
        unknown = [c for c in classes if c not in labels]
        if unknown:
            raise SystemExit(f"--classes: no class named {unknown[0]!r} in {source} (classes: {', '.join(labels)})")
        labels = classes
    sideways = sideways or labels[: max(1, len(labels) // 2)]
    t = time.perf_counter()
    info = build(source, tmp / "data", sideways, train_per_class=args.train_per_class, classes=labels)
    build_s = time.perf_counter() - t
    train_dir, test_dir = tmp / "data" / "train", tmp / "data" / "test"

    t = time.perf_counter()
    # --quick: header facts only (the content pass adds nothing to a smoke test but minutes)
    audit = run_audit(train_dir, cache_dir=args.cache, progress=False, content=not args.quick)
    audit_s = time.perf_counter() - t

    rows = []
    for augment in [a.strip() for a in args.augment.split(",") if a.strip()]:
        for name, orient in (("naive (tag ignored)", False), ("upright", True)):
            t = time.perf_counter()
            model = tmp / "models" / f"{augment}-{'upright' if orient else 'naive'}"
            tr = train_dataset(train_dir, model, augment=augment, orient=orient, seed=args.seed,
                               cache_dir=args.cache, progress=False)
            ev = evaluate(model, test_dir, cache_dir=args.cache, progress=False)
            rows.append({"augment": augment, "loader": name, "orient": orient, "backbone": tr["backbone"],
                         "val_accuracy": tr["val_accuracy"], "accuracy": ev["accuracy"],
                         "recall": {lab: ev["per_class"][lab]["recall"] for lab in ev["labels"]},
                         "rotations": ev["rotations"], "seconds": time.perf_counter() - t})

    n_train = sum(info["counts"]["train"].values())
    n_test = sum(info["counts"]["test"].values())
    labels = info["labels"]
    short = {lab: lab[:9] for lab in labels}
    title = f"{len(labels)} classes ({', '.join(labels)})" if classes else f"all {len(labels)} classes"
    print(f"## {title}")
    print(f"backbone: {', '.join(sorted({r['backbone'] for r in rows}))} (upright train's default)")
    tag_of = ", ".join(f"{lab} {6 if i % 2 == 0 else 8}" for i, lab in enumerate(sideways))
    print(f"training split ({n_train} photos): stored sideways with EXIF Orientation {tag_of}; the rest "
          f"upright; test split ({n_test} photos): all upright.")
    print()
    head = "| augment | loader | val | test (upright) | " + " | ".join(
        f"recall {short[lab]}" + ("*" if lab in sideways else "") for lab in labels) + " | turned 0/90/180/270 |"
    print(head)
    print("|---|---|---:|---:|" + "---:|" * len(labels) + "---|")
    for r in rows:
        print(f"| {r['augment']} | {r['loader']} | {r['val_accuracy']:.3f} | **{r['accuracy']:.3f}** | "
              + " | ".join(f"{r['recall'][lab]:.2f}" for lab in labels) + " | "
              + " / ".join(f"{v:.2f}" for v in r["rotations"].values()) + " |")
    print()
    print("(* = stored sideways in training; val = held-out part of the confounded training split)")
    by = {(r["augment"], r["orient"]): r for r in rows}
    parts = []
    for augment in dict.fromkeys(r["augment"] for r in rows):
        if (augment, False) in by and (augment, True) in by:
            g = by[(augment, True)]["accuracy"] - by[(augment, False)]["accuracy"]
            parts.append(f"{100 * g:+.1f} points with --augment {augment}")
    summary = f"{title}: upright vs naive on the upright test split " + ", ".join(parts)
    if ("flip", True) in by and ("d4", True) in by:
        f90 = min(by[("flip", True)]["rotations"][k] for k in ("90", "180", "270"))
        d90 = min(by[("d4", True)]["rotations"][k] for k in ("90", "180", "270"))
        summary += (f"; d4 vs flip (upright) on turned test photos, worst rotation {d90:.3f} vs {f90:.3f} "
                    f"({100 * (d90 - f90):+.1f} points)")
    print(summary)
    print(f"audit of the training split ({audit['seconds']:.0f} s): {verdict(audit)}")
    print(f"time: build {build_s:.0f} s, audit {audit_s:.0f} s, "
          + ", ".join(f"{r['augment']}/{'upright' if r['orient'] else 'naive'} {r['seconds']:.0f} s" for r in rows)
          + f"; total {time.perf_counter() - t_start:.0f} s")
    print()
    return {"data": origin, "classes": labels, "sideways": sideways, "n_train": n_train, "n_test": n_test,
            "rows": rows, "verdict": verdict(audit),
            "audit_findings": [{k: f.get(k) for k in ("kind", "severity", "attribute", "score", "also")}
                               for f in audit["findings"]]}


#: Default runs on flowers-500: every class (2 of 5 sideways), then the most confusable pair
#: (roses vs tulips, one sideways): the shortcut's cost depends on how subtle the content is.
DEFAULT_CONFIGS = [(None, None), (["roses", "tulips"], ["roses"])]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help=f"folder-per-class dataset (default {DEFAULT_DATA})")
    ap.add_argument("--classes", default=None, help="comma-separated classes to use (default: all)")
    ap.add_argument("--sideways", default=None,
                    help="comma-separated classes stored sideways in training (default: first half of the classes)")
    ap.add_argument("--augment", default="flip,d4", help="augment settings to compare (default flip,d4)")
    ap.add_argument("--train-per-class", type=int, default=None,
                    help="use at most N training photos per class (the test split is unchanged)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=None, help="embedding cache (default: upright's user cache)")
    ap.add_argument("--quick", action="store_true", help="tiny generated dataset (smoke test)")
    args = ap.parse_args(argv)

    def names(text):
        return [s.strip() for s in text.split(",") if s.strip()] if text else None

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="upright-bench-shortcut-") as tmp:
        tmp = Path(tmp)
        if args.quick and args.data is None:
            source, origin = quick_source(tmp / "source"), "tiny generated dataset (--quick: demo photos, 2 x 14)"
        else:
            source = args.data or DEFAULT_DATA
            if not source.is_dir():
                print(f"SKIPPED: dataset not found at {source} (pass --data DIR, a folder with one "
                      "sub-folder per class)", file=sys.stderr)
                raise SystemExit(SKIP)
            origin = str(source)
        from upright.pipeline.scan import scan

        labels = scan(source, 0.0).labels
        if args.classes or args.sideways or args.quick:
            configs = [(names(args.classes), names(args.sideways))]
        else:
            configs = [(c, s) for c, s in DEFAULT_CONFIGS if c is None or set(c) <= set(labels)]
        print(f"# shortcut benchmark: {origin}")
        print(f"machine: {machine('onnxruntime')}")
        print("Same files, backbone, head and seed in every row of a table; 'naive' reads "
              "the pixels as stored with the EXIF tag ignored (what Pillow's plain open, torchvision's "
              "ImageFolder, Keras and tf.io feed a model), 'upright' applies the tag.")
        print()
        results = []
        for i, (classes, sideways) in enumerate(configs):
            results.append(run_config(source, origin, tmp / f"run{i}", classes, sideways, args))
    first = results[0]
    print(f"total {time.perf_counter() - t_start:.0f} s")
    return {**first, "configs": results, "machine": machine('onnxruntime')}


if __name__ == "__main__":
    main()
