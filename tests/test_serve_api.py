"""`upright serve`: the HTTP API against a real uvicorn on a free loopback port."""

from __future__ import annotations

import base64
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

from fixtures import LiveServer, SlowModel, asym_picture, encode, looks_upright, png_header_bomb, stripes_picture

LIMIT = 400_000  # a small upload limit so the 413 paths are cheap to hit


@pytest.fixture(scope="module")
def model(stripes_model_dir):
    from upright.model import load_model

    return load_model(stripes_model_dir)


@pytest.fixture(scope="module")
def server(model):
    from upright.serve import create_app

    with LiveServer(create_app(model, max_bytes=LIMIT, model_name="stripes")) as live:
        yield live


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def data_url_image(url: str) -> Image.Image:
    head, b64 = url.split(",", 1)
    assert head == "data:image/jpeg;base64"
    im = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert im.getexif().get(0x0112) is None  # untagged: browsers show these pixels as they are
    return im.convert("RGB")


def post(client, data: bytes, name="photo.jpg", ctype="image/jpeg", **params):
    return client.post("/api/predict", files={"file": (name, data, ctype)}, params=params)


def test_healthz_and_model_info(client, model):
    h = client.get("/healthz")
    assert h.status_code == 200
    body = h.json()
    assert body["status"] == "ok" and body["ready"] is True and body["model"] == "stripes"
    assert body["labels"] == model.labels
    info = client.get("/api/model").json()
    assert info["labels"] == model.labels and info["backbone"] == model.backbone
    assert info["max_bytes"] == LIMIT and info["orientation_policy"] == "upright"
    assert 0 <= info["training"]["val_accuracy"] <= 1  # training figures from model.json


def test_page_and_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'type="file"' in page.text and 'capture="environment"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing external
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for path in ("/static/app.js", "/static/style.css"):
        r = client.get(path)
        assert r.status_code == 200 and "https://" not in r.text


def test_sideways_photo_is_classified_upright(client):
    """Vertical stripes stored sideways (EXIF 6): the stored pixels show horizontal stripes."""
    data = encode(stripes_picture("vertical", 101), "JPEG", 6)
    r = post(client, data, name="../../etc/passwd/sideways.jpg")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["path"] == "sideways.jpg"  # the name is echoed, never used as a path
    assert body["orientation"] == 6
    assert body["predictions"][0]["label"] == "vertical", body["predictions"]
    assert abs(sum(p["score"] for p in body["predictions"]) - 1) < 1e-3
    assert "EXIF 6" in body["orientation_note"] and "sideways" in body["orientation_note"]
    view, stored = data_url_image(body["view"]), data_url_image(body["stored_view"])
    assert view.width > view.height and stored.height > stored.width
    assert body["stored_size"] == [120, 160] and body["ms"] > 0


def test_view_is_upright_and_stored_view_is_rotated(client):
    r = post(client, encode(asym_picture(), "JPEG", 6))
    assert r.status_code == 200, r.text
    body = r.json()
    view, stored = data_url_image(body["view"]), data_url_image(body["stored_view"])
    assert looks_upright(view)
    assert not looks_upright(stored)
    assert looks_upright(stored.transpose(Image.Transpose.ROTATE_270))  # tag 6 = turn 90° clockwise


def test_untagged_photo_has_no_stored_view(client):
    r = post(client, encode(stripes_picture("horizontal", 102), "PNG"), name="h.png", ctype="image/png")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["orientation"] is None and body["stored_view"] is None
    assert body["predictions"][0]["label"] == "horizontal"
    assert r.json()["format"] == "PNG"


def test_raw_body_and_top_k(client):
    r = client.post("/api/predict", content=encode(stripes_picture("vertical", 103), "JPEG", 8),
                    headers={"content-type": "image/jpeg"}, params={"top_k": 1})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["path"] is None and body["orientation"] == 8 and len(body["predictions"]) == 1
    assert body["predictions"][0]["label"] == "vertical"


def test_bad_requests_get_json_errors_and_the_server_keeps_serving(client):
    good = encode(asym_picture(), "JPEG", 6)
    cases = [
        (post(client, b"hello, I am a text file\n", "notes.txt", "text/plain"), 415, "not an image"),
        (post(client, b"\x00\x01\x02binary junk" * 50, "junk.jpg"), 415, "not an image"),
        (post(client, good[: len(good) // 2], "cut.jpg"), 400, "trunc"),
        (post(client, png_header_bomb(), "bomb.png", "image/png"), 400, "decompression bomb"),
        (post(client, b"", "empty.jpg"), 400, "empty"),
        (post(client, b"\xff\xd8\xff" + b"\x00" * (LIMIT + 1000), "big.jpg"), 413, "too large"),
        (client.post("/api/predict", data={"note": "no file here"}), 400, "no file"),
        (client.post("/api/predict", files={"other": ("x.jpg", good, "image/jpeg")}), 400, "no file"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, (status, response.text)
        assert words in response.json()["error"].lower(), response.text
    # a chunked body without Content-Length is counted as it streams
    def chunks():
        for _ in range(LIMIT // 10_000 + 5):
            yield b"\xff" * 10_000

    r = client.post("/api/predict", content=chunks(), headers={"content-type": "image/jpeg"})
    assert r.status_code == 413 and "too large" in r.json()["error"]
    assert client.get("/nowhere").json() == {"error": "Not Found"}
    # still alive and still right
    assert client.get("/healthz").json()["status"] == "ok"
    r = post(client, encode(stripes_picture("vertical", 104), "JPEG", 6))
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "vertical"


def test_concurrent_requests_all_succeed(server):
    uploads = [(d, encode(stripes_picture(d, 200 + i), "JPEG", (6, 8, 3, 1)[i % 4]))
               for i, d in enumerate(["vertical", "horizontal"] * 6)]

    def one(item):
        want, data = item
        with httpx.Client(base_url=server.url, timeout=120) as c:
            r = post(c, data)
        return want, r.status_code, r.json()

    with ThreadPoolExecutor(len(uploads)) as pool:
        results = list(pool.map(one, uploads))
    assert all(status == 200 for _, status, _ in results), [r[2] for r in results if r[1] != 200]
    right = sum(body["predictions"][0]["label"] == want for want, _, body in results)
    assert right == len(results), [(w, b["predictions"]) for w, _, b in results]


def wait_until(check, what: str, seconds: float = 30.0):
    """Poll `check()` until true; fail (not hang) when it never becomes true."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def test_health_answers_while_the_model_is_busy_and_queued_requests_batch():
    """A stand-in model held inside its first prediction: /healthz answers meanwhile, and the
    requests that queue up behind it run together, at most --max-batch (4) per model call."""
    from upright.serve import create_app

    gate = threading.Event()
    slow = SlowModel(gate=gate)
    with LiveServer(create_app(slow)) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        data = encode(asym_picture(), "JPEG")
        results = []

        def fire():
            with httpx.Client(base_url=live.url, timeout=60) as cc:
                results.append(post(cc, data))

        first = threading.Thread(target=fire)
        first.start()
        wait_until(lambda: slow.calls == [1], "the first prediction started")
        h = c.get("/healthz")  # the model is held: an answer now proves health does not wait for it
        assert h.status_code == 200 and h.json()["busy"] is True and h.json()["images"] == 0
        rest = [threading.Thread(target=fire) for _ in range(5)]
        for t in rest:
            t.start()
        wait_until(lambda: c.get("/healthz").json()["queue"] == 5, "five requests queued")
        gate.set()
        for t in [first, *rest]:
            t.join(60)
        assert [r.status_code for r in results] == [200] * 6
        assert slow.calls == [1, 4, 1]  # the queue was batched, 4 at most per call
        assert sorted(r.json()["timings"]["batch"] for r in results) == [1, 1, 4, 4, 4, 4]


class WarmingModel(SlowModel):
    """A stand-in whose warm-up waits for `warmed` (an Event): the model the server warms first."""

    def __init__(self):
        super().__init__(delay=0.0)
        self.warmed = threading.Event()
        self.warm_calls = 0

    def warm_up(self):
        assert not self.calls, "warmed up after a prediction"
        self.warm_calls += 1
        self.warmed.wait(60)


def test_healthz_is_503_until_the_model_is_warm_and_the_warm_up_goes_first():
    from upright.serve import create_app

    slow = WarmingModel()
    live = LiveServer(create_app(slow))
    live.warm = None  # this test looks at the warm-up itself
    with live, httpx.Client(base_url=live.url, timeout=30) as c:
        h = c.get("/healthz")
        assert h.status_code == 503 and h.json()["ready"] is False and h.json()["status"] == "warming"
        answer = []
        early = threading.Thread(target=lambda: answer.append(post(c, encode(asym_picture(), "JPEG"))))
        early.start()  # a prediction that arrives while the model warms waits behind the warm-up
        wait_until(lambda: c.get("/healthz").json()["queue"] == 1, "the upload queued behind the warm-up")
        assert slow.calls == []
        slow.warmed.set()
        early.join(60)
        wait_until(lambda: c.get("/healthz").json()["batches"] == 1, "the upload's batch counted")
        h = c.get("/healthz")
        assert h.status_code == 200 and h.json()["ready"] is True and h.json()["status"] == "ok"
        assert h.json()["images"] == 1  # the warm-up is not counted
        assert answer[0].status_code == 200 and slow.warm_calls == 1 and slow.calls == [1]


def test_healthz_ready_means_the_onnx_session_exists(stripes_model_dir, monkeypatch):
    """The real model: once /healthz says ready, its ONNX Runtime session has been made (and
    run, by the warm-up's prediction), so the first upload does not pay for it."""
    from upright import backbones
    from upright.model import load_model
    from upright.serve import create_app

    monkeypatch.setattr(backbones, "_runners", {})  # no session from earlier tests in this process
    model = load_model(stripes_model_dir)
    live = LiveServer(create_app(model, model_name="stripes"))
    live.warm = None
    with live, httpx.Client(base_url=live.url, timeout=30) as c:
        wait_until(lambda: c.get("/healthz").status_code == 200, "ready", seconds=120)
        assert [r.name for r in backbones._runners.values()] == [model.backbone]
        assert model.runner is next(iter(backbones._runners.values()))


@pytest.mark.slow
def test_cli_serve_prints_its_url_and_serves(stripes_model_dir):
    """`upright serve MODEL --port 0`: one line with the URL on stdout, then it answers."""
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "upright.cli", "serve", str(stripes_model_dir), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("upright serve: http://127.0.0.1:"), (line, proc.stderr.read() if proc.poll() else "")
        url = line.split()[2].rstrip("/")
        assert httpx.get(url + "/healthz", timeout=30).json()["labels"] == ["horizontal", "vertical"]
        # the same port again: a one-line error, exit 2, no traceback
        port = url.rsplit(":", 1)[1]
        busy = subprocess.run([sys.executable, "-m", "upright.cli", "serve", str(stripes_model_dir), "--port", port],
                              capture_output=True, text=True, timeout=120)
        assert busy.returncode == 2 and "already in use" in busy.stderr and "Traceback" not in busy.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
    assert proc.returncode in (0, -signal.SIGINT, 130), proc.stderr.read()
    missing = subprocess.run([sys.executable, "-m", "upright.cli", "serve", os.fspath(stripes_model_dir) + "-nope"],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr


def test_bad_query_parameter_is_a_json_400(client):
    r = post(client, encode(asym_picture()), top_k="many")
    assert r.status_code == 400 and "top_k" in r.json()["error"]
    r = post(client, encode(stripes_picture("vertical", 105)), top_k=0)
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1  # clamped to 1..n_labels


def test_real_world_orientation_examples_all_come_back_upright(client, shared_data):
    """exif-orientation-examples: Landscape_0..8 must all give the same upright view."""
    folder = shared_data / "exif-orientation-examples"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    import numpy as np

    views = {}
    for n in range(9):
        body = post(client, (folder / f"Landscape_{n}.jpg").read_bytes(), f"Landscape_{n}.jpg").json()
        assert (body["stored_view"] is not None) == (n >= 2), (n, body["orientation_note"])
        views[n] = np.asarray(data_url_image(body["view"]), dtype=np.float32)
    for n in range(9):
        assert views[n].shape == views[1].shape, n
        assert np.abs(views[n] - views[1]).mean() < 12, n  # same picture, only JPEG noise apart
