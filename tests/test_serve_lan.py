"""`upright serve --lan`: the certificate, https, the access token, the printed QR code, and
the turn test's API. Everything binds 127.0.0.1 only: the https + token server is the one
--lan starts, on loopback (`run(lan=True, host="127.0.0.1")`, `--lan --host 127.0.0.1`); no
test looks up or binds this machine's network interfaces.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from PIL import Image

from fixtures import (BLUE, GREEN, RED, YELLOW, LiveServer, SlowModel, asym_picture, corners, encode, same_colour,
                      stripes_picture)
from upright.errors import UprightError
from upright.serve.access import COOKIE, TokenGate, new_token
from upright.serve.lan import _usable, exposure_warning, is_loopback, link, qr_lines
from upright.serve.tls import REUSE_MARGIN, VALID_FOR, certificate_for

TOKEN = new_token()


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def trusting(cert) -> ssl.SSLContext:
    """A client context that trusts exactly this self-signed certificate (nothing skipped)."""
    return ssl.create_default_context(cafile=str(cert.cert_path))


# -- the certificate -----------------------------------------------------------------------------


def test_certificate_names_the_addresses_and_keeps_the_key_private(tmp_path):
    c = certificate_for(["192.0.2.10"], tmp_path / "tls")  # an address in a certificate only: nothing binds it
    assert not c.reused
    cert = load_cert(c.cert_path)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "192.0.2.10"}
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert VALID_FOR < life <= VALID_FOR + dt.timedelta(days=2)
    assert stat.S_IMODE(c.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(c.key_path.parent.stat().st_mode) == 0o700
    assert c.fingerprint == ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def test_certificate_is_reused_while_valid_and_covering(tmp_path):
    folder = tmp_path / "tls"
    first = certificate_for(["192.0.2.10"], folder)
    again = certificate_for(["192.0.2.10"], folder)
    assert again.reused and again.fingerprint == first.fingerprint
    assert certificate_for([], folder).reused  # loopback only: still covered
    moved = certificate_for(["198.51.100.7"], folder)  # the machine moved to another network
    assert not moved.reused and moved.fingerprint != first.fingerprint
    assert "198.51.100.7" in moved.addresses
    # About to expire: a new one, never a server on a certificate that dies mid-session.
    late = dt.datetime.now(dt.timezone.utc) + VALID_FOR - REUSE_MARGIN + dt.timedelta(days=1)
    renewed = certificate_for(["198.51.100.7"], folder, now=late)
    assert not renewed.reused and load_cert(renewed.cert_path).not_valid_after_utc > late + REUSE_MARGIN
    # Damaged files: made again, not a crash.
    (folder / "key.pem").write_text("not a key")
    assert not certificate_for(["198.51.100.7"], folder).reused
    with pytest.raises(UprightError, match="not an IP address"):
        certificate_for(["my-laptop"], folder)


def test_default_folder_is_the_config_dir():
    c = certificate_for([])
    assert Path(os.environ["UPRIGHT_CONFIG_DIR"]) / "serve-tls" == c.cert_path.parent  # conftest isolates it


# -- https + token -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(stripes_model_dir):
    from upright.model import load_model

    return load_model(stripes_model_dir)


@pytest.fixture(scope="module")
def secure(model, tmp_path_factory):
    """The app as --lan serves it: https with a certificate made here, and a token."""
    from upright.serve import create_app

    cert = certificate_for([], tmp_path_factory.mktemp("tls"))
    with LiveServer(create_app(model, model_name="stripes", token=TOKEN), cert=cert) as live:
        live.cert = cert
        yield live


def photo(direction="vertical", variant=500) -> bytes:
    return encode(stripes_picture(direction, variant), "JPEG")


def test_https_with_the_generated_certificate(secure):
    with httpx.Client(base_url=secure.url, verify=trusting(secure.cert), timeout=30) as c:
        r = c.get("/healthz", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and r.json()["status"] == "ok"
        assert r.extensions["http_version"] in (b"HTTP/1.1", b"HTTP/2")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(secure.url + "/healthz")  # a client that trusts nothing new refuses it: it is real TLS
    with pytest.raises(httpx.HTTPError):
        httpx.get(secure.url.replace("https://", "http://") + "/healthz", timeout=10)  # no clear text


@pytest.mark.parametrize("method,path", [("GET", "/"), ("GET", "/healthz"), ("GET", "/api/model"),
                                         ("GET", "/static/app.js"), ("GET", "/static/style.css"),
                                         ("GET", "/no-such-page"), ("POST", "/api/predict")])
def test_every_page_file_and_api_call_needs_the_token(secure, method, path):
    with httpx.Client(base_url=secure.url, verify=trusting(secure.cert), timeout=30) as c:
        files = {"file": ("p.jpg", photo(), "image/jpeg")} if method == "POST" else None
        for how in ({}, {"params": {"token": "wrong"}}, {"params": {"token": TOKEN[:-1]}},
                    {"headers": {"Authorization": "Bearer wrong"}}, {"headers": {"Cookie": f"{COOKIE}=wrong"}},
                    {"headers": {"Cookie": f"other={TOKEN}"}}, {"params": {"token": "é" + TOKEN}}):
            r = c.request(method, path, files=files, **how)
            assert r.status_code == 403, (how, r.status_code, r.text[:200])
            assert r.headers["content-type"] == "application/json" and "access token" in r.json()["error"]
            assert r.headers["x-content-type-options"] == "nosniff"  # the 403s carry the security headers
            assert TOKEN not in r.text
        r = c.request(method, path, files=files, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == (404 if path == "/no-such-page" else 200), r.text[:200]
        if path == "/api/predict":
            assert r.json()["predictions"][0]["label"] == "vertical"


def test_the_link_sets_a_strict_cookie_and_leaves_the_address_bar(secure):
    with httpx.Client(base_url=secure.url, verify=trusting(secure.cert), timeout=30) as c:
        r = c.get("/", params={"token": TOKEN})
        assert r.status_code == 303 and r.headers["location"] == "/"
        assert r.headers["cache-control"] == "no-store"
        cookie = r.headers["set-cookie"]
        parts = [p.strip() for p in cookie.split(";")]
        assert parts[0] == f"{COOKIE}={TOKEN}"
        assert {"HttpOnly", "Secure", "SameSite=Strict", "Path=/"} <= set(parts), cookie
        # From now on the cookie alone opens everything: the page, its files, the API.
        page = c.get("/")
        assert page.status_code == 200 and 'id="turn-btn"' in page.text
        assert c.get("/static/app.js").status_code == 200
        r = c.post("/api/predict", files={"file": ("p.jpg", photo("horizontal"), "image/jpeg")})
        assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "horizontal"
        # Other query parameters survive the redirect.
        r = c.get("/", params={"token": TOKEN, "lang": "en"}, follow_redirects=False)
        assert r.headers["location"] == "/?lang=en"
    # A wrong token in the link sets nothing.
    with httpx.Client(base_url=secure.url, verify=trusting(secure.cert), timeout=30) as c:
        r = c.get("/", params={"token": "guess"})
        assert r.status_code == 403 and "set-cookie" not in r.headers and not c.cookies


def test_token_gate_rejects_an_empty_token():
    with pytest.raises(ValueError):
        TokenGate(lambda *a: None, token="")


def test_plain_serve_has_no_token(model):
    """Plain `serve` on 127.0.0.1 stays as it was: no token, no cookie."""
    from upright.serve import create_app

    with LiveServer(create_app(model)) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        r = c.get("/")
        assert r.status_code == 200 and "set-cookie" not in r.headers


# -- what is printed -----------------------------------------------------------------------------


def test_exposure_warning_only_beyond_loopback():
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert is_loopback(host) and exposure_warning(host, 8000) is None
    for host in ("0.0.0.0", "192.168.1.20", "::"):
        warning = exposure_warning(host, 8000)
        assert warning and "--lan" in warning and "plain http" in warning and "uploaded" in warning
    assert link("192.0.2.10", 8443, "abc") == "https://192.0.2.10:8443/?token=abc"
    assert link("fe80::1", 8443) == "https://[fe80::1]:8443/"
    # Which addresses --lan offers a phone: IPv4, not loopback or link-local.
    assert [a for a in ("192.168.1.20", "127.0.1.1", "169.254.3.4", "10.0.0.2", "fe80::1", "bogus") if _usable(a)] \
        == ["192.168.1.20", "10.0.0.2"]


def test_lan_host_must_be_an_ip_address(cli, stripes_model_dir):
    code, out, err = cli("serve", stripes_model_dir, "--lan", "--host", "my-laptop", "--port", "0")
    assert code == 2 and "needs an IP address" in out + err and "Traceback" not in out + err


BLOCKS = {"█": (0, 0), "▀": (0, 1), "▄": (1, 0), " ": (1, 1)}  # (top, bottom) dark=1, as segno's compact


def qr_image(lines: list[str], px: int = 8) -> np.ndarray:
    """Terminal half-block lines (a full block = two light modules) -> a greyscale picture."""
    rows: list[list[int]] = []
    for line in lines:
        pairs = [BLOCKS[ch] for ch in line]
        rows.append([t for t, _ in pairs])
        rows.append([b for _, b in pairs])
    dark = np.array(rows, dtype=np.uint8)
    img = np.where(dark == 1, 0, 255).astype(np.uint8)
    img = np.pad(img, 4, constant_values=255)  # paper around the terminal
    return np.kron(img, np.ones((px, px), np.uint8))


def decode_qr(lines: list[str]) -> str:
    """What a phone's camera reads. OpenCV's classic detector misses about 1 code in 100 (the
    token, so the code, is random each start: a flaky test), so its ArUco-based detector and a
    few module sizes are tried too, as a camera moves."""
    import cv2

    for detector in (cv2.QRCodeDetector(), cv2.QRCodeDetectorAruco()):
        for px in (8, 6, 10):
            text, points, _ = detector.detectAndDecode(qr_image(lines, px))
            if points is not None and text:
                return text
    raise AssertionError("no QR code found")


def test_qr_lines_decode_to_the_link():
    url = f"https://192.0.2.10:8000/?token={TOKEN}"
    coloured = qr_lines(url)
    assert all(line.startswith("\033[97;40m") and line.endswith("\033[0m") for line in coloured)
    plain = qr_lines(url, colour=False)
    assert decode_qr(plain) == url
    assert len(plain) <= 30 and max(map(len, plain)) <= 60  # fits a terminal


ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.mark.slow
def test_serve_lan_prints_a_link_and_a_qr_code_that_work(stripes_model_dir, tmp_path):
    """The real CLI, `--lan --host 127.0.0.1`: https + token + QR on loopback only."""
    env = {**os.environ, "UPRIGHT_CONFIG_DIR": str(tmp_path / "config"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "upright.cli", "serve", str(stripes_model_dir), "--lan",
                             "--host", "127.0.0.1", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while not any("Ctrl+C" in line for line in lines):
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            lines.append(ANSI.sub("", line.rstrip("\n")))
        out = "\n".join(lines)
        url = re.search(r"upright serve: (https://127\.0\.0\.1:\d+/\?token=[\w-]+)", out).group(1)
        qr = [line[2:] for line in lines if line[2:] and set(line[2:]) <= set(BLOCKS) and "█" in line]
        assert decode_qr(qr) == url
        assert "self-signed" in out and "not private" in out and "Accept it once" in out
        assert "Certificate SHA-256:" in out and str(tmp_path / "config") in out
        cert_file = tmp_path / "config" / "serve-tls" / "cert.pem"
        ctx = ssl.create_default_context(cafile=str(cert_file))
        with httpx.Client(verify=ctx, timeout=30, follow_redirects=True) as c:
            page = c.get(url)  # what the phone does with the scanned link
            assert page.status_code == 200 and str(page.url).endswith("/") and "token" not in str(page.url)
            assert c.get(url.split("?")[0] + "api/model").json()["labels"] == ["horizontal", "vertical"]
        with httpx.Client(verify=ctx, timeout=30) as c:
            assert c.get(url.split("?")[0]).status_code == 403  # the same address without the token
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()
        proc.stdout.close()


# -- the turn test (API) -------------------------------------------------------------------------


def data_url_image(url: str) -> Image.Image:
    import base64
    import io

    head, b64 = url.split(",", 1)
    assert head == "data:image/jpeg;base64"
    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")


def test_turn_test_answers_four_turns_in_one_call(secure):
    """Vertical stripes turned 90° are horizontal stripes: this model (which learned stripe
    direction, i.e. orientation) changes its answer, as the soda-can model would."""
    with httpx.Client(base_url=secure.url, verify=trusting(secure.cert), timeout=60,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        r = c.post("/api/predict", params={"turns": 1},
                   files={"file": ("v.jpg", encode(stripes_picture("vertical", 501, 200, 150), "JPEG", 6), "image/jpeg")})
        assert r.status_code == 200, r.text
        body = r.json()
        tt = body["turn_test"]
        assert [t["degrees"] for t in tt["turns"]] == [0, 90, 180, 270]
        assert [t["label"] for t in tt["turns"]] == ["vertical", "horizontal", "vertical", "horizontal"]
        assert tt["changes"] is True
        assert tt["verdict"].startswith("the answer changes when the picture is turned: the model may have learned orientation")
        assert tt["turns"][0]["predictions"] == body["predictions"]  # "as is" is the ordinary answer
        assert body["timings"]["batch"] == 4  # one model call of the four views
        sizes = [data_url_image(t["view"]).size for t in tt["turns"]]
        assert sizes[0][0] > sizes[0][1] and sizes[1][0] < sizes[1][1] and sizes[2] == sizes[0] and sizes[3] == sizes[1]
        plain = c.post("/api/predict", files={"file": ("v.jpg", photo(), "image/jpeg")}).json()
        assert "turn_test" not in plain


def test_turn_views_are_the_upright_picture_turned_clockwise(model):
    from upright.serve import create_app

    with LiveServer(create_app(model)) as live, httpx.Client(base_url=live.url, timeout=60) as c:
        # stored sideways (EXIF 6): the turns start from the upright picture, not the stored pixels
        r = c.post("/api/predict?turns=true", files={"file": ("a.jpg", encode(asym_picture(192, 128), "JPEG", 6), "image/jpeg")})
        views = [data_url_image(t["view"]) for t in r.json()["turn_test"]["turns"]]
    want = {0: [RED, GREEN, BLUE, YELLOW], 90: [BLUE, RED, YELLOW, GREEN],
            180: [YELLOW, BLUE, GREEN, RED], 270: [GREEN, YELLOW, RED, BLUE]}
    for (deg, colours), view in zip(want.items(), views):
        assert all(same_colour(g, w) for g, w in zip(corners(view), colours)), (deg, corners(view))


def test_turn_test_reassures_when_the_answer_stays():
    from upright.serve import create_app

    steady = SlowModel(delay=0)  # answers "a" whatever it is shown
    with LiveServer(create_app(steady)) as live, httpx.Client(base_url=live.url, timeout=60) as c:
        r = c.post("/api/predict", params={"turns": "1"}, files={"file": ("p.jpg", photo(), "image/jpeg")})
        tt = r.json()["turn_test"]
    assert tt["changes"] is False and [t["label"] for t in tt["turns"]] == ["a"] * 4
    assert tt["verdict"] == "the answer stays 'a' however the picture is turned: orientation does not decide it for this picture"
    assert steady.calls == [4]


NAMESPACE_CHECK = r"""
import json, os, re, signal, ssl, subprocess, sys, time
import httpx
proc = subprocess.Popen([sys.executable, "-m", "upright.cli", "serve", sys.argv[1], "--lan", "--port", "0"],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
lines = []
deadline = time.monotonic() + 120
while not any("Ctrl+C" in l for l in lines) and time.monotonic() < deadline and (proc.poll() is None):
    lines.append(proc.stdout.readline().rstrip("\n"))
out = "\n".join(lines)
url = re.search(r"upright serve: (https://\S+)", out).group(1)
listening = [l.split()[1] for l in open("/proc/net/tcp").read().splitlines()[1:] if l.split()[3] == "0A"]
cert = os.path.join(os.environ["UPRIGHT_CONFIG_DIR"], "serve-tls", "cert.pem")
with httpx.Client(verify=ssl.create_default_context(cafile=cert), timeout=30, follow_redirects=True) as c:
    page = c.get(url).status_code
    bare = httpx.Client(verify=ssl.create_default_context(cafile=cert), timeout=30).get(url.split("?")[0]).status_code
proc.send_signal(signal.SIGINT)
proc.wait(timeout=20)
print(json.dumps({"out": out, "url": url, "page": page, "bare": bare, "listening": listening}))
"""


@pytest.mark.slow
def test_serve_lan_default_in_a_private_network_namespace(stripes_model_dir, tmp_path):
    """Plain `serve --lan` (every interface, addresses found by itself), run where the only
    interface is a fresh loopback carrying one extra address (10.99.0.7): the link, the
    certificate and the listening socket all follow the found address; nothing outside the
    namespace is reachable or bound. Needs root and unshare (as CI has); skips elsewhere."""
    import shutil

    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root, unshare and ip for a private network namespace")
    setup = ("ip link set lo up && ip addr add 10.99.0.7/24 dev lo && "
             "ip route add default dev lo src 10.99.0.7 && exec \"$0\" -c \"$1\" \"$2\"")
    env = {**os.environ, "UPRIGHT_CONFIG_DIR": str(tmp_path / "config")}
    res = subprocess.run(["unshare", "-n", "sh", "-c", setup, sys.executable, NAMESPACE_CHECK, str(stripes_model_dir)],
                         capture_output=True, text=True, timeout=240, env=env)
    if res.returncode != 0 and "unshare" in res.stderr and not res.stdout:
        pytest.skip(f"no network namespace here: {res.stderr.strip()[:200]}")
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert re.fullmatch(r"https://10\.99\.0\.7:\d+/\?token=[\w-]{22}", got["url"]), got["out"]
    port = int(got["url"].split(":")[2].split("/")[0])
    assert f"00000000:{port:04X}" in got["listening"]  # 0.0.0.0: every interface (of the namespace)
    assert got["page"] == 200 and got["bare"] == 403
    assert "made on this machine for 10.99.0.7" in got["out"]
    cert = load_cert(tmp_path / "config" / "serve-tls" / "cert.pem")
    ips = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.IPAddress)
    assert {str(ip) for ip in ips} == {"127.0.0.1", "10.99.0.7"}
