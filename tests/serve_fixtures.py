"""Shared helpers for the serve tests: a real trained model, a real uvicorn on loopback.

The model is trained once per test session (module-level cache, so both test modules that
import it share one) with `upright.train.train_dataset` on a tiny generated dataset whose
two classes differ ONLY in stripe direction: "vertical" vs "horizontal". A photo of vertical
stripes stored sideways with EXIF Orientation 6 has horizontal stripes in its stored pixels,
so the server gets the right label only if it reads the picture upright.
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from fixtures import write_photo

LABELS = ("horizontal", "vertical")
_CACHE: dict[str, Path] = {}


def stripes_picture(direction: str, variant: int, w: int = 160, h: int = 120) -> Image.Image:
    """Dark/light stripes, vertical or horizontal; period, phase, colour and noise vary."""
    rng = np.random.default_rng(7919 * (direction == "vertical") + variant)
    period = int(rng.integers(12, 22))
    phase = int(rng.integers(0, period))
    y, x = np.mgrid[0:h, 0:w]
    coord = x if direction == "vertical" else y
    on = ((coord + phase) // (period // 2)) % 2 == 1
    base = rng.integers(40, 215, size=3)
    arr = np.where(on[..., None], base, 255 - base).astype(np.float64)
    arr += rng.normal(0, 10, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def make_stripes_dataset(root: Path, n_per_class: int = 8) -> Path:
    for label in LABELS:
        for i in range(n_per_class):
            write_photo(root / label / f"{label}_{i:03d}.jpg", stripes_picture(label, i))
    return root


def trained_model_dir(tmp_path_factory) -> Path:
    """Train (once per session) a real upright model: 2 classes x 8 generated photos."""
    if "model" not in _CACHE:
        from upright.train import train_dataset

        root = tmp_path_factory.mktemp("serve-model")
        data = make_stripes_dataset(root / "data", 8)
        train_dataset(data, root / "model", progress=False)
        _CACHE["model"] = root / "model"
    return _CACHE["model"]


class LiveServer:
    """A real uvicorn serving `app` on a free 127.0.0.1 port, in a background thread."""

    def __init__(self, app, **limits):
        import uvicorn

        from upright.serve.app import bind_socket, server_config

        self.sock = bind_socket("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(server_config(app, **limits))  # the limits `upright serve` runs with
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="uvicorn-test", daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


def png_header_bomb(w: int = 40_000, h: int = 40_000) -> bytes:
    """A tiny PNG whose header claims w x h pixels (the decompression-bomb shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


class SlowModel:
    """A stand-in with the Model interface whose predictions take `delay` seconds: lets the
    tests prove /healthz answers while the model is busy and that queued requests batch."""

    labels = ["a", "b"]
    backbone = "slow-fake"
    meta = {"labels": ["a", "b"]}

    def __init__(self, delay: float = 1.0):
        self.delay = delay
        self.calls: list[int] = []

    def predict_images(self, images, top_k=5):
        self.calls.append(len(images))
        time.sleep(self.delay)
        return [[("a", 0.75), ("b", 0.25)][:top_k] for _ in images]
