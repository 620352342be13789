"""Serving benchmark: `upright serve` under 1, 4 and 16 concurrent clients on loopback.

Same run, same machine, same photos:
  predict        Model.predict(bytes) in this process, one image at a time (no server, no
                 cache: bytes are decoded and embedded every time): the single-image floor
  predict-b16    Model.predict_images on 16 decoded images at once: the batching ceiling
  serve c=N      `upright serve` in its own process (a real uvicorn on 127.0.0.1), N clients
                 each posting the next photo as soon as their previous answer arrives; a
                 bounded number of requests per level; requests/s, p50/p95 latency and the
                 mean batch the server formed (from /healthz counters)

Model: --model DIR, else one trained here (flowers-500: 20 photos per class; generated
pictures when that folder is absent, said so). Uploads: flowers-500 photos not used in
training (real JPEGs, 320x240 to 500x375), else generated 500x375 JPEGs, half stored
sideways with EXIF 6.
Usage: python bench/serve.py [--quick] [--requests N] [--levels 1,4,16] [--model DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from upright.imaging import open_upright, store_as  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

FLOWERS = ROOT.parent / "shared" / "data" / "flowers-500"


def load() -> str:
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "load average n/a"


def _jpeg(img: Image.Image, orientation: int = 1) -> bytes:
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    store_as(img, orientation).save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def _synthetic(label: int, i: int, size=(500, 375)) -> Image.Image:
    rng = np.random.default_rng(100 * label + i)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    coord = x if label == 0 else y
    period = int(rng.integers(14, 30))
    arr = np.where((((coord + i) // (period // 2)) % 2 == 1)[..., None], rng.integers(30, 220, 3), 230)
    arr = arr + rng.normal(0, 10, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def prepare(work: Path, n_uploads: int, per_class: int, model_dir: Path | None) -> tuple[Path, list[tuple[str, bytes]], str]:
    """-> (model folder, uploads [(name, bytes)], a line saying what they are)."""
    uploads: list[tuple[str, bytes]] = []
    if FLOWERS.is_dir():
        classes = sorted(p for p in FLOWERS.iterdir() if p.is_dir())
        files = {c.name: sorted(c.glob("*.jpg")) for c in classes}
        data = work / "data"
        if model_dir is None:
            for c, paths in files.items():
                (data / c).mkdir(parents=True, exist_ok=True)
                for p in paths[:per_class]:
                    (data / c / p.name).write_bytes(p.read_bytes())
        held_out = [p for c in files for p in files[c][per_class:]]
        for p in held_out[:: max(1, len(held_out) // n_uploads)][:n_uploads]:
            uploads.append((p.name, p.read_bytes()))
        origin = f"{len(uploads)} flowers-500 photos (not trained on), as stored"
    else:
        data = work / "data"
        if model_dir is None:
            for label, name in enumerate(("vertical", "horizontal")):
                (data / name).mkdir(parents=True, exist_ok=True)
                for i in range(per_class):
                    (data / name / f"{name}_{i:03d}.jpg").write_bytes(_jpeg(_synthetic(label, i)))
        for i in range(n_uploads):
            uploads.append((f"gen_{i}.jpg", _jpeg(_synthetic(i % 2, 1000 + i), 6 if i % 2 else 1)))
        origin = f"{len(uploads)} generated 500x375 JPEGs, half stored sideways (flowers-500 absent)"
    if model_dir is None:
        from upright.train import train_dataset

        model_dir = work / "model"
        train_dataset(data, model_dir, progress=False)
    return model_dir, uploads, origin


def time_predict(model, uploads, rounds: int) -> dict:
    """Single-image Model.predict(bytes), median over rounds; and a batch of 16 images."""
    model.predict([uploads[0][1]], top_k=5)  # warm-up (ONNX session, threads)
    single = []
    for r in range(rounds):
        data = uploads[r % len(uploads)][1]
        t0 = time.perf_counter()
        model.predict([data], top_k=5)
        single.append((time.perf_counter() - t0) * 1000)
    images = [open_upright(d, size=256) for _, d in (uploads * 16)[:16]]
    model.predict_images(images[:2])
    t0 = time.perf_counter()
    model.predict_images(images)
    b16 = (time.perf_counter() - t0) * 1000
    return {"single_ms_p50": statistics.median(single), "single_ms_min": min(single),
            "batch16_ms": b16, "batch16_img_s": 16000 / b16}


def start_server(model_dir: Path, max_batch: int | None = None) -> tuple[subprocess.Popen, str]:
    """`upright serve MODEL --port 0 [--max-batch N]`: the CLI as users run it."""
    cmd = [sys.executable, "-m", "upright.cli", "serve", str(model_dir), "--host", "127.0.0.1", "--port", "0"]
    if max_batch is not None:
        cmd += ["--max-batch", str(max_batch)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()  # "upright serve: http://127.0.0.1:PORT/  (model ...)"
    if "http://" not in line:
        proc.kill()
        raise RuntimeError(f"upright serve did not start: {line!r} {proc.stderr.read()[-2000:]}")
    url = line.split("http://", 1)[1].split()[0]
    return proc, "http://" + url.rstrip("/")


async def run_level(url: str, uploads, clients: int, n_requests: int) -> dict:
    import httpx

    latencies: list[float] = []
    decode_ms: list[float] = []
    model_ms: list[float] = []
    failures = 0
    next_i = 0

    async def worker(client):
        nonlocal next_i, failures
        while next_i < n_requests:
            i = next_i
            next_i += 1
            name, data = uploads[i % len(uploads)]
            t0 = time.perf_counter()
            r = await client.post("/api/predict", files={"file": (name, data, "image/jpeg")})
            latencies.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                failures += 1
            else:
                t = r.json()["timings"]
                decode_ms.append(t["decode_ms"])
                model_ms.append(t["model_ms"])

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        before = (await client.get("/healthz")).json()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        wall = time.perf_counter() - t0
        after = (await client.get("/healthz")).json()
    batches = max(1, after["batches"] - before["batches"])
    lat = sorted(latencies)
    return {
        "clients": clients, "requests": len(lat), "failures": failures, "req_s": len(lat) / wall,
        "p50_ms": lat[len(lat) // 2], "p95_ms": lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))],
        "mean_batch": (after["images"] - before["images"]) / batches,
        "decode_ms": statistics.median(decode_ms) if decode_ms else float("nan"),
        "model_ms": statistics.median(model_ms) if model_ms else float("nan"),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    ap.add_argument("--requests", type=int, default=None, help="requests per concurrency level (default 64)")
    ap.add_argument("--levels", default="1,4,16", help="concurrent clients per level")
    ap.add_argument("--no-unbatched", dest="compare_unbatched", action="store_false",
                    help="skip the extra top-level row served with max_batch=1 (no batching)")
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: train a small one here)")
    args = ap.parse_args(argv)
    n_requests = args.requests or (16 if args.quick else 64)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    from upright.model import load_model

    with tempfile.TemporaryDirectory(prefix="upright-bench-serve-") as tmp:
        t0 = time.perf_counter()
        model_dir, uploads, origin = prepare(Path(tmp), 4 if args.quick else 16, 4 if args.quick else 20, args.model)
        prep_s = time.perf_counter() - t0
        model = load_model(model_dir)
        print(f"machine: {machine('onnxruntime')}; {load()} (shared machines: compare rows of one run only)")
        print(f"model: {model.backbone}, {len(model.labels)} labels"
              + (f" (trained here in {prep_s:.1f} s)" if args.model is None else f" ({model_dir})"))
        print(f"uploads: {origin}")
        pred = time_predict(model, uploads, 5 if args.quick else 20)
        del model
        rows = []
        # the CLI as users run it; then, for the top level, the same server without batching
        for max_batch, these in ((None, levels), (1, levels[-1:] if args.compare_unbatched else [])):
            if not these:
                continue
            proc, url = start_server(model_dir, max_batch)
            try:
                asyncio.run(run_level(url, uploads, 2, 4))  # warm-up: ONNX session, thread pools
                for c in these:
                    row = asyncio.run(run_level(url, uploads, c, max(n_requests, c)))
                    row["label"] = f"clients={c}" + (", max_batch=1" if max_batch == 1 else "")
                    rows.append(row)
            finally:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:  # pragma: no cover
                    proc.kill()
    print()
    print(f"Model.predict(bytes), 1 image, in-process: p50 {pred['single_ms_p50']:.1f} ms "
          f"(min {pred['single_ms_min']:.1f} ms) = {1000 / pred['single_ms_p50']:.1f} img/s")
    print(f"Model.predict_images, batch of 16 decoded images: {pred['batch16_ms']:.0f} ms "
          f"= {pred['batch16_img_s']:.1f} img/s")
    print()
    print(f"{'serve (loopback)':<22}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'batch':>7}"
          f"{'decode':>8}{'model':>8}{'failed':>8}")
    for r in rows:
        print(f"{r['label']:<22}{r['requests']:>9}{r['req_s']:>9.1f}{r['p50_ms']:>9.1f}"
              f"{r['p95_ms']:>9.1f}{r['mean_batch']:>7.1f}{r['decode_ms']:>8.1f}{r['model_ms']:>8.1f}{r['failures']:>8}")
    print("(batch: mean images per model call; decode/model: server-side median ms per request)")
    top = max(rows, key=lambda r: r["req_s"])
    one = rows[0]
    print(f"summary: {top['req_s']:.1f} req/s at best ({top['label']}), {top['req_s'] * pred['single_ms_p50'] / 1000:.2f}x "
          f"the rate of sequential in-process predicts; 1 client p50 {one['p50_ms']:.0f} ms vs "
          f"predict p50 {pred['single_ms_p50']:.0f} ms")
    print(f"\n{load()} at the end")
    return {"machine": machine('onnxruntime'), "uploads": origin, "predict": pred, "serve": rows}


if __name__ == "__main__":
    main()
