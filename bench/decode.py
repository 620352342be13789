"""Decode benchmark: 12 MP phone-like JPEGs to an upright 256-short-side RGB image.

Same files, same run, methods alternated round by round:
  naive-pillow   Image.open + load + ImageOps.exif_transpose + bicubic resize (correct, slow)
  opencv         cv2.imread (applies EXIF itself) + cv2.resize INTER_AREA (correct)
  imagefolder    torchvision-style pil_loader: Image.open + convert("RGB") + resize, no EXIF (WRONG)
  upright        upright.open_upright(path, size=256) (DCT-domain decode, then orient + resize)
  floor-1/8      Pillow draft to 1/8 scale + load, nothing else: the decode-only floor

Photos: ../shared/data/flowers-500 upscaled to 4032x3024 (half stored sideways with
Orientation 6, as phones do); synthetic pictures when that folder is absent (said so).
Usage: python bench/decode.py [--files N] [--rounds R] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from upright import open_upright  # noqa: E402
from upright.imaging import store_as  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

FLOWERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers-500"
SIZE = 256


def make_files(folder: Path, n: int, size: tuple[int, int]) -> tuple[list[Path], str]:
    sources = sorted(FLOWERS.rglob("*.jpg"))[:: max(1, 500 // max(n, 1))][:n] if FLOWERS.is_dir() else []
    origin = "flowers-500 photos upscaled (bicubic)" if sources else "synthetic gradients (flowers-500 absent)"
    files = []
    for i in range(n):
        if sources:
            with Image.open(sources[i % len(sources)]) as src:
                pic = src.convert("RGB").resize(size, Image.Resampling.BICUBIC)
        else:
            y, x = np.mgrid[0 : size[1], 0 : size[0]]
            arr = np.stack([(x * 255 // size[0]), (y * 255 // size[1]), ((x + y + 40 * i) % 256)], -1)
            pic = Image.fromarray(arr.astype(np.uint8), "RGB")
        orientation = 6 if i % 2 else 1
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = folder / f"phone_{i:02d}.jpg"
        store_as(pic, orientation).save(path, "JPEG", quality=92, exif=exif.tobytes())
        files.append(path)
    return files, f"{origin} to {size[0]}x{size[1]}, half stored with Orientation 6"


def _short_side(im: Image.Image) -> Image.Image:
    w, h = im.size
    s = SIZE / min(w, h)
    return im.resize((round(w * s), round(h * s)), Image.Resampling.BICUBIC)


def naive_pillow(path: Path):
    with Image.open(path) as im:
        im.load()
        return _short_side(ImageOps.exif_transpose(im).convert("RGB"))


def opencv(path: Path):
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    h, w = arr.shape[:2]
    s = SIZE / min(w, h)
    return cv2.resize(arr, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def imagefolder(path: Path):
    with open(path, "rb") as f, Image.open(f) as im:
        return _short_side(im.convert("RGB"))


def upright_door(path: Path):
    return open_upright(path, size=SIZE)


def floor_eighth(path: Path):
    with Image.open(path) as im:
        im.draft("RGB", (im.size[0] // 8, im.size[1] // 8))
        im.load()
        return im.size


def is_landscape(result) -> bool:
    if isinstance(result, np.ndarray):
        return result.shape[1] > result.shape[0]
    if isinstance(result, tuple):
        return result[0] > result[1]
    return result.size[0] > result.size[1]


METHODS = {
    "naive-pillow": naive_pillow,
    "opencv": opencv,
    "imagefolder": imagefolder,
    "upright": upright_door,
    "floor-1/8": floor_eighth,
}


def run(files: list[Path], rounds: int) -> dict[str, dict]:
    try:
        import cv2  # noqa: F401
    except ImportError:
        METHODS.pop("opencv", None)
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    upright_ok: dict[str, int] = {m: 0 for m in METHODS}
    names = list(METHODS)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]  # alternate to cancel drift
        for path in files:
            for m in order:
                t0 = time.perf_counter()
                out = METHODS[m](path)
                times[m].append(time.perf_counter() - t0)
                if r == 0:
                    upright_ok[m] += is_landscape(out)  # every source picture is landscape
    return {
        m: {"ms": 1000 * statistics.median(times[m]), "mean_ms": 1000 * statistics.fmean(times[m]),
            "upright": f"{upright_ok[m]}/{len(files)}"}
        for m in METHODS
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="2 small files, 1 round (smoke test)")
    args = ap.parse_args(argv)
    size = (1600, 1200) if args.quick else (4032, 3024)
    n, rounds = (2, 1) if args.quick else (args.files, args.rounds)
    with tempfile.TemporaryDirectory(prefix="upright-decode-") as tmp:
        files, origin = make_files(Path(tmp), n, size)
        results = run(files, rounds)
    base, ours, floor = results["naive-pillow"]["ms"], results["upright"]["ms"], results["floor-1/8"]["ms"]
    print(f"# decode benchmark ({n} files x {rounds} rounds, median ms/image)")
    print(f"machine: {machine('pillow')}")
    print(f"files: {origin}; target: upright RGB, short side {SIZE}")
    print("| method | ms/image | vs naive-pillow | shows upright |")
    print("|---|---:|---:|---:|")
    for m, r in results.items():
        print(f"| {m} | {r['ms']:.1f} | {base / r['ms']:.2f}x | {r['upright']} |")
    print(f"upright is {base / ours:.2f}x faster than naive Pillow (target >= 4x) and "
          f"{100 * (ours / floor - 1):+.0f}% vs the bare 1/8-scale decode (target within 15%)")
    return {"results": results, "speedup_vs_naive": base / ours, "vs_floor": ours / floor - 1, "files": origin}


if __name__ == "__main__":
    main()
