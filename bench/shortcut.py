"""Shortcut benchmark: what the EXIF-orientation shortcut costs, and what upright and d4 buy.

From any folder-per-class dataset (default ../shared/data/flowers-500):
  * split every class by a stable hash of the file bytes into train (70%) and test (30%);
  * training split, "shot" by phones: the chosen classes (default: the first half of the
    classes, alphabetically) are stored sideways, alternating EXIF Orientation 6 and 8
    (pixels rotated + tag, as phones do); the other classes are stored upright (tag 1);
  * test split: every photo stored upright (tag 1), so every loader sees the same pixels;
  * train twice with upright's own train code, same backbone, same head, same seed:
    naive (pixels as stored, tag ignored: a faithful imitation of EXIF-ignoring loaders)
    and upright; then both again with --augment d4 (all 8 dihedral variants in training);
  * evaluate all four on the upright test split (accuracy, per-class recall, accuracy with
    the test photos turned 90/180/270 degrees), and run `upright audit` on the training split.

Every photo is decoded upright first (through upright.imaging) and re-encoded as JPEG q95,
so the train and test files went through the same encoder.
Usage: python bench/shortcut.py [--data DIR] [--sideways a,b] [--quick]
Exit status 77 (skipped) with a one-line reason when the dataset is absent.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers-500"
SKIP = 77  # the conventional "skipped" exit status (automake, pytest plugins)
TEST_FRACTION = 0.3


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import onnxruntime
        ort = f", onnxruntime {onnxruntime.__version__}"
    except ImportError:  # pragma: no cover
        ort = ""
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}{ort}"


def _encode(picture, orientation: int) -> bytes:
    from PIL import Image

    from upright.imaging import store_as

    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    store_as(picture, orientation).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def build(source: Path, out: Path, sideways: list[str], test_fraction: float = TEST_FRACTION) -> dict:
    """Write out/train/<label> (confounded) and out/test/<label> (upright). Returns counts."""
    from upright.dataset import scan
    from upright.errors import UnreadableImage
    from upright.imaging import open_upright

    ds = scan(source, 0.0)
    unknown = [s for s in sideways if s not in ds.labels]
    if unknown:
        raise SystemExit(f"--sideways: no class named {unknown[0]!r} in {source} (classes: {', '.join(ds.labels)})")
    counts = {"train": {lab: 0 for lab in ds.labels}, "test": {lab: 0 for lab in ds.labels}}
    tags = {lab: {} for lab in ds.labels}
    skipped = 0
    for r in sorted(ds.records, key=lambda r: str(r.path)):
        try:
            picture = open_upright(r.path)
        except UnreadableImage:
            skipped += 1
            continue
        split = "test" if int(r.sha256[:12], 16) / float(1 << 48) < test_fraction else "train"
        if split == "train" and r.label in sideways:
            orientation = 6 if counts["train"][r.label] % 2 == 0 else 8
        else:
            orientation = 1
        if split == "train":
            tags[r.label][orientation] = tags[r.label].get(orientation, 0) + 1
        folder = out / split / r.label
        folder.mkdir(parents=True, exist_ok=True)
        (folder / (Path(r.path).stem + ".jpg")).write_bytes(_encode(picture, orientation))
        counts[split][r.label] += 1
    return {"counts": counts, "tags": tags, "skipped": skipped, "labels": ds.labels}


def quick_source(folder: Path) -> Path:
    """A tiny generated dataset (the demo's bundled-photo generator, stored upright)."""
    from PIL import Image

    from upright.demo_data import LABELS, _shot, load_sources
    import numpy as np

    sources = load_sources()
    rng = np.random.default_rng(0)
    for label in LABELS:
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(14):
            pic = _shot(sources[i % len(sources)][2], rng, label)
            pic.save(folder / label / f"{label}_{i:02d}.jpg", "JPEG", quality=90)
    assert Image  # noqa: keeps the import explicit for readers
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


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help=f"folder-per-class dataset (default {DEFAULT_DATA})")
    ap.add_argument("--sideways", default=None,
                    help="comma-separated classes stored sideways in training (default: first half of the classes)")
    ap.add_argument("--augment", default="flip,d4", help="augment settings to compare (default flip,d4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=None, help="embedding cache (default: upright's user cache)")
    ap.add_argument("--quick", action="store_true", help="tiny generated dataset (smoke test)")
    args = ap.parse_args(argv)

    from upright.audit import run_audit
    from upright.dataset import scan
    from upright.evaluate import evaluate
    from upright.train import train_dataset

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
        labels = scan(source, 0.0).labels
        sideways = ([s.strip() for s in args.sideways.split(",") if s.strip()] if args.sideways
                    else labels[: max(1, len(labels) // 2)])
        t = time.perf_counter()
        info = build(source, tmp / "data", sideways)
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
                rows.append({"augment": augment, "loader": name, "orient": orient,
                             "val_accuracy": tr["val_accuracy"], "accuracy": ev["accuracy"],
                             "recall": {lab: ev["per_class"][lab]["recall"] for lab in ev["labels"]},
                             "rotations": ev["rotations"], "seconds": time.perf_counter() - t})

    n_train = sum(info["counts"]["train"].values())
    n_test = sum(info["counts"]["test"].values())
    labels = info["labels"]
    short = {lab: lab[:9] for lab in labels}
    print(f"# shortcut benchmark: {origin}")
    print(f"machine: {machine()}")
    print(f"training split ({n_train} photos): {', '.join(sideways)} stored sideways (Orientation 6 and 8 "
          f"alternating), the rest upright; test split ({n_test} photos): all upright. "
          "Same files, backbone, head and seed for every row; 'naive' reads pixels as stored.")
    head = "| augment | loader | val | test (upright) | " + " | ".join(
        f"recall {short[lab]}" + ("*" if lab in sideways else "") for lab in labels) + " | turned 0/90/180/270 |"
    print(head)
    print("|---|---|---:|---:|" + "---:|" * len(labels) + "---|")
    for r in rows:
        print(f"| {r['augment']} | {r['loader']} | {r['val_accuracy']:.3f} | **{r['accuracy']:.3f}** | "
              + " | ".join(f"{r['recall'][lab]:.2f}" for lab in labels) + " | "
              + " / ".join(f"{v:.2f}" for v in r["rotations"].values()) + " |")
    print("(* = stored sideways in training; val = held-out part of the confounded training split)")
    by = {(r["augment"], r["orient"]): r for r in rows}
    gaps = []
    for augment in dict.fromkeys(r["augment"] for r in rows):
        if (augment, False) in by and (augment, True) in by:
            g = by[(augment, True)]["accuracy"] - by[(augment, False)]["accuracy"]
            gaps.append(f"augment {augment}: upright {100 * g:+.1f} points over naive")
    if ("flip", True) in by and ("d4", True) in by:
        f90 = min(by[("flip", True)]["rotations"][k] for k in ("90", "180", "270"))
        d90 = min(by[("d4", True)]["rotations"][k] for k in ("90", "180", "270"))
        gaps.append(f"d4 vs flip (upright), worst rotated accuracy: {d90:.3f} vs {f90:.3f}")
    for g in gaps:
        print(g)
    print(f"audit of the training split ({audit['seconds']:.0f} s): {verdict(audit)}")
    print(f"time: build {build_s:.0f} s, audit {audit_s:.0f} s, "
          + ", ".join(f"{r['augment']}/{'upright' if r['orient'] else 'naive'} {r['seconds']:.0f} s" for r in rows)
          + f"; total {time.perf_counter() - t_start:.0f} s")
    return {"data": origin, "sideways": sideways, "n_train": n_train, "n_test": n_test, "rows": rows,
            "audit_findings": [{k: f.get(k) for k in ("kind", "severity", "attribute", "score", "also")}
                               for f in audit["findings"]],
            "verdict": verdict(audit), "machine": machine()}


if __name__ == "__main__":
    main()
