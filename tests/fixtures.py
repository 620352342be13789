"""Test fixtures made in code: asymmetric pictures, phone-like orientation, datasets, a live server.

Nothing here downloads anything. Every fixture writes real files with real encoders. These are
plain builders that tests import; the shared pytest fixtures (a trained model per session)
are in conftest.py and build on them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from upright.imaging import open_stored, open_upright, store_as

# Corner colours of the asymmetric picture, clockwise from top-left.
RED, GREEN, BLUE, YELLOW = (220, 30, 30), (30, 200, 40), (30, 40, 220), (240, 220, 30)
GREY = (128, 128, 128)


def asym_picture(w: int = 96, h: int = 64) -> Image.Image:
    """A landscape picture with a distinct colour block in each corner (upright reference)."""
    arr = np.full((h, w, 3), GREY, np.uint8)
    bh, bw = h // 3, w // 3
    arr[:bh, :bw] = RED
    arr[:bh, -bw:] = GREEN
    arr[-bh:, :bw] = BLUE
    arr[-bh:, -bw:] = YELLOW
    return Image.fromarray(arr, "RGB")


def corners(img: Image.Image) -> list[tuple[int, int, int]]:
    """The colours at the centres of the four corner blocks: TL, TR, BL, BR."""
    img = img.convert("RGB")
    w, h = img.size
    xs, ys = (w // 6, w - 1 - w // 6), (h // 6, h - 1 - h // 6)
    return [img.getpixel((x, y)) for y in ys for x in xs]


def same_colour(a, b, tol: int = 40) -> bool:
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a, b))


def looks_upright(img: Image.Image, tol: int = 40) -> bool:
    """True when img shows asym_picture the right way up (corner colours in place, landscape)."""
    got = corners(img)
    want = [RED, GREEN, BLUE, YELLOW]
    return img.size[0] > img.size[1] and all(same_colour(g, w, tol) for g, w in zip(got, want))


def exif_bytes(orientation: int | None = None, make: str | None = None, model: str | None = None) -> bytes:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    return exif.tobytes()


def encode(img: Image.Image, fmt: str = "JPEG", orientation: int | None = None,
           make: str | None = None, model: str | None = None, **kw) -> bytes:
    """Encode img as a camera stores it for `orientation` (the picture itself is upright)."""
    stored = store_as(img, orientation) if orientation and 1 <= orientation <= 8 else img
    if orientation is not None or make or model:
        kw["exif"] = exif_bytes(orientation, make, model)
    if fmt == "JPEG":
        kw.setdefault("quality", 95)
    buf = io.BytesIO()
    stored.save(buf, fmt, **kw)
    return buf.getvalue()


def write_photo(path: Path, img: Image.Image, orientation: int | None = None, fmt: str = "JPEG", **kw) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(img, fmt, orientation, **kw))
    return path


def class_picture(label_index: int, variant: int, w: int = 160, h: int = 120) -> Image.Image:
    """A picture whose content depends on the class (stripes of a class hue) plus a variant."""
    rng = np.random.default_rng(1000 * label_index + variant)
    y, x = np.mgrid[0:h, 0:w]
    hue = np.array([(230, 60, 40), (40, 90, 230), (50, 200, 70), (230, 200, 40), (160, 60, 200)][label_index % 5])
    period = 8 + 6 * label_index
    stripes = ((x + y * (label_index % 2) + variant * 3) // period) % 2
    arr = np.where(stripes[..., None] == 1, hue, 255 - hue // 2).astype(np.float64)
    arr += rng.normal(0, 12, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def make_dataset(root: Path, n_per_class: int = 8, classes=("cat", "dog"), orientation=None, w=160, h=120) -> Path:
    """A folder-per-class dataset of distinct synthetic JPEGs. orientation: None, an int, or
    a dict label -> int (the per-class shortcut of the soda-can story)."""
    root = Path(root)
    for ci, label in enumerate(classes):
        o = orientation.get(label) if isinstance(orientation, dict) else orientation
        for i in range(n_per_class):
            write_photo(root / label / f"{label}_{i:03d}.jpg", class_picture(ci, i, w, h), o)
    return root


def upright_photos(root: Path, classes=("cat", "dog", "owl"), start: int = 100, n: int = 2) -> dict[str, list[Path]]:
    """Fresh upright test photos (no tag) of make_dataset's classes, variants not used in training."""
    out = {}
    for ci, lab in enumerate(classes):
        out[lab] = [write_photo(root / lab / f"t{i}.jpg", class_picture(ci, start + i)) for i in range(n)]
    return out


# -- Keras (upright.keras; tests/test_keras_loader.py, tests/test_keras_tf.py) -------------------
KERAS_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # Keras' ALLOWLIST_FORMATS


def orientation_tree(shared: os.PathLike, root) -> tuple[object, list[str]]:
    """exif-orientation-examples as two classes, landscape/ and portrait/ (links, nothing copied)."""
    src = os.path.join(shared, "exif-orientation-examples")
    names = sorted(n for n in os.listdir(src) if n.endswith(".jpg"))
    for n in names:
        folder = root / ("landscape" if n.startswith("Landscape") else "portrait")
        folder.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.join(src, n), folder / n)
    return root, names


def check_upright(images: np.ndarray, paths: list[str], size: tuple[int, int]) -> None:
    """Each image is its file read upright (resized as the loader does), the same picture for every
    tag, and for the files tagged 2-8 (flipped, turned) clearly not the stored pixels an EXIF-blind
    loader gives (Keras' own: tf.io.decode_image)."""
    assert (np.abs(images - images[0]).mean(axis=(1, 2, 3)) < 3).all()
    for img, path in zip(images, paths):
        want = np.asarray(open_upright(path, 200).resize(size[::-1], Image.Resampling.BILINEAR), np.float32)
        assert np.abs(img - want).mean() < 6, path
        if int(path[-5]) >= 2:
            stored = np.asarray(open_stored(path, 200).resize(size[::-1], Image.Resampling.BILINEAR), np.float32)
            assert np.abs(img - stored).mean() > 25, path


def tiny_keras_model(size: tuple[int, int], classes: int):
    """A small convolutional classifier with its own Rescaling layer, as Keras' tutorials build."""
    import keras

    layers = keras.layers
    model = keras.Sequential([keras.Input(size + (3,)), layers.Rescaling(1 / 255), layers.Conv2D(4, 3, activation="relu"),
                              layers.GlobalAveragePooling2D(), layers.Dense(classes)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def keras_tree(root):
    """3 classes (one nested folder, mixed-case extensions), a hidden class folder, a non-image."""
    pic = asym_picture()
    for c, n in (("b_dog", 5), ("a_cat", 4), ("c_owl", 3)):
        for i in range(n):
            ext = (".jpg", ".JPG", ".png", ".jpeg")[i % 4]
            sub = "deep/" if (c, i) == ("a_cat", 2) else ""
            write_photo(root / c / f"{sub}{i:02d}{ext}", pic, fmt="PNG" if ext == ".png" else "JPEG")
    write_photo(root / ".hidden" / "x.jpg", pic)
    (root / "b_dog" / "notes.txt").write_text("not a photo")
    return root


# -- audit datasets (a few KB per file) ---------------------------------------------------------
def confounded(root: Path, n: int = 20) -> Path:
    """'diet' shot on a phone that tags Orientation 6, 'zero' on one that stores pixels upright."""
    return make_dataset(root, n, ("diet", "zero"), orientation={"diet": 6, "zero": None})


def spread(root: Path, n: int = 20) -> Path:
    """Orientation tags 1, 3, 6, 8 spread evenly across both classes."""
    tags = (1, 3, 6, 8)
    for ci, label in enumerate(("diet", "zero")):
        for i in range(n):
            write_photo(root / label / f"{label}_{i:03d}.jpg", class_picture(ci, i), tags[i % 4])
    return root


def camera_leak(root: Path, n: int = 20) -> Path:
    """'cat' shot on an iPhone 12, 'dog' on a Canon EOS 80D (EXIF Make/Model), all upright."""
    for ci, (label, (make, model)) in enumerate({"cat": ("Apple", "iPhone 12"), "dog": ("Canon", "EOS 80D")}.items()):
        for i in range(n):
            write_photo(root / label / f"{label}_{i:03d}.jpg", class_picture(ci, i), 1, make=make, model=model)
    return root


def messy(root: Path, n: int = 12) -> Path:
    """Balanced classes plus the usual mess: an exact duplicate across labels and unreadable files."""
    make_dataset(root, n, ("cat", "dog"))
    shutil.copy(root / "cat" / "cat_000.jpg", root / "dog" / "dup_of_cat_000.jpg")
    (root / "cat" / "empty.jpg").write_bytes(b"")
    (root / "cat" / "notes.jpg").write_text("this is not a photo\n")
    data = (root / "dog" / "dog_001.jpg").read_bytes()
    (root / "dog" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    return root


# -- serving ---------------------------------------------------------------------------------
STRIPES = ("horizontal", "vertical")


def stripes_picture(direction: str, variant: int, w: int = 160, h: int = 120) -> Image.Image:
    """Dark/light stripes, vertical or horizontal; period, phase, colour and noise vary.

    A photo of vertical stripes stored sideways with EXIF Orientation 6 has horizontal stripes
    in its stored pixels, so a model of the two directions is right only if it reads upright.
    """
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
    for label in STRIPES:
        for i in range(n_per_class):
            write_photo(root / label / f"{label}_{i:03d}.jpg", stripes_picture(label, i))
    return root


class LiveServer:
    """A real uvicorn serving `app` on a free 127.0.0.1 port, in a background thread.
    With `cert` (a upright.serve.tls.Certificate) it serves https, as `serve --lan` does."""

    def __init__(self, app, cert=None, **limits):
        import uvicorn

        from upright.serve.app import bind_socket, server_config

        self.sock = bind_socket("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.url = f"{'https' if cert else 'http'}://127.0.0.1:{self.port}"
        ssl = {"ssl_certfile": str(cert.cert_path), "ssl_keyfile": str(cert.key_path)} if cert else {}
        self.server = uvicorn.Server(server_config(app, **limits, **ssl))  # the limits `upright serve` runs with
        self.warm = getattr(getattr(app, "state", None), "warm", None)  # serve's model warm-up
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="uvicorn-test", daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        if self.warm is not None:
            self.warm.result(timeout=120)  # ready, as /healthz would say
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


@contextlib.contextmanager
def serve_process(model_dir: Path, *args: str):
    """`upright serve MODEL --port 0` in its own process (its RSS is its own): yields (the
    process, its base URL) once /healthz says ready; stopped with SIGTERM afterwards."""
    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "upright.cli", "serve", str(model_dir), "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().split()[2].rstrip("/")
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        yield proc, url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()


def png_header_bomb(w: int = 40_000, h: int = 40_000) -> bytes:
    """A tiny PNG whose header claims w x h pixels (the decompression-bomb shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def rgba_png(w: int, h: int) -> bytes:
    """A w x h RGBA PNG of zero rows: under a MB, 4 bytes a pixel once decoded."""
    row = b"\x00" * (1 + 4 * w)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
            + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b""))


def png_with_text(png: bytes, text: str) -> bytes:
    """The same picture in other bytes: a tEXt chunk after IHDR (signature 8 + IHDR 25 bytes)."""
    return png[:33] + _png_chunk(b"tEXt", b"Comment\x00" + text.encode("latin-1")) + png[33:]


def hostile_uploads(distinct: bool = False) -> list[bytes]:
    """Issue 23's eight concurrent uploads: three 200 MP RGBA PNGs (each priced about 840 MB to
    decode: they must take turns in a decode budget; `distinct`: three different files) and
    five hostile families of fuzz/families.py (refused from their headers)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
    import families

    big = rgba_png(16320, 12240)
    pngs = [png_with_text(big, f"copy {i}") if distinct else big for i in range(3)]
    return pngs + [families.webp_lossless_canvas(pad=70_000), families.avif_extra_ispe(), families.bmp_rle_rows(),
                   families.jpeg_app1_flood(segments=20_000), families.tiff_planar_tiles()]


def peak_rss(pid: int, reset: bool = False) -> int:
    """The process's peak resident memory in bytes (VmHWM); `reset` starts a new peak from now."""
    if reset:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) << 10
    raise AssertionError("no VmHWM in /proc/PID/status")


def during(background: list, foreground, settle: float = 0.5):
    """Run each `background` callable in its own thread, then (after `settle` s) `foreground`
    here: (background results in order, foreground result, foreground seconds)."""
    results: list = [None] * len(background)

    def run(i, fn):
        results[i] = fn()

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(background)]
    for t in threads:
        t.start()
    time.sleep(settle)
    t0 = time.monotonic()
    answer = foreground()
    seconds = time.monotonic() - t0
    for t in threads:
        t.join()
    return results, answer, seconds


needs_proc_rss = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="reads RSS from /proc")


class SlowModel:
    """A stand-in with the Model interface whose predictions take `delay` seconds, or wait
    until `gate` (a threading.Event) is set: lets the tests prove /healthz answers while the
    model is busy and that queued requests batch."""

    labels = ["a", "b"]
    backbone = "slow-fake"
    meta = {"labels": ["a", "b"]}

    def __init__(self, delay: float = 1.0, gate: threading.Event | None = None):
        self.delay = delay
        self.gate = gate
        self.calls: list[int] = []

    def predict_images(self, images, top_k=5):
        self.calls.append(len(images))
        if self.gate is not None:
            self.gate.wait(60)
        else:
            time.sleep(self.delay)
        return [[("a", 0.75), ("b", 0.25)][:top_k] for _ in images]


def one_class_tagged(root: Path, n_classes: int, per: int = 15, share: float = 1.0, tag: int = 6) -> Path:
    """The seed's confound in any number of classes: `share` of class_00's photos stored sideways
    with EXIF `tag` (as a phone does), every other photo stored upright without a tag."""
    for ci in range(n_classes):
        label = f"class_{ci:02d}"
        k = round(share * per) if ci == 0 else 0
        for i in range(per):
            write_photo(root / label / f"{label}_{i:03d}.jpg", class_picture(ci, i, 48, 32), tag if i < k else None)
    return root


def random_tags(root: Path, n_classes: int, per: int = 15, seed: int = 0) -> Path:
    """A control: orientation tags (none, 6, 8, 3) drawn at random for every photo of every class."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for ci in range(n_classes):
        label = f"class_{ci:02d}"
        for i in range(per):
            tag = [None, None, 6, 8, 3][int(rng.integers(0, 5))]
            write_photo(root / label / f"{label}_{i:03d}.jpg", class_picture(ci, i, 48, 32), tag)
    return root


def y4m_video(img: Image.Image, frames: int = 3, fps: int = 10) -> bytes:
    """`img` as a still YUV4MPEG2 video (4:2:0), for Chromium's fake camera
    (--use-file-for-fake-video-capture=FILE.y4m): the camera then shows exactly this picture."""
    w, h = img.size
    if w % 2 or h % 2:
        raise ValueError("4:2:0 needs an even width and height")
    y, cb, cr = img.convert("RGB").convert("YCbCr").split()
    half = (w // 2, h // 2)
    planes = y.tobytes() + cb.resize(half, Image.Resampling.BOX).tobytes() + cr.resize(half, Image.Resampling.BOX).tobytes()
    header = f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode()
    return header + b"".join(b"FRAME\n" + planes for _ in range(frames))


def marked_stripes(direction: str, w: int, h: int, variant: int = 400) -> Image.Image:
    """stripes_picture with small asym_picture corner marks (red, green / blue, yellow), so a
    test can tell both the class and which way up the picture arrived."""
    arr = np.asarray(stripes_picture(direction, variant, w, h)).copy()
    m = max(4, min(w, h) // 6)
    arr[:m, :m], arr[:m, -m:], arr[-m:, :m], arr[-m:, -m:] = RED, GREEN, BLUE, YELLOW
    return Image.fromarray(arr, "RGB")


# -- a real browser: Debian's chromium through Playwright (never a downloaded browser) ------
CHROMIUM = Path(os.environ.get("UPRIGHT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 # a synthetic camera (no device, no permission prompt) for the live-camera tests
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"  # screenshots, for people to look at


def browser_unavailable(reason: str):
    """Skip, or fail under UPRIGHT_REQUIRE_BROWSER=1 (CI), where the browser tests must run."""
    if os.environ.get("UPRIGHT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (UPRIGHT_REQUIRE_BROWSER=1: the browser test must run)")
    pytest.skip(reason)


def require_module(name: str, env: str, why: str):
    """Import `name`, else skip; fail instead under `env`=1 (the side venv's run in CI must not skip)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        if os.environ.get(env) == "1":
            pytest.fail(f"{name} is not installed ({env}=1)")
        pytest.skip(why, allow_module_level=True)


def sync_playwright():
    """Playwright's sync_playwright() once chromium and playwright are known to be there."""
    try:
        from playwright.sync_api import sync_playwright as start
    except ImportError:  # pragma: no cover
        browser_unavailable("playwright (python) is not installed")
    if not CHROMIUM.exists():
        browser_unavailable(f"{CHROMIUM} not found (apt-get install chromium)")
    return start()


def launch_chromium(pw, *extra_args: str):
    return pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + list(extra_args), headless=True)


def load_bench(name: str):
    """bench/NAME.py as a module, for the smoke tests that run each benchmark tiny; bench/ goes on
    sys.path first, as when the script is run, so its sibling imports (_machine) resolve."""
    bench = Path(__file__).resolve().parents[1] / "bench"
    if str(bench) not in sys.path:
        sys.path.insert(0, str(bench))
    path = bench / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: Python source for a subprocess to be killed mid-run: every ONNX Runtime call prints "batch"
#: and then sleeps 0.3 s (backbones.get_runner is swapped for a slow one; batches of BATCH views).
SLOW_RUNNER = """
import sys, time
from upright import backbones
from upright.pipeline import embed, shard
orig = backbones.get_runner
def slow_runner(*a, **k):
    r = orig(*a, **k)
    class Slow:
        key, spec = r.key, r.spec
        def __call__(self, x):
            out = r(x)
            print('batch', flush=True)
            time.sleep(0.3)
            return out
    return Slow()
backbones.get_runner = slow_runner
"""
