"""The memory and time contract, measured: worst cases at the default pixel limit.

    python fuzz/limits.py [--quick]

Each case is decoded in a fresh process; the line gives the file, the call, the child's
peak RSS (VmHWM, including the ~70 MB of Python + Pillow + numpy) and its CPU seconds.
--quick uses 48 MP files instead of 200 MP ones (a minute instead of several).
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

PROBE = """
import sys, time
from upright import UnreadableImage, open_upright
size = int(sys.argv[2]) or None
t = time.process_time()
try:
    img = open_upright(sys.argv[1], size=size)
    result = "x".join(map(str, img.size))
except UnreadableImage as exc:
    result = "refused: " + exc.reason[:70]
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(peak // 1024, round(time.process_time() - t, 2), result)
"""


def png(path: Path, w: int, h: int, colour: int, bits: int = 8) -> Path:
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    row = b"\x00" + bytes(w * channels * bits // 8)
    comp = zlib.compressobj(1)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")

        def chunk(kind, data):
            f.write(struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data)))

        chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bits, colour, 0, 0, 0))
        body = [comp.compress(row) for _ in range(h)] + [comp.flush()]
        chunk(b"IDAT", b"".join(body))
        chunk(b"IEND", b"")
    return path


def jpeg(path: Path, w: int, h: int, progressive: bool = False) -> Path:
    from PIL import Image

    Image.new("RGB", (w, h), (120, 130, 140)).save(path, "JPEG", quality=80, progressive=progressive)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    w, h = (8000, 6000) if args.quick else (16320, 12240)  # 200 MP: the largest phone sensors
    tmp = Path(tempfile.mkdtemp(prefix="upright-limits-"))
    cases = [
        (png(tmp / "rgba.png", w, h, 6), "PNG RGBA 8-bit"),
        (png(tmp / "grey16.png", w, h, 0, 16), "PNG grey 16-bit"),
        (png(tmp / "rgb.png", w, h, 2), "PNG RGB 8-bit"),
        (jpeg(tmp / "base.jpg", w, h), "JPEG baseline"),
        (jpeg(tmp / "prog.jpg", w, h, True), "JPEG progressive 4:2:0"),
        (png(tmp / "thin.png", 1, 60000, 0), "PNG 1x60000"),
    ]
    print(f"{'file':24s} {'size':>6s} {'peak RSS MB':>11s} {'CPU s':>6s}  result")
    for path, what in cases:
        for size in (224, 0):
            out = subprocess.run([sys.executable, "-c", PROBE, str(path), str(size)], capture_output=True, text=True)
            rss, cpu, *result = (out.stdout.split(maxsplit=2) or ["?", "?", out.stderr[-200:]])
            print(f"{what:24s} {size or 'full':>6} {rss:>11s} {cpu:>6s}  {' '.join(result).strip()}", flush=True)
        path.unlink()


if __name__ == "__main__":
    main()
