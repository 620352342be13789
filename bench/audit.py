"""Benchmark the audit on flowers-500: wall time (cold and warm embedding cache, metadata only)
and the sideways detector's precision and recall on a test set built here.

Test set: a copy of flowers-500 where a seeded 10% of the files have their pixels turned
90/180/270 degrees and no orientation tag (what a messenger that strips EXIF, or a scanner,
produces). The detector must find those files, say how far they are turned, and leave the
other 90% alone.

    .venv/bin/python bench/audit.py [--data ../shared/data/flowers-500] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from upright.audit import run_audit  # noqa: E402
from upright.imaging import open_upright  # noqa: E402

TURN = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}


def build_test_set(src: Path, dst: Path, fraction: float = 0.1, seed: int = 0) -> dict[str, int]:
    """Copy src to dst, turning `fraction` of the files (tag removed). Returns {path: degrees cw}."""
    shutil.copytree(src, dst)
    files = sorted(p for p in dst.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(files), int(round(fraction * len(files))), replace=False)
    turned = {}
    for i in chosen:
        p = files[int(i)]
        deg = int(rng.choice([90, 180, 270]))
        img = open_upright(p).transpose(TURN[deg])  # content turned `deg` clockwise
        img.save(p, "JPEG", quality=95)  # no EXIF: nothing says it is turned
        turned[os.fspath(p)] = deg
    return turned


def score(result: dict, truth: dict[str, int], thresholds=(0.5, 0.7, 0.8, 0.9, 0.95)) -> list[dict]:
    probs = result.get("_sideways_all", {})
    out = []
    for thr in thresholds:
        flagged = {p: r for p, (pt, r) in probs.items() if pt >= thr}
        tp = [p for p in flagged if p in truth]
        rot_ok = sum(flagged[p] == truth[p] for p in tp)
        out.append({"threshold": thr, "flagged": len(flagged), "true_positives": len(tp),
                    "precision": round(len(tp) / len(flagged), 3) if flagged else None,
                    "recall": round(len(tp) / len(truth), 3), "rotation_right": rot_ok})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "flowers-500"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    data = Path(args.data)
    report: dict = {"data": str(data)}
    with tempfile.TemporaryDirectory(prefix="upright-bench-audit-") as tmp:
        cache = Path(tmp) / "cache"
        t = time.perf_counter()
        r = run_audit(data, cache_dir=cache, progress=False, content=False)
        report["metadata_only_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        cold = run_audit(data, cache_dir=cache, progress=False)
        report["cold_s"] = round(time.perf_counter() - t, 2)
        report["cold_timings"] = cold["timings"]
        t = time.perf_counter()
        warm = run_audit(data, cache_dir=cache, progress=False)
        report["warm_s"] = round(time.perf_counter() - t, 2)
        report["warm_timings"] = warm["timings"]
        report["findings_on_original"] = [(f["severity"], f["kind"], f.get("attribute"), len(f["paths"]))
                                          for f in warm["findings"]]
        truth = build_test_set(data, Path(tmp) / "turned")
        t = time.perf_counter()
        res = run_audit(Path(tmp) / "turned", cache_dir=cache, progress=False, sideways_threshold=0.0)
        report["turned_set_s"] = round(time.perf_counter() - t, 2)
        report["sideways_head"] = res["sideways"]
        (sw,) = [f for f in res["findings"] if f["kind"] == "sideways"]
        res["_sideways_all"] = {it["path"]: (it["confidence"], it["rotation"]) for it in sw["items"]}
        report["n_turned"] = len(truth)
        report["sideways"] = score(res, truth)
    print(json.dumps(report, indent=2))
    print(f"\naudit of {data.name}: metadata only {report['metadata_only_s']} s, cold cache {report['cold_s']} s, "
          f"warm cache {report['warm_s']} s")
    print(f"sideways detector on {report['n_turned']} turned files out of {cold['n_images']}:")
    print("  threshold  flagged  precision  recall  rotation right")
    for row in report["sideways"]:
        prec = f"{row['precision']:.2f}" if row["precision"] is not None else "  - "
        print(f"  {row['threshold']:>9}  {row['flagged']:>7}  {prec:>9}  {row['recall']:>6.2f}  "
              f"{row['rotation_right']}/{row['true_positives']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
