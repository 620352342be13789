"""`upright serve` against hostile requests and uploads (issue 23): a head over 16 KiB, a
Content-Length with a Transfer-Encoding, cross-origin POSTs, and concurrent uploads that
each cost hundreds of MB to decode, which share one decode budget. A real uvicorn on
127.0.0.1; no timing assertions (deadlines only stop a test from hanging)."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import httpx
import pytest

from fixtures import (LiveServer, SlowModel, asym_picture, during, encode, hostile_uploads, needs_proc_rss,
                      peak_rss, serve_process)

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"
sys.path.insert(0, str(FUZZ))
import families  # noqa: E402 - fuzz/families.py


@pytest.fixture(scope="module")
def server():
    from upright.serve import create_app

    app = create_app(SlowModel(delay=0.0), max_bytes=2_000_000, body_idle_timeout=2.0, body_timeout=8.0)
    with LiveServer(app, header_timeout=2.0, linger_seconds=1.0) as live:
        yield live


def raw_request(server, data: bytes) -> tuple[int, bytes]:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        s.sendall(data)
        raw = b""
        while b"\r\n\r\n" not in raw or len(raw.partition(b"\r\n\r\n")[2]) < _length(raw):
            chunk = s.recv(65536)
            if not chunk:
                break
            raw += chunk
    finally:
        s.close()
    return int(raw.split()[1]), raw.partition(b"\r\n\r\n")[2]


def _length(raw: bytes) -> int:
    for line in raw.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def test_a_head_over_16_kib_sent_whole_gets_431(server):
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    status, body = raw_request(server, head)
    assert status == 431 and b"16 KiB" in body and body.startswith(b"{")
    ok = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fine: " + b"a" * 8_000 + b"\r\nConnection: close\r\n\r\n"
    assert raw_request(server, ok)[0] == 200


def test_content_length_with_transfer_encoding_is_refused(server):
    photo = encode(asym_picture(), "JPEG")
    chunked = f"{len(photo):x}\r\n".encode() + photo + b"\r\n0\r\n\r\n"
    req = (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
           b"Content-Length: " + str(len(photo)).encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
    status, body = raw_request(server, req)
    assert status == 400 and b"Transfer-Encoding" in body


@pytest.mark.parametrize("headers,status", [
    ({"Origin": "http://evil.example"}, 403),
    ({"Origin": "null"}, 403),
    ({"Sec-Fetch-Site": "cross-site"}, 403),
    ({"Sec-Fetch-Site": "same-site"}, 403),
    ({"Origin": "http://127.0.0.1:1"}, 403),  # another port is another origin
    ({}, 200),  # curl, scripts: no browser page behind them
    ({"Sec-Fetch-Site": "same-origin"}, 200),
    ({"Sec-Fetch-Site": "none"}, 200),
    ({"Origin": "SELF"}, 200),
])
def test_cross_origin_posts_are_refused(server, headers, status):
    headers = {k: (server.url if v == "SELF" else v) for k, v in headers.items()}
    r = httpx.post(f"{server.url}/api/predict", content=encode(asym_picture(), "JPEG"),
                   headers={"content-type": "image/jpeg", **headers}, timeout=30)
    assert r.status_code == status, r.text
    if status == 403:
        assert "cross-origin" in r.json()["error"]


def test_cross_origin_reads_of_safe_methods_pass(server):
    r = httpx.get(f"{server.url}/healthz", headers={"Origin": "http://evil.example"}, timeout=30)
    assert r.status_code == 200 and "decode_memory" in r.json()


def test_a_hostile_upload_is_refused_from_its_header(server):
    for name in ("webp_lossless_canvas", "tiff_planar_tiles", "bmp_rle_rows", "jpeg_com_flood"):
        data = families.FAMILIES[name]()
        if len(data) > 2_000_000:
            continue
        r = httpx.post(f"{server.url}/api/predict", content=data, timeout=60)
        assert r.status_code in (400, 415) and r.json()["error"], (name, r.text)


# ---- the shared decode budget ---------------------------------------------------------------

def test_the_budget_lets_one_big_decode_run_at_a_time_and_small_ones_pass():
    from upright.serve.budget import DecodeBudget

    async def main():
        budget = DecodeBudget(1000)
        order: list[str] = []
        big_in = asyncio.Event()

        async def big(tag):
            async with budget.hold(700):
                order.append(f"{tag} in")
                big_in.set()
                await asyncio.sleep(0.05)
                order.append(f"{tag} out")

        async def small():
            await big_in.wait()
            async with budget.hold(100):
                order.append("small")

        await asyncio.gather(big("a"), big("b"), small())
        return order, budget

    order, budget = asyncio.run(main())
    assert order.index("a out") < order.index("b in")  # never both big ones at once
    assert order.index("small") < order.index("a out")  # the small one fitted beside a big one
    assert budget.held == 0 and budget.peak <= 1000


@pytest.mark.slow
@needs_proc_rss
def test_eight_hostile_uploads_at_once_stay_under_the_budget(stripes_model_dir):
    """`upright serve` in its own process: 8 concurrent uploads (fixtures.hostile_uploads: three
    200 MP RGBA PNGs that take turns in the budget, five hostile families refused from their
    headers), while a normal photo is answered. Peak RSS stays under 1.5 GiB."""
    with serve_process(stripes_model_dir) as (proc, url):
        photo = encode(asym_picture(1600, 1200), "JPEG")
        assert httpx.post(url + "/api/predict", content=photo, timeout=120).status_code == 200
        peak_rss(proc.pid, reset=True)
        codes, normal, normal_s = during(
            [lambda d=d: httpx.post(url + "/api/predict", content=d, timeout=300).status_code
             for d in hostile_uploads()],
            lambda: httpx.post(url + "/api/predict", content=photo, timeout=300))
        peak = peak_rss(proc.pid)
        health = httpx.get(url + "/healthz", timeout=30).json()
        print(f"serve: peak RSS {peak / 2**20:.0f} MB with 8 hostile uploads; a normal photo answered in "
              f"{normal_s:.1f} s meanwhile; decode memory {health['decode_memory']}")
        assert normal.status_code == 200
        assert sorted(codes) == [200] * 3 + [400] * 5, codes
        assert health["decode_memory"]["peak_mb"] <= health["decode_memory"]["budget_mb"]
        assert peak < 1.5 * 2**30, peak


def test_loopback_only_refuses_a_foreign_host_name():
    """A page of another site that DNS-rebinds its name to 127.0.0.1 sends that name as Host:
    a loopback-only app answers it 400 and keeps answering its own loopback names."""
    from fastapi.testclient import TestClient

    from upright.serve import create_app

    app = create_app(SlowModel(delay=0.0), loopback_only=True)
    with TestClient(app, base_url="http://evil.example:8000") as client:
        res = client.get("/healthz")
        assert res.status_code == 400 and "loopback" in res.json()["error"]
    for name in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000"):
        with TestClient(app, base_url=f"http://{name}") as client:
            assert client.get("/healthz").status_code in (200, 503), name  # 503: still warming up


@pytest.mark.slow
def test_plain_serve_on_loopback_answers_only_loopback_host_names(stripes_model_dir):
    """`upright serve` on 127.0.0.1 without a token (the default) refuses a foreign Host."""
    with serve_process(stripes_model_dir) as (proc, url):
        port = url.rsplit(":", 1)[1]
        assert httpx.get(url + "/healthz", headers={"host": f"rebound.example:{port}"}, timeout=30).status_code == 400
        assert httpx.get(url + "/healthz", headers={"host": f"localhost:{port}"}, timeout=30).status_code == 200
        assert httpx.get(url + "/healthz", timeout=30).status_code == 200
