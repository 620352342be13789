"""Benchmark the audit on flowers-500: wall time (cold and warm embedding cache, metadata only)
and the sideways detector's precision and recall on a test set built here; and how the audit's
pieces grow with the data (`--parts files,near,leak`), each against its baseline in the same run:

- files: scan (sha256) and header facts on ~5,000 distinct files (copies of DATA with distinct
  bytes, in a temporary folder): one loop vs the thread pool vs a process pool, page cache warm
  and cold (each file's cached pages dropped with posix_fadvise before the run);
- near: near-duplicate pairs, every pair vs the faiss index, on 10k and 50k random vectors
  with planted near-copies (time and recall of the planted pairs);
- leak: the label-leak statistics with thousands of distinct values (a capture day per
  photo), the permutation null as dense per-permutation tables vs rows for 2+ files only.

Test set: a copy of flowers-500 where a seeded 10% of the files have their pixels turned
90/180/270 degrees and no orientation tag (what a messenger that strips EXIF, or a scanner,
produces). The detector must find those files, say how far they are turned, and leave the
other 90% alone.

    .venv/bin/python bench/audit.py [--data ../shared/data/flowers-500] [--json out.json]
                                    [--parts audit,files,near,leak] [--files 5000] [--near 10000,50000]
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

from _machine import machine  # noqa: E402
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


def recall_at_precision(probs: dict, truth: dict[str, int], precision: float = 0.9) -> float:
    """The largest recall of any threshold whose precision is at least `precision` (ranking by P(turned))."""
    ranked = sorted(probs, key=lambda p: -probs[p][0])
    best, tp = 0.0, 0
    for k, p in enumerate(ranked, 1):
        tp += p in truth
        if tp / k >= precision:
            best = max(best, tp / len(truth))
    return round(best, 3)


def score(result: dict, truth: dict[str, int], thresholds=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
          ) -> list[dict]:
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


def _distinct_copies(src: Path, dst: Path, n_target: int) -> list[str]:
    """Copies of src's images under dst until n_target files, each with distinct bytes (a trailer)."""
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    out = []
    k = 0
    while len(out) < n_target:
        for p in files:
            if len(out) >= n_target:
                break
            q = dst / p.parent.name / f"{p.stem}_{k}{p.suffix}"
            q.parent.mkdir(parents=True, exist_ok=True)
            q.write_bytes(p.read_bytes() + b"\0upright-bench-copy-%d" % k)
            out.append(str(q))
        k += 1
    return out


def _drop_page_cache(paths) -> None:
    """Evict these files' pages from the OS cache (only theirs): the next read comes from disk."""
    os.sync()
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def bench_files(data: Path, n_target: int, tmp: Path) -> dict:
    """Scan hashing and header facts: one loop vs threads vs processes, warm and cold page cache."""
    from concurrent.futures import ProcessPoolExecutor

    from upright.pipeline.scan import _hash_and_size, scan
    from upright.metadata import describe
    from upright.parallel import default_workers, ordered_map

    root = tmp / "copies"
    paths = _distinct_copies(data, root, n_target)
    workers = default_workers()
    out: dict = {"files": len(paths), "workers": workers, "cpu_count": os.cpu_count()}
    serial_facts = [describe(p) for p in paths]

    def processes(fn, items):
        with ProcessPoolExecutor(workers) as pool:
            return list(pool.map(fn, items, chunksize=64))

    for cache in ("warm", "cold"):
        for what, fn, items in (("headers", describe, paths), ("hashes", _hash_and_size, [Path(p) for p in paths])):
            row = {}
            for how, run in (("serial", lambda: [fn(x) for x in items]),
                             ("threads", lambda: ordered_map(fn, items, workers=workers)),
                             ("processes", lambda: processes(fn, items))):
                if cache == "cold":
                    _drop_page_cache(paths)
                t = time.perf_counter()
                got = run()
                row[how] = round(time.perf_counter() - t, 3)
                if what == "headers":
                    assert got == serial_facts, "parallel header facts differ from the serial ones"
            row["threads_speedup"] = round(row["serial"] / row["threads"], 2)
            row["processes_speedup"] = round(row["serial"] / row["processes"], 2)
            out[f"{what}_{cache}"] = row
    _drop_page_cache(paths)
    t = time.perf_counter()
    one = scan(root, workers=1)
    t1 = time.perf_counter() - t
    _drop_page_cache(paths)
    t = time.perf_counter()
    many = scan(root)
    t2 = time.perf_counter() - t
    assert one.records == many.records
    out["scan_cold"] = {"serial": round(t1, 3), "threads": round(t2, 3), "threads_speedup": round(t1 / t2, 2)}
    return out


def bench_near(sizes, dim: int = 1280, seed: int = 0) -> list[dict]:
    """Every pair vs the faiss index on random unit vectors with 1% planted near-copies."""
    from upright.audit.duplicates import NEAR_THRESHOLD, near_pairs

    rows = []
    for n in sizes:
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((n, dim)).astype(np.float32)
        planted = rng.choice(n, 2 * (n // 100), replace=False).reshape(-1, 2)
        for i, j in planted:
            x[j] = x[i] + rng.standard_normal(dim).astype(np.float32) * 0.15  # cosine ~0.98
        want = {(min(int(i), int(j)), max(int(i), int(j))) for i, j in planted}
        t = time.perf_counter()
        exact = near_pairs(x, NEAR_THRESHOLD, ann_above=10**12)
        te = time.perf_counter() - t
        t = time.perf_counter()
        ann = near_pairs(x, NEAR_THRESHOLD, ann_above=0)
        ta = time.perf_counter() - t
        se, sa = {p[:2] for p in exact}, {p[:2] for p in ann}
        rows.append({"n": n, "dim": dim, "planted": len(want), "exact_s": round(te, 2), "ann_s": round(ta, 2),
                     "speedup": round(te / ta, 2), "exact_pairs": len(se), "ann_pairs": len(sa),
                     "ann_recall_of_exact": round(len(se & sa) / max(1, len(se)), 4),
                     "ann_extra": len(sa - se), "planted_found_exact": len(want & se)})
    return rows


def bench_leak(n: int = 20000, days: int = 15000, classes: int = 100, seed: int = 0) -> dict:
    """The permutation null with many distinct values: dense per-permutation tables vs the rows
    for values held by 2+ files (stats.null_loo_accuracy), same permutations; and find_leaks."""
    from upright.audit import leakage, stats

    rng = np.random.default_rng(seed)
    v = rng.integers(0, days, n)
    y = rng.integers(0, classes, n)
    perms = stats.shuffled_labels(y, leakage.default_permutations(n), seed)
    nv = int(v.max()) + 1
    t = time.perf_counter()
    chunk = max(1, 4_000_000 // (n + nv * classes))
    dense = np.concatenate([stats.loo_accuracy(stats.permutation_tables(v, perms[s:s + chunk], nv, classes))
                            for s in range(0, len(perms), chunk)])
    td = time.perf_counter() - t
    t = time.perf_counter()
    fast = stats.null_loo_accuracy(v, perms, nv, classes)
    tf = time.perf_counter() - t
    assert np.allclose(dense, fast, atol=1e-12)
    base = {a: "x" for a in leakage.ATTRIBUTES}
    rows = [(f"p{i}", f"c{y[i]}", {**base, "capture_date": f"d{v[i]}", "camera": f"c{v[i] % 997}"}) for i in range(n)]
    t = time.perf_counter()
    leakage.find_leaks(rows)
    tl = time.perf_counter() - t
    return {"n": n, "distinct_values": int(len(np.unique(v))), "classes": classes, "permutations": len(perms),
            "null_dense_s": round(td, 2), "null_rows_2plus_s": round(tf, 2), "speedup": round(td / tf, 2),
            "find_leaks_s": round(tl, 2)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "flowers-500"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--parts", default="audit,files,near,leak")
    ap.add_argument("--files", type=int, default=5000, help="files for the scan/header pass")
    ap.add_argument("--near", default="10000,50000", help="vector counts for the near-duplicate search")
    ap.add_argument("--leak", default="20000,15000,100", help="files, distinct values, classes for the leak part")
    args = ap.parse_args(argv)
    data = Path(args.data)
    parts = set(args.parts.split(","))
    report: dict = {"data": str(data), "machine": machine("numpy", "faiss-cpu", "onnxruntime")}
    print(report["machine"], flush=True)
    with tempfile.TemporaryDirectory(prefix="upright-bench-audit-") as tmp:
        if "files" in parts:
            report["files"] = bench_files(data, args.files, Path(tmp))
            print("files:", json.dumps(report["files"]), flush=True)
        if "near" in parts:
            report["near"] = bench_near([int(x) for x in args.near.split(",") if x])
            print("near:", json.dumps(report["near"]), flush=True)
        if "leak" in parts:
            report["leak"] = bench_leak(*(int(x) for x in args.leak.split(",")))
            print("leak:", json.dumps(report["leak"]), flush=True)
        if "audit" in parts:
            bench_audit(data, Path(tmp), report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


def bench_audit(data: Path, tmp: Path, report: dict) -> None:
    """Audit wall time on DATA (metadata only, cold, warm) and the sideways precision/recall curve."""
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
    report["sideways_recall_at_precision_0.9"] = recall_at_precision(res["_sideways_all"], truth)
    print(json.dumps(report, indent=2))
    print(f"\naudit of {data.name}: metadata only {report['metadata_only_s']} s, cold cache {report['cold_s']} s, "
          f"warm cache {report['warm_s']} s")
    print(f"sideways detector on {report['n_turned']} turned files out of {cold['n_images']} "
          f"(best recall at precision >= 0.9: {report['sideways_recall_at_precision_0.9']}):")
    print("  threshold  flagged  precision  recall  rotation right")
    for row in report["sideways"]:
        prec = f"{row['precision']:.2f}" if row["precision"] is not None else "  - "
        print(f"  {row['threshold']:>9}  {row['flagged']:>7}  {prec:>9}  {row['recall']:>6.2f}  "
              f"{row['rotation_right']}/{row['true_positives']}")


if __name__ == "__main__":
    main()
