"""`upright studio`: the HTTP API on a real server on loopback (httpx), the project on disk after
every call, concurrent uploaders, jobs in worker processes, and SIGKILL in the middle of work.

The browser (desktop + 390 px phone with a fake camera) is in test_studio_browser.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from PIL import Image

from fixtures import (LiveServer, class_picture, during, encode, hostile_uploads, needs_proc_rss, peak_rss,
                      png_header_bomb, write_photo)
from upright.audit import run_audit
from upright.imaging import open_image
from upright.studio.names import BadName, class_name

JPEG = "image/jpeg"


def photo(cls: int, i: int, orientation: int | None = None, **kw) -> bytes:
    return encode(class_picture(cls, i), "JPEG", orientation, **kw)


def files(*items: tuple[str, bytes]) -> list:
    return [("file", (name, data, JPEG)) for name, data in items]


@pytest.fixture
def studio(tmp_path):
    from upright.studio import create_app

    root = tmp_path / "project"
    app = create_app(root, quota=50_000_000)
    with LiveServer(app, timeout_graceful_shutdown=2) as live:
        with httpx.Client(base_url=live.url, timeout=120) as client:
            yield SimpleNamespace(url=live.url, client=client, root=root, app=app)


def on_disk(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every visible file under the class folders."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not any(part.startswith(".") for part in
                                                                        p.relative_to(root).parts)}


def relative(result: dict, root: Path) -> dict:
    """What the studio answers for a result that names paths: under PROJECT relative to it,
    PROJECT itself by its name (docs/contracts.md, "HTTP (studio)")."""
    text = json.dumps(result).replace(json.dumps(str(root))[1:-1] + "/", "")
    return json.loads(text.replace(json.dumps(str(root))[1:-1], root.name))


# -- names ------------------------------------------------------------------------------------
def test_class_names_are_plain_portable_folder_names():
    assert class_name("  Diet Coke ") == "Diet Coke"
    assert class_name("cafe\u0301") == "caf\u00e9"  # NFC: one class whichever keyboard typed it
    for bad, why in [("", "empty"), ("a/b", "cannot contain"), ("a\\b", "cannot contain"), (".hidden", "dot"),
                     ("..", "dot"), ("x" * 65, "at most 64"), ("tab\there", "control"), ("rtl\u202eover", "invisible"),
                     ("Train", "split folder"), ("test", "split folder"), ("name.", "end with a dot"), (3, "text")]:
        with pytest.raises(BadName, match=why):
            class_name(bad)


# -- classes: create, refuse, rename, delete to the trash and back ---------------------------
def test_classes_are_created_refused_renamed_trashed_and_restored(studio):
    c = studio.client
    assert c.post("/api/classes", json={"name": "diet"}).status_code == 201
    for bad in ["../evil", ".hidden", "a/b", "x" * 100, ""]:
        r = c.post("/api/classes", json={"name": bad})
        assert r.status_code == 400 and r.json()["error"], bad
    assert c.post("/api/classes", json={"name": "DIET"}).status_code == 409  # one folder on macOS
    for path in ("/api/classes/%2E%2E", "/api/classes/%2E", "/api/classes/.upright-trash"):  # not classes
        assert c.patch(path, json={"name": "taken"}).status_code == 404, path
        assert c.delete(path).status_code == 404, path
    assert studio.root.is_dir() and not (studio.root.parent / "taken").exists()
    assert sorted(p.name for p in studio.root.iterdir() if not p.name.startswith(".")) == ["diet"]
    assert not (studio.root.parent / "evil").exists()

    stored = c.post("/api/classes/diet/photos", files=files(("a.jpg", photo(0, 1)), ("b.jpg", photo(0, 2)))).json()
    assert len(stored["stored"]) == 2
    assert c.patch("/api/classes/diet", json={"name": "Diet Coke"}).json() == {"name": "Diet Coke"}
    assert c.get("/api/classes/Diet%20Coke/photos").json()["photos"][0]["class"] == "Diet Coke"
    before = on_disk(studio.root)

    trashed = c.delete("/api/classes/Diet%20Coke").json()["trashed"]
    assert trashed["kind"] == "class" and trashed["photos"] == 2
    assert not (studio.root / "Diet Coke").exists()
    assert c.get("/api/project").json()["classes"] == []
    items = c.get("/api/trash").json()["items"]
    assert [it["class"] for it in items] == ["Diet Coke"]
    assert len(list((studio.root / ".upright-trash").rglob("*.jpg"))) == 2  # nothing deleted
    assert c.post(f"/api/trash/{items[0]['item']}/restore").json()["restored"] == 2
    assert on_disk(studio.root) == before
    assert c.get("/api/trash").json()["items"] == []


# -- uploads: original bytes, by content hash, duplicates, refusals ---------------------------
def test_uploads_keep_their_bytes_are_named_by_hash_and_hostile_files_are_refused(studio):
    c = studio.client
    c.post("/api/classes", json={"name": "diet"})
    good = photo(0, 1, 6, make="Apple", model="iPhone 12")
    truncated = photo(0, 2)[:400]
    r = c.post("/api/classes/diet/photos", files=files(
        ("IMG_0001.jpg", good), ("again.jpg", good), ("empty.jpg", b""), ("notes.jpg", b"hello, not a photo\n"),
        ("cut.jpg", truncated), ("bomb.png", png_header_bomb())))
    body = r.json()
    assert r.status_code == 200
    sha = hashlib.sha256(good).hexdigest()
    assert body["stored"] == [{"name": "IMG_0001.jpg", "id": f"diet/{sha[:16]}.jpg"}]
    assert body["duplicates"] == [{"name": "again.jpg", "of": f"diet/{sha[:16]}.jpg"}]
    reasons = {x["name"]: x["reason"] for x in body["refused"]}
    assert set(reasons) == {"empty.jpg", "notes.jpg", "cut.jpg", "bomb.png"}
    assert "not an image" in reasons["notes.jpg"] and "empty" in reasons["empty.jpg"]
    assert "pixel" in reasons["bomb.png"].lower() or "limit" in reasons["bomb.png"].lower()
    assert on_disk(studio.root) == {f"diet/{sha[:16]}.jpg": sha}  # the original bytes, EXIF and all
    # the same bytes in another class: still a duplicate, never a second copy
    c.post("/api/classes", json={"name": "zero"})
    assert c.post("/api/classes/zero/photos", files=files(("x.jpg", good))).json()["duplicates"][0]["of"] == \
        f"diet/{sha[:16]}.jpg"
    listed = c.get("/api/classes/diet/photos").json()["photos"][0]
    assert listed["tag"] == 6 and listed["orientation"] == 6 and not listed["captured"]
    up = Image.open(io.BytesIO(c.get(f"/api/thumbs/{sha}").content))  # noqa: one door: a test reads the server's JPEG
    stored = Image.open(io.BytesIO(c.get(f"/api/thumbs/{sha}?view=stored").content))  # noqa
    assert up.size[0] > up.size[1] and stored.size[0] < stored.size[1]  # upright landscape, stored sideways
    assert c.get("/api/thumbs/" + "0" * 64).status_code == 404
    assert c.post("/api/classes/nope/photos", files=files(("a.jpg", good))).status_code == 404


def test_request_bounds_of_serve_apply(studio):
    c = studio.client
    c.post("/api/classes", json={"name": "diet"})
    port = int(studio.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:  # answered before the body is read
        s.sendall(b"POST /api/classes/diet/photos HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 1000000000\r\n\r\n")
        answer = b""
        while b"}" not in answer and (chunk := s.recv(4096)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b"too large" in answer
    r = c.post("/api/classes/diet/photos", content=b"not multipart", headers={"content-type": "text/plain"})
    assert r.status_code == 400 and r.json()["error"]
    r = c.post("/api/classes", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]


def test_quota_refuses_past_the_limit(tmp_path):
    from upright.studio import create_app

    app = create_app(tmp_path / "p", quota=200_000)
    with LiveServer(app, timeout_graceful_shutdown=2) as live, httpx.Client(base_url=live.url) as c:
        c.post("/api/classes", json={"name": "a"})
        big = [encode(class_picture(0, i, 400, 300), "JPEG") for i in range(4)]  # 75-90 KB each
        body = c.post("/api/classes/a/photos", files=files(*[(f"{i}.jpg", b) for i, b in enumerate(big)])).json()
        assert body["stored"] and body["refused"]
        assert all("quota" in x["reason"] for x in body["refused"])
        assert sum(p.stat().st_size for p in (tmp_path / "p" / "a").iterdir()) <= 200_000


# -- captures from the page's camera: marked, and an attribute of the audit ----------------------
def test_camera_captures_are_marked_and_the_audit_sees_captured_vs_uploaded(studio):
    c = studio.client
    for name in ("cola", "diet"):
        c.post("/api/classes", json={"name": name})
    canvas = [encode(class_picture(0, i), "JPEG") for i in range(10)]  # what canvas.toBlob makes: JFIF, no EXIF
    for data in canvas:
        assert c.post("/api/classes/cola/photos", files=files(("camera.jpg", data)),
                      data={"source": "camera"}).json()["stored"]
    c.post("/api/classes/diet/photos", files=files(*[(f"{i}.jpg", photo(1, i)) for i in range(10)]))
    cola = c.get("/api/classes/cola/photos").json()["photos"]
    assert all(p["captured"] for p in cola) and len(cola) == 10
    stored = (studio.root / cola[0]["id"]).read_bytes()
    pixels = open_image(stored).image.tobytes()
    source = next(d for d in canvas if open_image(d).image.tobytes() == pixels)  # same pixels: only marked
    assert len(stored) - len(source) < 200 and stored.startswith(source[:2])
    audit = c.get("/api/audit").json()
    leak = [f for f in audit["findings"] if f["kind"] == "label_leak"]
    assert leak and (leak[0]["attribute"] == "source" or "source" in leak[0]["also"]), leak
    assert audit["attributes"]["source"]["values"] == ["file", "studio camera"]
    # a file that already carries EXIF is not a canvas capture
    r = c.post("/api/classes/cola/photos", files=files(("x.jpg", photo(0, 50, 6))), data={"source": "camera"}).json()
    assert r["refused"] and "EXIF" in r["refused"][0]["reason"]


def test_audit_endpoint_is_the_metadata_only_audit_and_the_view_names_the_cell(studio):
    c = studio.client
    for name in ("diet", "zero"):
        c.post("/api/classes", json={"name": name})
    phones = [("Apple", "iPhone 12"), ("samsung", "SM-G991B"), ("Google", "Pixel 7")]  # 'diet': three phones
    c.post("/api/classes/diet/photos", files=files(*[(f"{i}.jpg", photo(0, i, 6, make=phones[i % 3][0],
                                                                        model=phones[i % 3][1])) for i in range(12)]))
    c.post("/api/classes/zero/photos", files=files(*[(f"{i}.jpg", photo(1, i)) for i in range(12)]))
    (studio.root / "zero" / "notes.jpg").write_text("copied in by hand, not a photo")
    got = c.get("/api/audit")
    assert str(studio.root) not in got.text  # paths under PROJECT are relative to it
    want = relative(run_audit(studio.root, content=False, progress=False).to_dict(), studio.root)
    drop = ("seconds", "timings")
    assert {k: v for k, v in got.json().items() if k not in drop} == {k: v for k, v in want.items() if k not in drop}
    assert got.json()["data"] == "project" and got.json()["unreadable"][0]["path"] == "zero/notes.jpg"
    view = c.get("/api/audit/view").json()
    top = next(f for f in view["findings"] if f["attribute"] == "exif_orientation")
    assert top["kind"] == "label_leak" and top["severity"] == "warning"
    assert top["headline"] == "'diet': 100% stored sideways (tag 6), by 3 camera models; 'zero': 0%"
    diet = {p["sha256"] for p in c.get("/api/classes/diet/photos").json()["photos"]}
    assert top["thumbs"] and set(top["thumbs"]) <= diet  # thumbnails from that very cell


# -- review: move, turn through fix, the way back -----------------------------------------------
def test_review_moves_turns_with_the_way_back_and_trashes(studio):
    c = studio.client
    for name in ("diet", "zero"):
        c.post("/api/classes", json={"name": name})
    original = photo(0, 1)
    pid = c.post("/api/classes/diet/photos", files=files(("a.jpg", original))).json()["stored"][0]["id"]
    moved = c.post("/api/photos/move", json={"photos": [pid], "to": "zero"}).json()["moved"][0]
    assert moved.startswith("zero/") and not (studio.root / pid).exists()

    r = c.post("/api/photos/turn", json={"photo": moved, "degrees": 90})
    assert r.status_code == 200 and r.json()["outcome"] == "rotated"
    turned = open_image(studio.root / moved).image
    assert turned.size == (120, 160)  # the landscape picture now stands upright as portrait
    assert (studio.root / ".upright-originals" / "manifest.jsonl").is_file()
    listed = c.get("/api/classes/zero/photos").json()["photos"][0]
    assert listed["sha256"] != hashlib.sha256(original).hexdigest()
    new = listed["sha256"]  # new bytes: their thumbnail is made with the turn, before any page asks
    assert (studio.root / ".upright-studio" / "thumbs" / new[:2] / f"{new}.upright.jpg").is_file()
    thumb = c.get(f"/api/thumbs/{new}")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == JPEG
    assert Image.open(io.BytesIO(thumb.content)).size[0] < Image.open(io.BytesIO(thumb.content)).size[1]  # noqa
    # the original bytes are still "known": uploading them again is a duplicate of the turned photo
    assert c.post("/api/classes/diet/photos", files=files(("again.jpg", original))).json()["duplicates"]

    undone = c.post("/api/photos/undo-turns").json()
    assert undone["restored"] == [moved]
    assert (studio.root / moved).read_bytes() == original
    assert c.post("/api/photos/turn", json={"photo": moved, "degrees": 45}).status_code == 400
    assert c.post("/api/photos/turn", json={"photo": "../../etc/passwd", "degrees": 90}).status_code == 404
    assert c.post("/api/photos/trash", json={"photos": [moved]}).json()["trashed"]["photos"] == 1
    assert c.get("/api/project").json()["classes"][1]["count"] == 0


def test_a_turn_is_undone_per_photo_and_its_way_back_follows_moves_and_the_trash(studio):
    """Undo is per photo; a turned photo moved to another class, renamed with its class, sent
    to the trash and restored keeps its way back where it is: an undo never brings the original
    back in its old class beside the moved photo."""
    c = studio.client
    for name in ("diet", "zero"):
        c.post("/api/classes", json={"name": name})
    originals = {k: photo(0, 10 + k) for k in range(3)}
    ids = [c.post("/api/classes/diet/photos", files=files((f"{k}.jpg", d))).json()["stored"][0]["id"]
           for k, d in originals.items()]
    for pid in ids:
        assert c.post("/api/photos/turn", json={"photo": pid, "degrees": 90}).json()["outcome"] == "rotated"
    assert all(p["turned"] for p in c.get("/api/classes/diet/photos").json()["photos"])

    a = c.post("/api/photos/move", json={"photos": [ids[0]], "to": "zero"}).json()["moved"][0]
    assert c.patch("/api/classes/zero", json={"name": "Zero"}).status_code == 200
    a = "Zero/" + a.split("/", 1)[1]
    r = c.post("/api/photos/undo-turn", json={"photo": a})
    assert r.status_code == 200 and r.json()["restored"] == [a], r.text
    assert (studio.root / a).read_bytes() == originals[0]
    assert not (studio.root / ids[0]).exists()  # not back in its old class
    assert c.post("/api/photos/undo-turn", json={"photo": a}).status_code == 409  # nothing left to undo
    assert [p["turned"] for p in c.get("/api/classes/diet/photos").json()["photos"]] == [True, True]

    item = c.post("/api/photos/trash", json={"photos": [ids[1]]}).json()["trashed"]["item"]
    assert c.post(f"/api/trash/{item}/restore").json()["restored"] == 1  # back, still turned
    assert [p["turned"] for p in c.get("/api/classes/diet/photos").json()["photos"]] == [True, True]
    assert c.post("/api/photos/undo-turn", json={"photo": ids[1]}).json()["restored"] == [ids[1]]
    assert (studio.root / ids[1]).read_bytes() == originals[1]

    item = c.post("/api/photos/trash", json={"photos": [ids[2]]}).json()["trashed"]["item"]
    undone = c.post("/api/photos/undo-turns").json()  # every turn: the trashed photo stays in the trash
    assert undone["restored"] == [f".upright-trash/{item}/{ids[2]}"] and not (studio.root / ids[2]).exists()
    assert (studio.root / ".upright-trash" / item / ids[2]).read_bytes() == originals[2]
    assert sorted(on_disk(studio.root)) == sorted([a, ids[1]])
    assert not (studio.root / ".upright-originals").exists()


# -- who may talk to it --------------------------------------------------------------------------
def test_other_sites_and_other_host_names_are_refused(studio):
    c = studio.client
    r = c.post("/api/classes", json={"name": "x"}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    r = c.post("/api/classes", json={"name": "y"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert c.post("/api/classes", json={"name": "n"}, headers={"Origin": "null"}).status_code == 403
    assert c.delete("/api/classes/z", headers={"Sec-Fetch-Site": "same-site"}).status_code == 403
    assert c.get("/api/project", headers={"Host": "evil.example"}).status_code == 400  # DNS rebinding
    port = studio.url.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.2:{port}", f"[::1]:{port}"):  # this machine's loopback names
        assert c.get("/api/project", headers={"Host": host}).status_code == 200, host
    assert c.post("/api/classes", json={"name": "z"}, headers={"Origin": studio.url}).status_code == 201
    assert [p.name for p in studio.root.iterdir() if not p.name.startswith(".")] == ["z"]


def test_serves_request_guard_applies_to_the_studio(studio):
    """The same code as `upright serve` (serve/guard.py): a head over 16 KiB, and Content-Length
    with Transfer-Encoding, are refused before the studio reads anything."""
    port = int(studio.url.rsplit(":", 1)[1])

    def status(raw: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(raw)
            return s.recv(4096).split(b"\r\n", 1)[0]

    big = b"GET /api/project HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    assert status(big) == b"HTTP/1.1 431 Request Header Fields Too Large"
    smuggle = (b"POST /api/classes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: 12\r\nTransfer-Encoding: chunked\r\n\r\nc\r\n{\"name\":\"x\"}\r\n0\r\n\r\n")
    assert status(smuggle) == b"HTTP/1.1 400 Bad Request"
    assert not (studio.root / "x").exists()


def test_lan_token_guards_every_path(tmp_path):
    from upright.studio import create_app

    app = create_app(tmp_path / "p", token="secret-token")
    with LiveServer(app, timeout_graceful_shutdown=2) as live, httpx.Client(base_url=live.url) as c:
        for path in ("/", "/api/project", "/assets/app.js", "/test", "/api/events"):
            assert c.get(path).status_code == 403, path
        assert c.post("/api/classes", json={"name": "x"}).status_code == 403
        ok = c.get("/api/project", headers={"Authorization": "Bearer secret-token"})
        assert ok.status_code == 200 and ok.json()["lan"] is True
        r = c.get("/?token=secret-token", follow_redirects=False)
        assert r.status_code == 303 and "upright_token=secret-token" in r.headers["set-cookie"]


# -- several phones at once ------------------------------------------------------------------------
def test_eight_uploaders_at_once_every_photo_once_and_every_page_told(studio):
    c = studio.client
    for name in ("a", "b"):
        c.post("/api/classes", json={"name": name})
    shared = photo(0, 999)  # every phone also sends this one: stored once, seven duplicates
    batches = [[photo(k % 2, 100 * k + i) for i in range(4)] + [shared] for k in range(8)]
    heard: list[str] = []
    listening = threading.Event()

    def listen():
        with httpx.stream("GET", studio.url + "/api/events", timeout=30) as r:
            for line in r.iter_lines():
                if line.startswith("event:"):
                    heard.append(line.split(":", 1)[1].strip())
                    listening.set()
                if heard.count("project") >= 3:
                    return

    threading.Thread(target=listen, daemon=True).start()
    assert listening.wait(10)
    results: list[dict] = [None] * 8

    def upload(k):
        with httpx.Client(base_url=studio.url, timeout=120) as mine:
            cls = "ab"[k % 2]
            results[k] = mine.post(f"/api/classes/{cls}/photos",
                                   files=files(*[(f"{k}-{i}.jpg", d) for i, d in enumerate(batches[k])])).json()

    threads = [threading.Thread(target=upload, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    stored = sum(len(r["stored"]) for r in results)
    dups = sum(len(r["duplicates"]) for r in results)
    assert stored == 33 and dups == 7 and not any(r["refused"] for r in results)
    disk = on_disk(studio.root)
    assert len(disk) == 33 and len(set(disk.values())) == 33
    assert {h for b in batches for h in map(lambda d: hashlib.sha256(d).hexdigest(), b)} == set(disk.values())
    counts = {x["name"]: x["count"] for x in c.get("/api/project").json()["classes"]}
    assert counts["a"] + counts["b"] == 33 and counts["a"] >= 16 and counts["b"] >= 16
    deadline = time.monotonic() + 10
    while heard.count("project") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "project" in heard


# -- jobs: train (progress, a new folder each run), cancel, the Test app, export --------------------
def _wait(c, job, timeout=240):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        j = c.get(f"/api/jobs/{job}").json()
        step = (j.get("progress") or {}).get("step")
        if step and step not in seen:
            seen.append(step)
        if j["state"] != "running":
            return j, seen
        time.sleep(0.1)
    raise AssertionError(f"job {job} still running after {timeout} s")


def _two_classes(c, n=6, tagged=None):
    for k, name in enumerate(("diet", "zero")):
        c.post("/api/classes", json={"name": name})
        c.post(f"/api/classes/{name}/photos",
               files=files(*[(f"{i}.jpg", photo(k, i, tagged if k == 0 else None)) for i in range(n)]))


@pytest.mark.slow
def test_training_runs_in_a_worker_with_progress_then_test_and_export(studio):
    c = studio.client
    c.post("/api/classes", json={"name": "diet"})
    assert c.post("/api/train", json={"preset": "fast"}).status_code == 400  # one class
    _two_classes(c, n=8, tagged=6)  # 'diet' stored sideways: the audit warns, on the model's card too
    assert c.post("/api/train", json={"preset": "nope"}).status_code == 400
    r = c.post("/api/train", json={"preset": "fast"})
    assert r.status_code == 202
    job, name = r.json()["job"], r.json()["model"]
    assert c.post("/api/train", json={"preset": "fast"}).status_code == 409  # one run at a time
    j, steps = _wait(c, job)
    assert j["state"] == "done", j
    assert j["steps"] == ["embedding", "fitting the head", "auditing the training photos", "writing the model",
                          "writing the report"], j["steps"]  # in the order they ran
    assert re.fullmatch(r"\d{8}-\d{6}(-\d+)?", name) and j["model"] == name
    assert j["result"]["val_accuracy"] >= 0.5
    models = c.get("/api/project").json()["models"]
    assert [m["name"] for m in models] == [name] and models[0]["report"]
    card = models[0]  # the card's summary of the report, from model.json
    assert set(card["per_class"]) == {"diet", "zero"} and card["per_class"]["diet"]["n"] == 8
    assert card["n_mistakes"] == round((1 - card["val_accuracy"]) * card["val_photos"])
    assert [w["headline"] for w in card["audit_warnings"]] == ["'diet': 100% stored sideways (tag 6); 'zero': 0%"]
    report = c.get(f"/api/models/{name}/report")
    assert "confusion" in report.text.lower()
    for answer in (report, c.get(f"/api/jobs/{job}"), c.get("/api/project")):  # visible to --lan phones
        assert str(studio.root) not in answer.text
    assert c.get(f"/api/jobs/{job}").json()["result"]["data"] == "project"
    deadline = time.monotonic() + 120  # the new model's Test app is loaded and warmed at once
    while not (health := c.get("/healthz").json())["ready"]:
        assert time.monotonic() < deadline, health
        time.sleep(0.1)
    assert health["test_model"] == {"name": name, "ready": True} and studio.app.state.studio.tests.ready(name)

    r = c.post("/api/predict?turns=1", files={"file": ("t.jpg", photo(0, 77), JPEG)})
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "diet"
    assert len(r.json()["turn_test"]["turns"]) == 4
    assert c.get("/api/model").json()["model"] == name

    onnx_file = c.get(f"/api/models/{name}/export", params={"format": "onnx"})
    assert onnx_file.status_code == 200, onnx_file.text
    import onnx

    graph = onnx.load_from_string(onnx_file.content)
    assert json.loads({p.key: p.value for p in graph.metadata_props}["labels"]) == ["diet", "zero"]
    assert graph.graph.input[0].name == "pixels"  # the preprocessing is in the graph
    r = c.get(f"/api/models/{name}/export", params={"format": "tflite"})
    try:
        import litert_torch  # noqa: F401
    except ImportError:
        assert r.status_code == 501 and "litert-torch" in r.json()["error"]
    assert c.get(f"/api/models/{name}/export", params={"format": "jpeg"}).status_code == 400
    assert c.get("/api/models/nope/export", params={"format": "onnx"}).status_code == 404

    second = c.post("/api/train", json={"preset": "fast"}).json()
    assert _wait(c, second["job"])[0]["state"] == "done" and second["model"] != name
    assert [m["name"] for m in c.get("/api/models").json()["models"]] == [second["model"], name]
    assert c.get("/api/model").json()["model"] == second["model"]  # the newest, unless the page picks one
    c.cookies.set("upright_model", name)  # what the page's model list sets
    assert c.get("/api/model").json()["model"] == name
    c.cookies.clear()
    assert c.post(f"/api/predict?model={name}", files={"file": ("t.jpg", photo(1, 78), JPEG)}).status_code == 200


@pytest.mark.slow
def test_content_audit_scores_every_photo_for_the_review(studio):
    c = studio.client
    _two_classes(c, n=22)
    sideways = encode(class_picture(0, 900).rotate(90, expand=True), "JPEG")  # content turned, no tag
    turned_id = c.post("/api/classes/diet/photos", files=files(("turned.jpg", sideways))).json()["stored"][0]["id"]
    job = c.post("/api/audit/content")
    assert job.status_code == 202
    j, _ = _wait(c, job.json()["job"])
    assert j["state"] == "done", j
    photos = c.get("/api/classes/diet/photos").json()["photos"] + c.get("/api/classes/zero/photos").json()["photos"]
    assert all(p["sideways"] is not None and 0 <= p["sideways"]["confidence"] <= 1 for p in photos)
    top = max(photos, key=lambda p: p["sideways"]["confidence"])
    assert top["id"] == turned_id, [(p["id"], p["sideways"]) for p in photos][:5]
    view = c.get("/api/audit/view").json()
    assert view["content"]["done"] and view["content"]["scored"] == 45


def test_cancelled_training_leaves_no_model(studio, monkeypatch):
    """The worker holds after its first progress line (worker.HOLD_ENV) until the cancel
    arrives: the cancel always meets a running job, however fast the machine."""
    from upright.studio.worker import HOLD_ENV

    monkeypatch.setenv(HOLD_ENV, "1")
    c = studio.client
    _two_classes(c, n=4)
    r = c.post("/api/train", json={"preset": "fast"}).json()
    while not c.get(f"/api/jobs/{r['job']}").json()["progress"]:
        time.sleep(0.05)
    assert c.post(f"/api/jobs/{r['job']}/cancel").status_code == 202
    j, _ = _wait(c, r["job"], timeout=60)
    assert j["state"] == "cancelled" and j["steps"] == ["embedding"] and not j["result"], j
    models = studio.root / ".upright-models"
    assert not models.exists() or list(models.iterdir()) == []  # nor a half-built folder
    assert c.get("/api/project").json()["models"] == []
    assert c.post("/api/train", json={"preset": "fast"}).status_code == 202  # the next run may start


# -- SIGKILL: nothing stored is lost, nothing half-made is left ----------------------------------------
def _start(root: Path, port: int = 0, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "upright.cli", "studio", str(root), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=None if env is None else {**os.environ, **env})
    line = proc.stdout.readline()
    m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    assert m, line
    return proc, f"http://127.0.0.1:{m.group(1)}"


def _stop(proc: subprocess.Popen) -> None:
    """Ctrl+C, as a user stops it (SIGKILL when it will not stop)."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _workers(root: Path) -> list[int]:
    """Worker processes (upright.studio.worker) working on this project."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if "upright.studio.worker" in cmd and str(root) in cmd:
                pids.append(int(d.name))
    return pids


@pytest.mark.slow
def test_sigkill_mid_upload_and_mid_training_loses_nothing(tmp_path):
    from upright.studio.worker import HOLD_ENV

    root = tmp_path / "project"
    proc, url = _start(root, env={HOLD_ENV: "1"})  # its training run holds after its first step
    try:
        with httpx.Client(base_url=url, timeout=120) as c:
            _two_classes(c, n=30)
            before = on_disk(root)
            # an upload in flight: the head and half the body are sent, then the studio dies
            body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jpg\"\r\n" \
                   b"Content-Type: image/jpeg\r\n\r\n" + photo(0, 500)[:2000]
            s = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
            s.sendall(b"POST /api/classes/diet/photos HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n" + body)
            time.sleep(0.3)
            job = c.post("/api/train", json={"preset": "fast"}).json()
            while not c.get(f"/api/jobs/{job['job']}").json()["progress"]:
                time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        s.close()
        deadline = time.monotonic() + 60
        while _workers(root) and time.monotonic() < deadline:  # the orphaned worker cancels itself
            time.sleep(0.1)
        assert not _workers(root), [(pid, Path(f"/proc/{pid}/status").read_text().split("\n")[:3])
                                    for pid in _workers(root)]
        models = root / ".upright-models"
        assert not models.exists() or [p.name for p in models.iterdir() if p.name.startswith(".")] == []
    finally:
        if proc.poll() is None:
            proc.kill()
    proc, url = _start(root)
    try:
        with httpx.Client(base_url=url, timeout=120) as c:
            assert on_disk(root) == before  # every stored photo, nothing half-written
            project = c.get("/api/project").json()
            assert {x["name"]: x["count"] for x in project["classes"]} == {"diet": 30, "zero": 30}
            models = root / ".upright-models"
            assert not models.exists() or list(models.iterdir()) == []  # no half-built model folder
            assert project["models"] == []
            assert not [p for p in root.rglob("*.tmp")]
    finally:
        _stop(proc)


# -- eight phones sending files that cost hundreds of MB to decode ---------------------------------
@pytest.mark.slow
@needs_proc_rss
def test_eight_hostile_uploaders_share_serves_decode_budget(tmp_path):
    """`upright studio` in its own process, 8 phones at once: three different 200 MP PNGs (each
    about 840 MB to decode: they take turns in the one decode budget) and five hostile families
    (refused from their headers), while a normal photo is stored. Peak RSS stays under 1.5 GiB."""
    proc, url = _start(tmp_path / "project")
    try:
        with httpx.Client(base_url=url, timeout=300) as c:
            c.post("/api/classes", json={"name": "a"})
            assert c.post("/api/classes/a/photos", files=files(("warm.jpg", photo(0, 1)))).json()["stored"]
            peak_rss(proc.pid, reset=True)
            send = [lambda i=i, d=d: httpx.post(f"{url}/api/classes/a/photos", files=files((f"{i}.bin", d)),
                                                timeout=300).json() for i, d in enumerate(hostile_uploads(True))]
            got, normal, normal_s = during(send, lambda: c.post("/api/classes/a/photos",
                                                                files=files(("normal.jpg", photo(0, 2)))).json())
            peak = peak_rss(proc.pid)
        print(f"studio: peak RSS {peak / 2**20:.0f} MB with 8 hostile uploaders; a normal photo stored in "
              f"{normal_s:.1f} s meanwhile")
        assert normal["stored"], normal
        assert [bool(g["stored"]) for g in got] == [True] * 3 + [False] * 5, got
        assert all(g["refused"][0]["reason"] for g in got[3:])
        assert peak < 1.5 * 2**30, peak
    finally:
        _stop(proc)


def test_the_project_index_is_read_from_the_files_when_the_cache_is_unusable(tmp_path, monkeypatch):
    """The index takes hashes and header facts from the shared cache; a cache file that is not a
    database does not keep the studio from indexing (the audit reports the cache's trouble)."""
    from upright.studio.project import Project

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "embeddings.sqlite3").write_bytes(b"not a database" * 100)
    monkeypatch.setenv("UPRIGHT_CACHE_DIR", str(cache))
    for label, tag in (("diet", 6), ("zero", None)):
        for i in range(2):
            write_photo(tmp_path / "cans" / label / f"{i}.jpg", class_picture(0 if label == "diet" else 1, i), tag)
    project = Project(tmp_path / "cans")
    project.refresh()
    assert sorted((p.label, p.tag) for p in project.photos.values()) == [("diet", 6), ("diet", 6), ("zero", None),
                                                                          ("zero", None)]
