"""Does the audit catch the seed's shortcut in any number of classes, and stay quiet on noise?

Datasets made here (files written with real encoders, audited with `run_audit(...,
content=False, checks="label_leak")`, the statistics a user gets):

- confound: one class has `share` of its photos stored sideways with EXIF Orientation 6 (as
  a phone stores them), every other photo is stored upright; 3, 10, 20 and 50 classes;
- control: orientation tags (none, 6, 8, 3) drawn at random for every photo, several seeds;
- flowers (when ../shared/data/flowers-500 is there): 3 and 5 real flower classes with half
  of 'daisy' turned losslessly by jpegtran and tagged 6, the issue's own case.

Prints one row per configuration: classes, photos per class, tagged share, the severity of
the orientation finding (or of the worst label_leak finding for controls) and seconds.

    .venv/bin/python bench/leak_detection.py [--per-class 15] [--seeds 5] [--quick] [--no-flowers]
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fixtures as af  # noqa: E402
from _machine import machine  # noqa: E402
from upright.audit import run_audit  # noqa: E402

FLOWERS = ROOT.parent / "shared" / "data" / "flowers-500"
RANK = {"error": 0, "warning": 1, "info": 2, None: 3}


def verdict(result: dict) -> tuple[str, str]:
    """(severity of the finding on the orientation tag or folding it in, worst label_leak severity)."""
    leaks = [f for f in result["findings"] if f["kind"] == "label_leak"]
    orient = [f for f in leaks if f["attribute"] == "exif_orientation" or "exif_orientation" in f.get("also", [])]
    worst = min((f["severity"] for f in leaks), key=RANK.__getitem__, default=None)
    return (orient[0]["severity"] if orient else "none"), (worst or "none")


def _exif6(data: bytes) -> bytes:
    """A JPEG with an EXIF APP1 (Orientation 6) in place of any it had, bytes untouched otherwise."""
    ex = Image.Exif()
    ex[0x0112] = 6
    payload = b"Exif\x00\x00" + ex.tobytes()
    out, i = bytearray(data[:2]), 2
    while i + 4 <= len(data) and data[i] == 0xFF and 0xE0 <= data[i + 1] <= 0xEF:
        n = struct.unpack(">H", data[i + 2:i + 4])[0]
        seg = data[i:i + 2 + n]
        if not (data[i + 1] == 0xE1 and seg[4:10] == b"Exif\x00\x00"):
            out += seg
        i += 2 + n
    return bytes(out[:2]) + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + bytes(out[2:]) + data[i:]


def flowers(dst: Path, classes: list[str], share: float) -> Path:
    for c in classes:
        files = sorted((FLOWERS / c).iterdir())
        (dst / c).mkdir(parents=True, exist_ok=True)
        k = round(share * len(files)) if c == "daisy" else 0
        for j, f in enumerate(files):
            if j < k:  # pixels turned as a phone stores them, without re-encoding
                rot = subprocess.run(["jpegtran", "-rotate", "270", "-trim", "-copy", "none", str(f)],
                                     check=True, capture_output=True).stdout
                (dst / c / f.name).write_bytes(_exif6(rot))
            else:
                shutil.copy(f, dst / c / f.name)
    return dst


def audit(root: Path) -> tuple[dict, float]:
    t = time.perf_counter()
    r = run_audit(root, content=False, progress=False, checks="label_leak")
    return r, time.perf_counter() - t


def main(argv: list[str] | None = None) -> list[tuple]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=15)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="3 and 10 classes, 2 seeds (smoke test)")
    ap.add_argument("--no-flowers", action="store_true", help="leave out the flowers-500 rows")
    args = ap.parse_args(argv)
    sizes = [3, 10] if args.quick else [3, 10, 20, 50]
    seeds = min(args.seeds, 2) if args.quick else args.seeds
    per = args.per_class
    print(f"machine: {machine('numpy', 'pillow')}")
    print("label-leak detection (files made here, --metadata-only statistics)")
    print(f"{'data':<10} {'classes':>7} {'per class':>9} {'tagged':>7} {'orientation finding':>20} "
          f"{'worst leak':>10} {'seconds':>8}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="upright-bench-leak-") as tmp:
        tmp = Path(tmp)
        for n in sizes:
            for share in (1.0, 0.5, 0.3):
                root = af.one_class_tagged(tmp / f"c{n}-{share}", n, per, share)
                r, s = audit(root)
                o, w = verdict(r)
                rows.append(("confound", n, per, f"{share:.0%}", o, w, s))
                print(f"{'confound':<10} {n:>7} {per:>9} {share:>7.0%} {o:>20} {w:>10} {s:>8.1f}", flush=True)
                shutil.rmtree(root)
            tally: Counter = Counter()
            secs = 0.0
            for seed in range(seeds):
                root = af.random_tags(tmp / f"r{n}-{seed}", n, per, seed)
                r, s = audit(root)
                tally[verdict(r)[1]] += 1
                secs += s
                shutil.rmtree(root)
            summary = ", ".join(f"{k} x{v}" for k, v in sorted(tally.items(), key=lambda kv: RANK.get(kv[0], 3)))
            rows.append(("control", n, per, "random", "-", summary, secs / seeds))
            print(f"{'control':<10} {n:>7} {per:>9} {'random':>7} {'-':>20} {summary:>10} {secs / seeds:>8.1f}",
                  flush=True)
        if args.no_flowers:
            print("flowers rows left out (--no-flowers)")
        elif FLOWERS.is_dir() and shutil.which("jpegtran"):
            for classes in (["daisy", "dandelion", "roses"], ["daisy", "dandelion", "roses", "sunflowers", "tulips"]):
                for share in (1.0, 0.5):
                    root = flowers(tmp / f"f{len(classes)}-{share}", classes, share)
                    r, s = audit(root)
                    o, w = verdict(r)
                    print(f"{'flowers':<10} {len(classes):>7} {100:>9} {share:>7.0%} {o:>20} {w:>10} {s:>8.1f}",
                          flush=True)
                    shutil.rmtree(root)
                    rows.append(("flowers", len(classes), 100, f"{share:.0%}", o, w, s))
        else:
            print(f"flowers rows skipped: {FLOWERS} or jpegtran not found")
    half = [r for r in rows if r[0] != "control" and r[3] in ("100%", "50%")]
    caught = sum(r[4] in ("warning", "error") for r in half)
    loud = sum(int(part.split(" x")[1]) for r in rows if r[0] == "control" for part in r[5].split(", ")
               if part.split(" x")[0] in ("warning", "error"))
    print(f"summary: one class 50-100% tagged: warning or error in {caught}/{len(half)} datasets; "
          f"random-tag controls: {loud} warning/error in {seeds * len(sizes)} datasets")
    return rows


if __name__ == "__main__":
    main()
