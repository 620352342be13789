"""The photo sets and measured runs behind bench/scale.py's train/audit rows (not a benchmark itself).

Sets, made once under the scale folder (outside the repo) and reused:
  small-N   N distinct variations of ../shared/data/flowers-500: a random crop of 80-100 %, a
            small colour shift, scaled to a short side of 160-320 px, re-encoded (JPEG q90)
  phone-N   N flowers-500 variations upscaled (bicubic) to 4032x3024 (JPEG q92), every
            second one stored sideways with EXIF Orientation 6 (as phones do)

A measured run is one fresh process (`run_child`): `upright.train` or `run_audit` through the
Python API, its wall time and its peak RSS (VmHWM of the process itself: getrusage's
ru_maxrss would also count the pages it inherited from this benchmark at fork; and the largest
of its children, the decode workers, by getrusage). `--src` runs the same children against another source tree,
so "before" and "after" are measured on one machine in one run.

Seeded caches (`seed_cache`): for sets too big to embed here in reasonable time, the first 500
photos (one per flowers-500 source) are embedded for real and every other photo's cached
embeddings are its source's times a random factor per feature, the same for every view of
the photo (log-normal, sigma drawn per photo in 0.15-0.4: two seeded copies of one source then
have a median cosine of 0.92, 13% at or above the near-duplicate threshold 0.96, as two real
copies in the small sets have: 0.93 and 12%, measured on 600 pairs), written under the real
model key. A warm run reads them exactly as it reads real ones (the warm path never runs the network); accuracy figures from
such a cache mean nothing and are not reported.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FLOWERS = ROOT.parent / "shared" / "data" / "flowers-500"
PHONE_SIZE = (4032, 3024)
SEED_VARIANTS = ("id", "flip", "r90", "r180", "r270")  # what train (--augment flip) and a full audit read


def sources() -> list[Path]:
    """flowers-500, one class after the other (daisy, dandelion, ..., daisy, ...): any first k
    photos of a set hold every class."""
    by_class: dict[str, list[Path]] = {}
    for p in sorted(FLOWERS.rglob("*.jpg")) if FLOWERS.is_dir() else []:
        by_class.setdefault(p.parent.name, []).append(p)
    rounds = max((len(v) for v in by_class.values()), default=0)
    return [v[r] for r in range(rounds) for v in by_class.values() if r < len(v)]


def _synthetic(i: int) -> np.ndarray:
    y, x = np.mgrid[0:300, 0:400]
    return np.stack([x * 255 // 400, y * 255 // 300, (x + y + 7 * i) % 256], -1).astype(np.uint8)


def _variation(i: int, srcs: list[Path], seed: int) -> tuple[str, "object"]:
    """(label, PIL image): photo i, a distinct crop and colour shift of its source."""
    from PIL import Image

    rng = np.random.default_rng([seed, i])
    if srcs:
        src = srcs[i % len(srcs)]
        with Image.open(src) as im:
            a = np.asarray(im.convert("RGB"))
        label = src.parent.name
    else:
        a, label = _synthetic(i), f"c{i % 5}"
    h, w = a.shape[:2]
    f = rng.uniform(0.8, 1.0)
    ch, cw = max(32, int(h * f)), max(32, int(w * f))
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    crop = a[top:top + ch, left:left + cw].astype(np.int16) + rng.integers(-12, 13, 3)
    return label, Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8))


def _write_small(args) -> None:
    folder, i, srcs, seed = args
    from PIL import Image

    label, im = _variation(i, srcs, seed)
    short = int(np.random.default_rng([seed, i, 1]).integers(160, 321))
    s = short / min(im.size)
    im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.Resampling.BICUBIC)
    out = Path(folder) / label / f"s{i:05d}.jpg"
    im.save(out, "JPEG", quality=90)


def _write_phone(args) -> None:
    folder, i, srcs, seed = args
    from PIL import Image

    sys.path.insert(0, str(ROOT / "src"))
    from upright.imaging import store_as

    label, im = _variation(i, srcs, seed)
    pic = im.resize(PHONE_SIZE, Image.Resampling.BICUBIC)
    orientation = 6 if i % 2 else 1
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = Path(folder) / label / f"p{i:05d}.jpg"
    store_as(pic, orientation).save(out, "JPEG", quality=92, exif=exif.tobytes())


def make_set(folder: Path, kind: str, n: int, seed: int = 0, workers: int = 2) -> tuple[Path, str]:
    """The set (made once: a `.complete` marker names its kind and size); returns (folder, origin)."""
    srcs = sources()
    origin = "flowers-500 variations" if srcs else "synthetic gradients (flowers-500 absent)"
    what = {"small": f"{origin}: crop 80-100 %, colour shift, short side 160-320 px, JPEG q90",
            "phone": f"{origin} upscaled to 4032x3024 (JPEG q92), every second one stored with EXIF Orientation 6"}[kind]
    done = folder / ".complete"
    if done.is_file() and done.read_text() == f"{kind} {n}":
        return folder, what
    shutil.rmtree(folder, ignore_errors=True)
    labels = sorted({p.parent.name for p in srcs}) if srcs else [f"c{k}" for k in range(5)]
    for k, lab in enumerate(labels):
        if k < n:  # a class folder for every class a photo goes to
            (folder / lab).mkdir(parents=True, exist_ok=True)
    job = _write_small if kind == "small" else _write_phone
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(job, [(str(folder), i, srcs, seed) for i in range(n)], chunksize=64))
    done.write_text(f"{kind} {n}")
    return folder, what


def _sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def seed_cache(data: Path, cache: Path, variants=SEED_VARIANTS, base: int = 500, seed: int = 0) -> int:
    """Fill `cache` with the embeddings of every photo under `data`: photos 0..base-1 really
    embedded (through the product), photo i >= base from photo i % base's vectors (the same
    flowers-500 source when base is 500) times a log-normal factor per feature (see the module
    docstring). Returns the rows seeded (0 when the cache was seeded before)."""
    marker = cache / f".seeded-{data.name}"
    if marker.is_file():
        return 0
    sys.path.insert(0, str(ROOT / "src"))
    from concurrent.futures import ThreadPoolExecutor

    from upright import backbones
    from upright.cache import EmbeddingCache, model_key
    from upright.contract import InputContract
    from upright.pipeline.embed import embed_paths
    photos = {int(p.stem[1:]): p for p in data.rglob("*.jpg")}
    real = [photos[i] for i in range(min(base, len(photos)))]
    vectors = embed_paths(real, variants=variants, cache_dir=cache, progress=False).vectors  # [base, V, D]
    rest = [photos[i] for i in sorted(photos) if i >= len(real)]
    key = model_key(backbones.DEFAULT, backbones.weights_sha256(backbones.DEFAULT),
                    InputContract.for_backbone(backbones.DEFAULT).preprocess_version)
    with ThreadPoolExecutor(4) as pool:
        shas = list(pool.map(_sha, map(str, rest), chunksize=256))
    rng = np.random.default_rng(seed)
    written = 0
    with EmbeddingCache(cache) as db:
        for s in range(0, len(rest), 2048):
            rows = []
            for p, sha in zip(rest[s:s + 2048], shas[s:s + 2048]):
                vec = vectors[int(p.stem[1:]) % len(real)]
                vec = vec * np.exp(rng.normal(0, rng.uniform(0.15, 0.4), vec.shape[1:])).astype(np.float32)
                rows += [(sha, v, vec[j]) for j, v in enumerate(variants)]
            db.put_many(rows, key, True)
            written += len(rows)
    marker.write_text(str(written))
    return written


def forget(data: Path, cache: Path, k: int) -> int:
    """Remove the cached embeddings of k photos of `data` (the last k by index), so the next
    train embeds them: the cold path (ONNX Runtime session, decode pool, every photo's vector in
    memory) without embedding every photo. Returns the rows removed."""
    import sqlite3

    photos = sorted(data.rglob("*.jpg"), key=lambda p: int(p.stem[1:]))[-k:]
    shas = [_sha(str(p)) for p in photos]
    db = sqlite3.connect(str(cache / "embeddings.sqlite3"), timeout=120)
    try:
        with db:
            n = sum(db.execute(f"DELETE FROM embeddings WHERE sha256 IN ({','.join('?' * len(part))})", part).rowcount
                    for part in (shas[s:s + 500] for s in range(0, len(shas), 500)))
    finally:
        db.close()
    return n


CHILD = r"""
import json, resource, sys, time
a = json.loads(sys.argv[1])
t = time.perf_counter()
if a["verb"] == "train":
    import upright
    r = upright.train(a["data"], a["out"], force=True, cache_dir=a["cache"], report=a["report"], progress=False)
    info = {"decoded": int(r["decoded"]), "cache_hits": int(r["cache_hits"]), "l2": r["l2"],
            "val_accuracy": r["val_accuracy"]}
elif a["verb"] == "audit":
    from upright.audit import run_audit
    r = run_audit(a["data"], cache_dir=a["cache"], content=a["content"], progress=False)
    info = {"n": r["n_images"], "findings": len(r["findings"]), "unreadable": len(r["unreadable"])}
else:  # select: the head's choice alone, on the cached embeddings train uses (--augment flip)
    import numpy as np
    from upright.pipeline.scan import scan
    from upright.pipeline.embed import embed_paths
    from upright.head import select_head
    ds = scan(a["data"], read=("train", "val"))
    recs, views = ds.records, ("id", "flip")
    emb = embed_paths([r.path for r in recs], variants=views, cache_dir=a["cache"], progress=False,
                      hashes=[r.sha256 for r in recs])
    y = np.array([ds.labels.index(r.label) for r in recs])
    split = np.array([r.split for r in recs])
    t = time.perf_counter()
    ch = select_head(emb.vectors, y, len(ds.labels), np.flatnonzero(emb.ok & (split == "train")),
                     np.flatnonzero(emb.ok & (split == "val")), views, views)
    get = (lambda k: ch[k]) if isinstance(ch, dict) else (lambda k: getattr(ch, k))
    info = {"l2": get("l2"), "accuracy": round(float(get("accuracy")), 4), "test_views": get("test_views"),
            "method": get("method")}
seconds = time.perf_counter() - t
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
# VmHWM: this process's own peak (ru_maxrss would count the benchmark's own pages, inherited at fork)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "rss_mb": hwm / 1024, "workers_rss_mb": kids.ru_maxrss / 1024,
                  "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, **info}))
"""


def run_child(src: Path, **args) -> dict:
    """One measured run in a fresh process against the package in `src`; adds the load average."""
    load = os.getloadavg()[0]
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONHASHSEED": "0"}
    res = subprocess.run([sys.executable, "-c", CHILD, json.dumps({k: str(v) if isinstance(v, Path) else v
                                                                   for k, v in args.items()})],
                         capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"{args.get('verb')} run failed:\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["load"] = round((load + os.getloadavg()[0]) / 2, 2)
    return {k: round(v, 2) if k in ("seconds", "rss_mb", "workers_rss_mb", "cpu_s") else v for k, v in out.items()}
