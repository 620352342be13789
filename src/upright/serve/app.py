"""The server behind `upright serve MODEL` (HTTP contract: docs/contracts.md, "HTTP (serve)").

Request path for POST /api/predict:

    body (counted while it streams; 413 past the limit) -> multipart field "file"
      -> decode pool:  imaging.open_image(bytes) ONCE: upright RGB at the model's resize size
                       + the orientation record; the "view" (what the model saw) and, when a
                       tag turned the picture, the stored pixels are derived from that decode
      -> batcher:      one worker thread; concurrent requests that arrive while the model is
                       busy are grouped into a single `Model.predict_images` call
      -> JSON:         the predict shape + view, stored_view, orientation_note, ms
    ?turns=1 (the turn test, turns.py): the decoded picture as is and turned 90/180/270
    goes to the batcher as ONE job of four images (one model call), + "turn_test".

With a token (`serve --lan`: run(lan=True)), access.TokenGate answers 403 to any request
without it, and the server speaks https with tls.certificate_for's certificate.

Nothing from a request reaches the filesystem: the uploaded filename is only echoed back
as `path`. Uploads are held in memory (bounded by the size limit); the event loop never
decodes or runs the model, so /healthz answers while predictions run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import queue
import socket
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from PIL import Image
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect
from starlette.staticfiles import StaticFiles

from ..errors import UnreadableImage, UprightError
from ..report.html import image_data_url
from ..imaging import open_image, store_as
from ..model import DEFAULT_TOP_K
from ..orientation import orientation_note
from .access import TokenGate, new_token
from .defaults import DEFAULT_HOST, DEFAULT_LAN_HOST, DEFAULT_MAX_BATCH, DEFAULT_MAX_BYTES, DEFAULT_PORT
from .lan import WILDCARDS, exposure_warning, is_ip, lan_addresses, link, phone_words, qr_lines
from .tls import certificate_for
from .turns import thumbnails, turn_json, turned

VIEW_LONG_SIDE = 512  # the "view" data URL is at most this many pixels on its long side
DEFAULT_DECODE_SIZE = 256  # short side fed to the model when model.json does not say
STATIC_DIR = Path(__file__).resolve().parent / "static"

# What the page may load: itself, and the data URLs / camera blobs it makes. Nothing remote.
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

def _status_for(reason: str) -> int:
    r = reason.lower()
    if r.startswith(("not an image", "unsupported format")):
        return 415
    return 400


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _safe_name(name: str | None) -> str | None:
    """The uploaded filename, for display only: last path component, printable, bounded."""
    if not name:
        return None
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    return name[:200] or None


def decode_size_for(model: Any) -> int:
    """The short side the model's preprocessing resizes to (backbone spec, else model.json),
    so the one decode is exactly the picture the model's centre crop is cut from."""
    try:
        from ..backbones import spec

        return int(spec(str(model.backbone)).resize)
    except Exception:  # a model without a registered backbone (tests, third-party)
        pass
    meta = getattr(model, "meta", None) or {}
    pre = meta.get("preprocessing") if isinstance(meta, dict) else None
    candidates = [pre.get(k) for k in ("resize_short_side", "resize")] if isinstance(pre, dict) else []
    for value in candidates:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 16 <= value <= 4096:
            return int(value)
    return DEFAULT_DECODE_SIZE


@dataclass
class Prepared:
    image: Image.Image  # upright RGB, short side = decode size: what the model gets
    tag: int | None
    note: str
    view: str
    view_size: tuple[int, int]
    stored_view: str | None
    stored_size: tuple[int, int]
    format: str
    notes: list[str]
    decode_ms: float


def prepare(data: bytes, decode_size: int, orient: bool = True) -> Prepared:
    """Decode once; derive the model input, the view and (if turned) the stored pixels.

    orient=False is for models trained with orientation policy "stored" (the naive
    imitation): they see the pixels as stored, and the view shows exactly that.
    """
    t0 = time.perf_counter()
    d = open_image(data, size=decode_size, orient=orient)
    o = d.orientation
    view = d.image.copy()
    view.thumbnail((VIEW_LONG_SIDE, VIEW_LONG_SIDE), Image.Resampling.BICUBIC)
    stored_view = None
    turned = o.tag is not None and 2 <= o.tag <= 8 and not o.problem
    note = orientation_note(o.tag, o.source, o.problem)
    if turned and not orient:
        note = (f"{note.split(';')[0]}; this model reads pixels as stored (orientation policy "
                "'stored'), so it saw them exactly as shown, not turned upright")
    elif turned:
        # The pixels as the file stores them = the inverse transform of the upright view
        # (identical to imaging.open_stored, without decoding the file a second time).
        stored_view = image_data_url(store_as(view, o.tag), VIEW_LONG_SIDE)
    return Prepared(
        image=d.image, tag=o.tag, note=note,
        view=image_data_url(view, VIEW_LONG_SIDE), view_size=view.size, stored_view=stored_view,
        stored_size=d.stored_size, format=d.format, notes=list(d.notes),
        decode_ms=(time.perf_counter() - t0) * 1000,
    )


# --------------------------------------------------------------------------- batching


@dataclass
class _Job:
    images: list[Image.Image]  # one upload, or the four views of a turn test (one job, one call)
    top_k: int
    single: bool = True  # the future gets one image's predictions (else a list, one per image)
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


class Batcher:
    """One worker thread owns the model. Jobs that queue up while it is busy run together
    in one `predict_images` call (up to max_batch), so load raises throughput instead of
    latency, and the event loop never waits on a lock."""

    def __init__(self, model: Any, max_batch: int = DEFAULT_MAX_BATCH):
        self.model = model
        self.max_batch = max(1, int(max_batch))
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="upright-batcher", daemon=True)
        self._closed = False
        self.batches = 0
        self.images = 0
        self.largest_batch = 0
        self.busy = False
        self._thread.start()

    def submit(self, image: Image.Image, top_k: int) -> concurrent.futures.Future:
        """Future of (predictions, images in the model call, model ms)."""
        return self._put(_Job([image], top_k))

    def submit_many(self, images: list[Image.Image], top_k: int) -> concurrent.futures.Future:
        """Future of ([predictions per image], images in the model call, model ms): the
        images always run in the same model call (the turn test's four views)."""
        return self._put(_Job(list(images), top_k, single=False))

    def _put(self, job: _Job) -> concurrent.futures.Future:
        if self._closed:
            raise RuntimeError("the server is shutting down")
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        stop = False
        while not stop:
            job = self._queue.get()
            if job is None:
                break
            batch = [job]
            n_images = len(job.images)
            while n_images < self.max_batch:  # a job is never split; a big one may run alone
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
                n_images += len(nxt.images)
            batch = [j for j in batch if j.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            n_images = sum(len(j.images) for j in batch)
            self.busy = True
            t0 = time.perf_counter()
            try:
                k = max(j.top_k for j in batch)
                results = iter(self.model.predict_images([im for j in batch for im in j.images], top_k=k))
                ms = (time.perf_counter() - t0) * 1000
                for j in batch:
                    mine = [list(next(results))[: j.top_k] for _ in j.images]
                    j.future.set_result((mine[0] if j.single else mine, n_images, ms))
            except BaseException as exc:  # noqa: BLE001 - hand any failure to the requests
                for j in batch:
                    if not j.future.done():
                        j.future.set_exception(exc)
            finally:
                self.busy = False
                self.batches += 1
                self.images += n_images
                self.largest_batch = max(self.largest_batch, n_images)
        # fail whatever is still queued so no request hangs
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(RuntimeError("the server is shutting down"))


# --------------------------------------------------------------------------- body limits


class _TooLarge(Exception):
    def __init__(self, size: int, exact: bool):
        self.size, self.exact = size, exact


class _Body:
    """Reads the request body straight from ASGI, counting bytes against the limit."""

    def __init__(self, request: Request, limit: int):
        self.request, self.limit = request, limit
        self.received = 0
        self.finished = False

    async def chunks(self) -> AsyncIterator[bytes]:
        while not self.finished:
            msg = await self.request.receive()
            if msg["type"] == "http.disconnect":
                raise ClientDisconnect()
            if msg["type"] != "http.request":
                continue
            chunk = msg.get("body", b"") or b""
            self.finished = not msg.get("more_body", False)
            self.received += len(chunk)
            if self.received > self.limit:
                raise _TooLarge(self.received, exact=self.finished)
            if chunk:
                yield chunk

    async def read(self) -> bytes:
        return b"".join([c async for c in self.chunks()])

    async def drain(self, cap: int) -> None:
        """Discard the rest of an oversized body (up to `cap` bytes) so the client, which
        is still sending, gets to read the 413 instead of a reset connection."""
        drained = 0
        while not self.finished and drained < cap:
            msg = await self.request.receive()
            if msg["type"] != "http.request":
                break
            drained += len(msg.get("body", b"") or b"")
            self.finished = not msg.get("more_body", False)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n:,} bytes"


# --------------------------------------------------------------------------- app


class _SecurityHeaders:
    """Pure ASGI middleware: nosniff everywhere, a strict CSP on the page."""

    def __init__(self, app: Callable):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                headers.append((b"content-security-policy", CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


_PRIVATE_WORDS = ("path", "dir", "file", "root", "cache")


def _public_meta(meta: Any) -> Any:
    """model.json minus anything that looks like a local path (the app may be on a LAN)."""
    if isinstance(meta, dict):
        return {k: _public_meta(v) for k, v in meta.items()
                if not any(w in str(k).lower() for w in _PRIVATE_WORDS)}
    if isinstance(meta, list):
        return [_public_meta(v) for v in meta]
    if isinstance(meta, str) and (meta.startswith(("/", "~")) or meta[1:3] == ":\\"):
        return "(local path hidden)"
    return meta


def _training_figures(meta: dict) -> dict:
    """The training figures: model.json's "training" object, else the top-level keys."""
    if isinstance(meta.get("training"), dict):
        return dict(meta["training"])
    keys = ("val_accuracy", "n_train", "n_val", "seconds", "augment", "epochs", "classes", "seed")
    return {k: meta[k] for k in keys if k in meta}


def create_app(
    model: Any,
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    top_k: int = DEFAULT_TOP_K,
    max_batch: int = DEFAULT_MAX_BATCH,
    model_name: str | None = None,
    decode_size: int | None = None,
    decode_workers: int | None = None,
    token: str | None = None,
) -> FastAPI:
    """The FastAPI app for a loaded `upright.model.Model` (or anything with `labels`,
    `meta` and `predict_images(images, top_k)`).

    max_bytes: largest request body accepted (413 beyond). top_k: default labels per
    answer (the request may ask ?top_k=N). max_batch: most images per model call.
    token: when set, every request needs it (access.TokenGate; serve it over https, as
    `run(lan=True)` does: the cookie it sets is Secure).
    """
    labels = [str(x) for x in model.labels]
    max_bytes = int(max_bytes)
    default_k = max(1, min(int(top_k), len(labels)))
    size = int(decode_size or decode_size_for(model))
    orient = bool(getattr(model, "orient", True))
    name = model_name or getattr(model, "name", None) or str(getattr(model, "backbone", "model"))
    meta = getattr(model, "meta", None) or {}
    batcher = Batcher(model, max_batch=max_batch)
    workers = decode_workers or max(2, min(4, (os.cpu_count() or 2)))
    decode_pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="upright-decode")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        batcher.close()
        decode_pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="upright serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.batcher = batcher
    app.state.max_bytes = max_bytes
    if token is not None:
        app.add_middleware(TokenGate, token=token)
    app.add_middleware(_SecurityHeaders)  # added last = outermost: the 403s get the headers too

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _bad_params(request: Request, exc: RequestValidationError):
        where = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in exc.errors())
        return JSONResponse({"error": f"invalid request ({where})"[:300]}, status_code=400)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):  # pragma: no cover - safety net
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"[:300]}, status_code=500)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    @app.get("/healthz")
    async def healthz():
        return {
            "status": "ok", "model": name, "labels": labels,
            "queue": batcher._queue.qsize(), "busy": batcher.busy,
            "batches": batcher.batches, "images": batcher.images,
            "largest_batch": batcher.largest_batch,
        }

    @app.get("/api/model")
    async def model_info():
        public = _public_meta(meta) if isinstance(meta, dict) else {}
        training = _training_figures(public)
        return {
            "model": name, "labels": labels, "backbone": str(getattr(model, "backbone", "")),
            "training": training, "meta": public, "top_k": default_k,
            "max_bytes": max_bytes, "decode_size": size, "view_long_side": VIEW_LONG_SIDE,
            "orientation_policy": "upright" if orient else "stored",
        }

    @app.post("/api/predict")
    async def predict(request: Request, top_k: int | None = None, turns: bool = False):
        t0 = time.perf_counter()
        k = default_k if top_k is None else max(1, min(int(top_k), len(labels)))
        body = _Body(request, max_bytes)
        too_large = f"upload too large: the limit is {_mb(max_bytes)}"
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                return _error(400, "invalid Content-Length header")
            if n > max_bytes:
                await body.drain(cap=max(4 * max_bytes, 64_000_000))
                return _error(413, f"{too_large} (got {_mb(n)})")
        filename = None
        try:
            ctype = request.headers.get("content-type", "")
            if ctype.lower().startswith("multipart/form-data"):
                parser = MultiPartParser(request.headers, body.chunks(), max_files=1, max_fields=16)
                form = await parser.parse()
                try:
                    upload = form.get("file")
                    if upload is None or isinstance(upload, str):
                        return _error(400, 'no file: send multipart/form-data with a file field named "file"')
                    filename = _safe_name(upload.filename)
                    data = await upload.read()
                finally:
                    await form.close()
            elif ctype.lower().startswith("application/x-www-form-urlencoded"):
                return _error(400, 'no file: send multipart/form-data with a file field named "file"')
            else:  # a raw body is accepted too: curl --data-binary @photo.jpg
                data = await body.read()
        except _TooLarge:
            await body.drain(cap=max(4 * max_bytes, 64_000_000))
            return _error(413, f"{too_large} (got more than {_mb(max_bytes)})")
        except MultiPartException as exc:
            return _error(400, f"malformed multipart body: {exc.message}")
        except ClientDisconnect:
            return _error(400, "client disconnected during upload")
        t_read = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            prep = await loop.run_in_executor(decode_pool, prepare, data, size, orient)
        except UnreadableImage as exc:
            return _error(_status_for(exc.reason), exc.reason)
        finally:
            del data
        turn_views: list[str] = []
        try:
            if turns:  # the turn test: as is + turned 90/180/270, one model call of four
                images = turned(prep.image)
                turn_views = await loop.run_in_executor(decode_pool, thumbnails, images)
                all_preds, batch_n, model_ms = await asyncio.wrap_future(batcher.submit_many(images, k))
                preds = all_preds[0]
            else:
                preds, batch_n, model_ms = await asyncio.wrap_future(batcher.submit(prep.image, k))
        except RuntimeError as exc:
            return _error(503, str(exc))
        ms = (time.perf_counter() - t0) * 1000
        extra = {"turn_test": turn_json(all_preds, turn_views)} if turns else {}
        return {
            "path": filename,
            "orientation": prep.tag,
            "predictions": [{"label": str(lab), "score": float(s)} for lab, s in preds],
            "view": prep.view,
            "view_size": list(prep.view_size),
            "stored_view": prep.stored_view,
            "orientation_note": prep.note,
            "stored_size": list(prep.stored_size),
            "format": prep.format,
            "notes": prep.notes,
            "ms": round(ms, 1),
            "timings": {
                "read_ms": round((t_read - t0) * 1000, 1),
                "decode_ms": round(prep.decode_ms, 1),
                "model_ms": round(model_ms, 1),
                "batch": batch_n,
            },
            **extra,
        }

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


# --------------------------------------------------------------------------- CLI entry


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before starting so a busy port is a one-line error, and port 0 works."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UprightError(f"cannot bind {host!r}: {exc.strerror or exc}") from exc
    family, socktype, proto, _, addr = infos[0]
    sock = socket.socket(family, socktype, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise UprightError(f"port {port} on {host} is already in use (try --port {port + 1})") from exc
        raise UprightError(f"cannot bind {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def url_for(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def run(
    model_dir: str | os.PathLike,
    host: str | None = None,
    port: int = DEFAULT_PORT,
    *,
    lan: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    top_k: int = DEFAULT_TOP_K,
    max_batch: int = DEFAULT_MAX_BATCH,
    log_level: str = "warning",
    echo: Callable[[str], None] = print,
    tls_dir: str | os.PathLike | None = None,
) -> None:
    """Load MODEL, bind HOST:PORT, print the address and serve until Ctrl+C.

    host None: 127.0.0.1, or every IPv4 interface with lan. lan: https with this machine's
    self-signed certificate (tls.certificate_for, cached in tls_dir, default the user config
    dir), a fresh access token on every request (access.TokenGate), and the link plus a QR
    code printed for a phone. `lan=True, host="127.0.0.1"` is the same on loopback only
    (what the tests run).
    """
    import uvicorn

    from ..model import load_model

    host = host if host is not None else (DEFAULT_LAN_HOST if lan else DEFAULT_HOST)
    if lan and host not in WILDCARDS and not is_ip(host):
        raise UprightError(f"--lan --host needs an IP address of this machine (the certificate names "
                           f"it and the phone's link uses it), not {host!r}")
    model_dir = Path(model_dir)
    model = load_model(model_dir)  # UprightError with a one-line reason when it is not a model
    addresses: list[str] = []
    if lan:
        addresses = lan_addresses() if host in WILDCARDS else [host.strip("[]")]
        if not addresses:
            raise UprightError("--lan found no network address on this machine (is it on Wi-Fi or "
                               "a wired network?); pick one with --host ADDRESS")
        cert = certificate_for(addresses, tls_dir)
    sock = bind_socket(host, port)
    sock.listen(2048)  # connections from now on wait for the server instead of being refused
    actual_port = sock.getsockname()[1]
    token = new_token() if lan else None
    app = create_app(model, max_bytes=max_bytes, top_k=top_k, max_batch=max_batch,
                     model_name=model_dir.resolve().name, token=token)
    about = f"(model {model_dir}, labels: {', '.join(map(str, model.labels))})"
    ssl: dict = {}
    if lan:
        links = [link(a, actual_port, token) for a in addresses]
        echo(f"upright serve: {links[0]}  {about}")
        echo("  On your phone (same network as this machine), scan the code or type the link:")
        echo("")
        for line in qr_lines(links[0]):
            echo("  " + line)
        echo("")
        for line in phone_words(addresses, cert.fingerprint):
            echo("  " + line)
        echo(f"  Certificate {'reused from' if cert.reused else 'made and kept in'} {cert.cert_path.parent} "
             f"(valid until {cert.not_after:%Y-%m-%d}).")
        echo("  Anyone with this link can use the app and the model until you stop the server; "
             "the token changes at every start.")
        for other in links[1:]:
            echo(f"  Also reachable at {other}")
        ssl = {"ssl_certfile": str(cert.cert_path), "ssl_keyfile": str(cert.key_path)}
    else:
        echo(f"upright serve: {url_for(host, actual_port)}  {about}")
        warning = exposure_warning(host, actual_port)
        if warning:
            echo("  " + warning)
    echo("  Ctrl+C to stop")
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=3, **ssl)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
