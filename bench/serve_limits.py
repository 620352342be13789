"""`upright serve` against hostile clients: what it reads, how long it waits, what it keeps.

Starts `upright serve MODEL` in its own process on 127.0.0.1 (default limits: 25 MB uploads)
and measures, with raw sockets:

  413 declared   a POST announcing Content-Length 200 MB, body streamed as fast as the socket
                 takes it: bytes the client had sent when the 413 arrived (an upper bound on
                 what the server read: the kernel's socket buffers hold part of it)
  413 chunked    the same body chunked (no length: the server has to read up to the limit)
  slow head      a request head sent one byte per second: seconds until the server answers
                 and closes (capped at --patience)
  slow body      a full head, then one body byte per second
  idle body      a full head, then nothing
  burst RSS      the server's resident memory (VmRSS, /proc) after a warm-up, at the peak
                 of --burst concurrent uploads of 12 MP photos (VmHWM), and once the burst
                 is over; three bursts, JPEG and PNG

Model: --model DIR, else a small one trained here on generated pictures.
Usage: python bench/serve_limits.py [--model DIR] [--burst N] [--patience S]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402


def train_small(root: Path) -> Path:
    from upright.train import train_dataset

    rng = np.random.default_rng(0)
    for label, axis in (("vertical", 1), ("horizontal", 0)):
        for i in range(8):
            period = int(rng.integers(10, 24))
            stripes = (np.arange(160 if axis else 120) // (period // 2)) % 2
            arr = np.broadcast_to(stripes[None, :] if axis else stripes[:, None], (120, 160))
            img = Image.fromarray((arr * 180 + 40).astype(np.uint8)).convert("RGB")
            (root / "data" / label).mkdir(parents=True, exist_ok=True)
            img.save(root / "data" / label / f"{i}.jpg", quality=90)
    train_dataset(root / "data", root / "model", progress=False)
    return root / "model"


def start_server(model: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "upright.cli", "serve", str(model), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("upright serve: http://"):
        proc.kill()
        raise SystemExit(f"server did not start: {line} {proc.stderr.read()}")
    port = int(line.split()[2].rstrip("/").rsplit(":", 1)[1])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the address is printed before uvicorn starts
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not answer within 60 s")


def status_of(resp: bytes) -> str:
    if not resp:
        return "no answer"
    head, _, body = resp.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode("latin-1")
    try:
        return f"{status.split(' ', 1)[1]} {json.loads(body)['error'][:60]!r}"
    except Exception:
        return f"{status} (body {body[:40]!r})"


def oversized(port: int, total: int, chunked: bool) -> tuple[int, str]:
    """Stream `total` body bytes; return (bytes sent when the answer arrived, answer)."""
    s = socket.create_connection(("127.0.0.1", port))
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    s.sendall(f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n{framing}\r\n\r\n".encode())
    s.setblocking(False)
    block = b"\xff" * 65536
    piece = (b"10000\r\n" + block + b"\r\n") if chunked else block
    sent, resp = 0, b""
    while sent < total:
        r, w, _ = select.select([s], [s], [], 10)
        if r:
            data = s.recv(65536)
            resp += data
            if not data or b"\r\n\r\n" in resp:
                break
        elif w:
            try:
                sent += s.send(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            break
    s.setblocking(True)
    s.settimeout(5)
    try:
        while b"\r\n\r\n" not in resp or len(resp.partition(b"\r\n\r\n")[2]) < 20:
            data = s.recv(65536)
            if not data:
                break
            resp += data
    except OSError:
        pass
    s.close()
    return sent, status_of(resp)


def slow(port: int, head: bytes, then: bytes, patience: float) -> tuple[float, str]:
    """Send `head` one byte per second (if it is the slow part) or at once, then `then`
    one byte per second; return (seconds until the server answered or closed, answer)."""
    s = socket.create_connection(("127.0.0.1", port))
    t0 = time.monotonic()
    resp = b""
    drip = list(head) if not then else []
    if then:
        s.sendall(head)
        drip = list(then)
    s.settimeout(1.0)
    while time.monotonic() - t0 < patience:
        if drip:
            try:
                s.send(bytes([drip.pop(0)]))
            except OSError:
                break
        try:
            data = s.recv(65536)
            if not data:
                break
            resp += data
        except socket.timeout:
            continue
        except OSError:
            break
    else:
        s.close()
        return patience, f"still open after {patience:g} s"
    s.close()
    return time.monotonic() - t0, status_of(resp)


def rss(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB."""
    vals = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            k, v = line.split(":")
            vals[k] = int(v.split()[0]) / 1024
    return vals["VmRSS"], vals["VmHWM"]


def reset_hwm(pid: int) -> None:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def photo(kind: str, seed: int, quality: int = 90) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:3000, 0:4000]
    arr = np.stack([(x * 255 // 4000), (y * 255 // 3000), ((x + y) % 256)], -1).astype(np.int16)
    if kind == "jpeg":  # camera-like noise; the PNG stays smooth so it fits the 25 MB limit
        arr += rng.integers(-12, 13, arr.shape, dtype=np.int16)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality) if kind == "jpeg" else img.save(buf, "PNG")
    return buf.getvalue()


def post(port: int, data: bytes, ctype: str) -> int:
    import httpx

    r = httpx.post(f"http://127.0.0.1:{port}/api/predict", content=data, headers={"content-type": ctype},
                   timeout=300)
    return r.status_code


def burst(port: int, pid: int, uploads: list[tuple[bytes, str]]) -> tuple[float, list[int]]:
    reset_hwm(pid)
    codes: list[int] = []
    threads = [threading.Thread(target=lambda d=d, c=c: codes.append(post(port, d, c))) for d, c in uploads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return rss(pid)[1], codes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--burst", type=int, default=16)
    ap.add_argument("--patience", type=float, default=30.0)
    ap.add_argument("--rounds", type=int, default=3, help="bursts of each kind")
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality of the uploads (98: about 8 MB)")
    ap.add_argument("--skip-slow", action="store_true", help="only the memory part")
    args = ap.parse_args()
    print(f"# serve limits: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or train_small(Path(tmp))
        proc, port = start_server(model)
        try:
            rows, summary = [], []
            for chunked in (() if args.skip_slow else (False, True)):
                sent, answer = oversized(port, 200_000_000, chunked)
                rows.append((f"413 {'chunked' if chunked else 'declared'} (limit 25 MB, 200 MB body)",
                             f"{sent / 1e6:.1f} MB sent when answered", answer))
                summary.append(f"{'chunked' if chunked else 'declared'} 200 MB answered after {sent / 1e6:.1f} MB")
            head = b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 5000\r\n\r\n"
            slow_cases = (("slow head (1 byte/s)", b""), ("slow body (1 byte/s)", b"\xff" * 5000),
                          ("idle body (head, then nothing)", None))
            for name, then in (() if args.skip_slow else slow_cases):
                secs, answer = _idle(port, head, args.patience) if then is None else slow(port, head, then, args.patience)
                rows.append((name, f"{secs:.1f} s until answered/closed", answer))
                summary.append(f"{name.split(' (')[0]} {'held' if answer.startswith('still') else 'closed at'} "
                               f"{secs:.0f} s")
            if rows:
                print("\n| client | measured | server's answer |\n|---|---|---|")
            for r in rows:
                print(f"| {r[0]} | {r[1]} | {r[2]} |")
            print(f"\n| burst ({args.burst} concurrent 12 MP uploads) | RSS before | peak (VmHWM) | RSS after | answers |")
            print("|---|---|---|---|---|")
            jpeg, png = photo("jpeg", 1, args.quality), photo("png", 2)
            for _ in range(3):  # warm-up: lazy initialisation is not a leak
                post(port, jpeg, "image/jpeg")
                post(port, png, "image/png")
            time.sleep(1)
            start = rss(proc.pid)[0]
            top = 0.0
            for name, up in [(f"JPEG {i + 1}", [(jpeg, "image/jpeg")] * args.burst) for i in range(args.rounds)] + \
                            [(f"PNG {i + 1}", [(png, "image/png")] * args.burst) for i in range(args.rounds)]:
                before = rss(proc.pid)[0]
                peak, codes = burst(port, proc.pid, up)
                top = max(top, peak)
                time.sleep(3)
                after = rss(proc.pid)[0]
                print(f"| {name} ({len(up[0][0]) / 1e6:.1f} MB each) | {before:.0f} MB | {peak:.0f} MB | {after:.0f} MB "
                      f"| {sorted(set(codes))} |")
            summary.append(f"RSS {start:.0f} MB after warm-up, {top:.0f} MB at the peak of a burst, "
                           f"{after:.0f} MB after {2 * args.rounds} bursts")
            print("\nsummary: " + "; ".join(summary))
        finally:
            proc.terminate()
            proc.wait(15)


def _idle(port: int, head: bytes, patience: float) -> tuple[float, str]:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(head)
    s.settimeout(patience)
    t0 = time.monotonic()
    resp = b""
    try:
        while True:
            data = s.recv(65536)
            if not data:
                break
            resp += data
    except socket.timeout:
        s.close()
        return patience, f"still open after {patience:g} s"
    except OSError:
        pass
    s.close()
    return time.monotonic() - t0, status_of(resp)


if __name__ == "__main__":
    main()
