"""The phone test's costs: what https + token and the turn test add to one camera frame.

Same run, same machine, same frames. The live camera sends one frame at a time and waits for
the answer, so a frame's round trip decides the frame rate. Rows, one client, sequential:
  http            `upright serve MODEL` (127.0.0.1, no token): one frame -> one answer
  https+token     `upright serve MODEL --lan --host 127.0.0.1`: the same over TLS, cookie
  https+turns     the same with ?turns=1: the frame as is + turned 90/180/270, one model call
Frames: 640x480 camera-sized JPEGs (flowers-500 photos scaled, else generated stripes).
Model: --model DIR, else one trained here on a few generated pictures.
Usage: python bench/phone.py [--quick] [--frames N] [--model DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import re
import ssl
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402
from upright.imaging import open_upright  # noqa: E402

FLOWERS = ROOT.parent / "shared" / "data" / "flowers-500"
LIVE_MIN_GAP_MS = 200  # the page's cap (static/app.js): at most 5 frames/s


def _stripes(vertical: bool, i: int, size=(640, 480)) -> Image.Image:
    rng = np.random.default_rng(31 * i + vertical)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    period = int(rng.integers(16, 40))
    on = (((x if vertical else y) + i) // (period // 2)) % 2 == 1
    arr = np.where(on[..., None], rng.integers(30, 220, 3), 230) + rng.normal(0, 8, (size[1], size[0], 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)  # what the page's canvas.toBlob sends
    return buf.getvalue()


def frames(n: int) -> tuple[list[bytes], str]:
    if FLOWERS.is_dir():
        paths = sorted(FLOWERS.glob("*/*.jpg"))[:: 17][:n]
        out = [_jpeg(open_upright(p).resize((640, 480), Image.Resampling.BICUBIC)) for p in paths]
        return out, f"{len(out)} flowers-500 photos scaled to 640x480"
    return [_jpeg(_stripes(i % 2 == 0, i)) for i in range(n)], f"{n} generated 640x480 stripes"


def train_small(work: Path) -> Path:
    from upright.train import train_dataset

    for vertical, name in ((True, "vertical"), (False, "horizontal")):
        (work / "data" / name).mkdir(parents=True, exist_ok=True)
        for i in range(8):
            (work / "data" / name / f"{i}.jpg").write_bytes(_jpeg(_stripes(vertical, i, (160, 120))))
    train_dataset(work / "data", work / "model", progress=False)
    return work / "model"


def start(model_dir: Path, lan: bool, config: Path) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "upright.cli", "serve", str(model_dir), "--host", "127.0.0.1", "--port", "0"]
    env = {**os.environ, "UPRIGHT_CONFIG_DIR": str(config),
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd + (["--lan"] if lan else []), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    line = proc.stdout.readline()
    found = re.search(r"upright serve: (\S+)", line)
    if not found:
        proc.kill()
        raise RuntimeError(f"upright serve did not start: {line!r}")
    return proc, found.group(1)


def measure(url: str, verify, payloads: list[bytes], turns: bool, warmup: int = 2) -> dict:
    import httpx

    ms, model_ms, labels, turn_tests = [], [], set(), 0
    with httpx.Client(verify=verify, timeout=120, follow_redirects=True) as c:
        c.get(url)  # the phone opens the link: token -> cookie
        base = url.split("?")[0]
        params = {"turns": "1"} if turns else {}
        for i, data in enumerate(payloads[:warmup] + payloads):
            t0 = time.perf_counter()
            r = c.post(base + "api/predict", params=params, files={"file": ("camera.jpg", data, "image/jpeg")})
            elapsed = (time.perf_counter() - t0) * 1000
            r.raise_for_status()
            if i >= warmup:
                answer = r.json()
                ms.append(elapsed)
                model_ms.append(answer["timings"]["model_ms"])
                labels.add(answer["predictions"][0]["label"])
                turn_tests += len((answer.get("turn_test") or {}).get("turns", [])) == 4
    p50 = statistics.median(ms)
    return {"frames": len(ms), "p50_ms": p50, "p95_ms": sorted(ms)[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))],
            "model_ms": statistics.median(model_ms), "fps": 1000 / max(p50, LIVE_MIN_GAP_MS),
            "labels": sorted(labels), "turn_tests": turn_tests}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    ap.add_argument("--frames", type=int, default=None, help="frames per row (default 30)")
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: train a small one here)")
    args = ap.parse_args(argv)
    n = args.frames or (4 if args.quick else 30)
    with tempfile.TemporaryDirectory(prefix="upright-bench-phone-") as tmp:
        work = Path(tmp)
        model_dir = args.model or train_small(work)
        payloads, origin = frames(n)
        print(f"machine: {machine('onnxruntime', 'cryptography')}")
        print(f"frames: {origin}; model: {model_dir.name}")
        rows = []
        for label, lan, turns in (("http", False, False), ("https+token", True, False), ("https+turns", True, True)):
            proc, url = start(model_dir, lan, work / "config")
            try:
                verify = ssl.create_default_context(cafile=str(work / "config" / "serve-tls" / "cert.pem")) if lan else True
                rows.append({"label": label, **measure(url, verify, payloads, turns, 1 if args.quick else 3)})
            finally:
                proc.terminate()
                proc.wait(20)
    print()
    print(f"{'one client, sequential':<24}{'frames':>7}{'p50 ms':>9}{'p95 ms':>9}{'model ms':>10}{'frames/s':>10}")
    for r in rows:
        print(f"{r['label']:<24}{r['frames']:>7}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}{r['model_ms']:>10.1f}{r['fps']:>10.1f}")
    print(f"(frames/s: what the live camera reaches at that round trip, capped at {1000 // LIVE_MIN_GAP_MS}/s "
          "by the page; on a phone, add the Wi-Fi round trip and the upload)")
    plain, tls, turn = rows
    print(f"summary: https+token {tls['p50_ms'] / plain['p50_ms']:.2f}x the http round trip; the turn test "
          f"{turn['p50_ms'] / tls['p50_ms']:.2f}x a plain frame (model {turn['model_ms'] / max(tls['model_ms'], 1e-9):.2f}x "
          "for 4 views in one call)")
    return {"rows": rows, "frames": origin}


if __name__ == "__main__":
    main()
