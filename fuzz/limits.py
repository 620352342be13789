"""The memory and time contract, measured: worst cases at the default pixel limit, and the
hostile families of fuzz/families.py (issue 23).

    python fuzz/limits.py [--quick]             # large legitimate files, sized and full reads
    python fuzz/limits.py --families [--timeout S] [--only a,b]
                                                # every family: describe and a sized read (224)

Each case runs in a fresh process; a line gives the file, the call, the child's peak RSS
(VmHWM, including the ~70 MB of Python + Pillow + numpy), its time (CPU seconds for the large
files, wall seconds for the families) and what came back. A family call past --timeout (60 s)
is killed and shown as such. --quick uses 48 MP files instead of 200 MP ones.
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

PROBE = """
import sys, time
from upright import UnreadableImage, describe, open_upright
size = int(sys.argv[2]) or None
t = time.process_time()
if sys.argv[3] == "describe":
    facts = describe(sys.argv[1])
    result = ("unreadable: " + facts.unreadable[:70]) if facts.unreadable else \
        "x".join(map(str, facts.stored_size)) + f" frames={facts.n_frames}"
else:
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


def probe(path: Path, size: int, call: str, timeout: float) -> tuple[str, str, str]:
    """(peak RSS MB, seconds, result) of one call in a fresh process."""
    t0 = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, "-c", PROBE, str(path), str(size), call], capture_output=True,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "?", f">{timeout:g}", "killed: time limit"
    wall = f"{time.perf_counter() - t0:.1f}"
    parts = out.stdout.split(maxsplit=2)
    if len(parts) < 3:
        return "?", wall, ("crashed: " + (out.stderr.strip().splitlines() or ["?"])[-1])[:80]
    return parts[0], wall, parts[2].strip()


def large_files(quick: bool) -> None:
    w, h = (8000, 6000) if quick else (16320, 12240)  # 200 MP: the largest phone sensors
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
            out = subprocess.run([sys.executable, "-c", PROBE, str(path), str(size), "read"], capture_output=True,
                                 text=True)
            rss, cpu, *result = (out.stdout.split(maxsplit=2) or ["?", "?", out.stderr[-200:]])
            print(f"{what:24s} {size or 'full':>6} {rss:>11s} {cpu:>6s}  {' '.join(result).strip()}", flush=True)
        path.unlink()


def families(timeout: float, only: list[str] | None) -> None:
    sys.path.insert(0, str(HERE))
    import families as fam

    tmp = Path(tempfile.mkdtemp(prefix="upright-families-"))
    print(f"{'family':22s} {'file bytes':>13s} {'call':>9s} {'peak RSS MB':>11s} {'wall s':>6s}  result")
    for name in fam.FAMILIES:
        if only and name not in only:
            continue
        path = fam.write(tmp, name)
        for call, size in (("describe", 0), ("read 224", 224)):
            rss, wall, result = probe(path, size, call.split()[0], timeout)
            print(f"{name:22s} {path.stat().st_size:>13,d} {call:>9s} {rss:>11s} {wall:>6s}  {result}", flush=True)
        path.unlink()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--families", action="store_true", help="measure the hostile families instead")
    ap.add_argument("--timeout", type=float, default=60, help="seconds per family call before it is killed")
    ap.add_argument("--only", default="", help="comma-separated family names")
    args = ap.parse_args()
    if args.families:
        families(args.timeout, [n for n in args.only.split(",") if n] or None)
    else:
        large_files(args.quick)


if __name__ == "__main__":
    main()
