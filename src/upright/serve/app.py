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
as `path`. Uploads are held in memory (bounded by the size limit, multipart files too); the
event loop never decodes or runs the model, so /healthz answers while predictions run.

Limits for a public upload endpoint (docs/contracts.md, "HTTP (serve)"):
    413 before the body is read past the limit: a Content-Length over it is answered at once,
        a chunked body as soon as it crosses it; then at most LINGER_SECONDS of lingering
        close (the rest is read and discarded so simple clients see the 413, not a reset);
    408 for slow clients: the request head must arrive within header_timeout, the body may
        pause at most body_idle_timeout, must average MIN_BODY_RATE once it has taken that
        long, and may take at most body_timeout in all;
    every error the server answers is JSON {"error": str}, protocol errors included;
    after a burst of uploads the freed heap goes back to the OS (release_memory).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
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

from ..errors import UnreadableImage, UprightError, one_line
from ..report.html import image_data_url
from ..imaging import open_image, store_as
from ..model import DEFAULT_TOP_K
from ..orientation import orientation_note
from .access import TokenGate, new_token
from .defaults import (BODY_IDLE_TIMEOUT, BODY_TIMEOUT, DEFAULT_HOST, DEFAULT_LAN_HOST, DEFAULT_MAX_BATCH,
                       DEFAULT_MAX_BYTES, DEFAULT_PORT, HEADER_TIMEOUT, LINGER_SECONDS, MAX_HEAD_BYTES,
                       MIN_BODY_RATE)
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
    """The short side the model's input contract resizes to (`model.contract.resize`), so the
    one decode is exactly the picture the model's views are cut from; a stand-in without a
    contract gets DEFAULT_DECODE_SIZE."""
    contract = getattr(model, "contract", None)
    return int(contract.resize) if contract is not None else DEFAULT_DECODE_SIZE


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


class _TooSlow(Exception):
    """The client sent the body too slowly; the message is the one-line reason."""


class _Body:
    """Reads the request body straight from ASGI, counting bytes against the limit and
    timing each wait (idle) and the whole body (total)."""

    def __init__(self, request: Request, limit: int, idle_timeout: float = BODY_IDLE_TIMEOUT,
                 total_timeout: float = BODY_TIMEOUT):
        self.request, self.limit = request, limit
        self.idle_timeout, self.total_timeout = idle_timeout, total_timeout
        self.received = 0
        self.finished = False
        self._start: float | None = None

    async def _receive(self) -> dict:
        """The next ASGI message, waiting no longer than the first of: the idle timeout, the
        total timeout, and the moment the average rate would fall below MIN_BODY_RATE."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._start is None:
            self._start = now
        limits = {
            "idle": now + self.idle_timeout,
            "total": self._start + self.total_timeout,
            "rate": self._start + max(self.idle_timeout, self.received / MIN_BODY_RATE),
        }
        which = min(limits, key=limits.get)
        try:
            wait = limits[which] - now
            if wait <= 0:
                raise asyncio.TimeoutError
            return await asyncio.wait_for(self.request.receive(), wait)
        except asyncio.TimeoutError:
            raise _TooSlow({
                "idle": f"upload too slow: no data for {self.idle_timeout:g} s",
                "total": f"upload too slow: the body took more than {self.total_timeout:g} s",
                "rate": f"upload too slow: under {MIN_BODY_RATE:,} bytes/s on average",
            }[which]) from None

    async def chunks(self) -> AsyncIterator[bytes]:
        while not self.finished:
            msg = await self._receive()
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


class _InMemoryMultiPart(MultiPartParser):
    """Starlette's parser spools files over 1 MB to a temp file on disk; uploads here are
    bounded by the size limit and stay in memory (nothing from a request touches the disk)."""

    def __init__(self, *args, limit: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.spool_max_size = limit + 1


_malloc_trim: list = []


def release_memory() -> None:
    """Hand the heap freed after a burst of uploads back to the OS. glibc keeps it (per-thread
    arenas, a raised mmap threshold) and the server's RSS would stay at the burst's level;
    malloc_trim returns it. A no-op where the C library has no malloc_trim."""
    if not _malloc_trim:
        try:
            import ctypes

            _malloc_trim.append(ctypes.CDLL(None).malloc_trim)
        except (OSError, AttributeError):
            _malloc_trim.append(None)
    if _malloc_trim[0] is not None:
        _malloc_trim[0](0)


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
    body_idle_timeout: float = BODY_IDLE_TIMEOUT,
    body_timeout: float = BODY_TIMEOUT,
    token: str | None = None,
) -> FastAPI:
    """The FastAPI app for a loaded `upright.model.Model` (or anything with `labels`,
    `meta` and `predict_images(images, top_k)`).

    max_bytes: largest request body accepted (413 beyond). top_k: default labels per
    answer (the request may ask ?top_k=N). max_batch: most images per model call.
    body_idle_timeout / body_timeout: 408 when the upload pauses longer / takes longer.
    Serve it with `server_config(app)` for the connection-level limits (head timeout,
    lingering close, JSON protocol errors).
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
    in_flight = 0  # requests being answered; when it drops to 0 the burst is over

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
        nonlocal in_flight
        in_flight += 1
        try:
            return await _answer(request, top_k, turns)
        finally:
            in_flight -= 1
            if in_flight == 0:  # the burst is over: give its memory back
                try:
                    asyncio.get_running_loop().run_in_executor(decode_pool, release_memory)
                except RuntimeError:  # shutting down: the pool takes no more work
                    pass

    async def _answer(request: Request, top_k: int | None, turns: bool):
        t0 = time.perf_counter()
        k = default_k if top_k is None else max(1, min(int(top_k), len(labels)))
        body = _Body(request, max_bytes, body_idle_timeout, body_timeout)
        too_large = f"upload too large: the limit is {_mb(max_bytes)}"
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                return _error(400, "invalid Content-Length header")
            if n > max_bytes:  # answered before a byte of the body is read
                return _error(413, f"{too_large} (got {_mb(n)})")
        filename = None
        try:
            ctype = request.headers.get("content-type", "")
            if ctype.lower().startswith("multipart/form-data"):
                parser = _InMemoryMultiPart(request.headers, body.chunks(), max_files=1, max_fields=16,
                                            limit=max_bytes)
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
        except _TooLarge:  # answered as soon as the body crosses the limit
            return _error(413, f"{too_large} (got more than {_mb(max_bytes)})")
        except _TooSlow as exc:
            return _error(408, str(exc))
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
        except MemoryError:  # the decoder's limits should prevent it; the upload is still the cause
            return _error(400, "image too large to decode in memory")
        except Exception as exc:  # noqa: BLE001 - a hostile upload is a 400, never a 500
            return _error(400, f"cannot decode the image ({type(exc).__name__}: {one_line(exc, 160)})")
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


# --------------------------------------------------------------------------- connections


def _raw_json_response(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


def protocol_class(header_timeout: float = HEADER_TIMEOUT, linger_seconds: float = LINGER_SECONDS,
                   linger_bytes: int = DEFAULT_MAX_BYTES):
    """uvicorn's h11 protocol with the connection-level limits of a public upload endpoint.

    - The request head must be complete within `header_timeout` seconds of the connection
      opening or of its first byte (slowloris): a started head gets 408 JSON, a connection
      that never sent a byte is just closed; then the connection is closed.
    - An answer given before the request body was read in full (413, 408, 404 to a POST...)
      says `Connection: close` and is followed by a lingering close: the write side is shut, at most `linger_bytes`
      more are read and discarded for at most `linger_seconds`, then the connection is
      closed. (Plain uvicorn keeps reading such a body for as long as the client sends.)
    - Protocol errors (malformed request line, headers over MAX_HEAD_BYTES) answer JSON.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class LimitedH11Protocol(H11Protocol):
        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._head_timer = None
            self._lingering = False
            self._linger_left = 0
            self._arm_head_timer()
            self._close_after_early_answers()

        def _close_after_early_answers(self) -> None:
            """An answer sent while the request body is still arriving (413, 408, the token's
            403...) says `Connection: close`, so the client opens a new connection instead of
            sending its next request into the lingering close (TLS has no half-close to say it)."""
            conn, send = self.conn, self.conn.send

            def send_event(event):
                if isinstance(event, h11.Response) and conn.their_state is h11.SEND_BODY:
                    event = h11.Response(status_code=event.status_code, reason=event.reason,
                                         headers=[*event.headers, (b"connection", b"close")],
                                         http_version=event.http_version)
                return send(event)

            conn.send = send_event

        def _arm_head_timer(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(header_timeout, self._head_timed_out)

        def _disarm_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return
            if self.conn.trailing_data[0]:  # part of a request head arrived
                self.transport.write(_raw_json_response(
                    408, "Request Timeout", f"request head not received within {header_timeout:g} s"))
            self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self._lingering:
                self._linger_left -= len(data)
                if self._linger_left <= 0:
                    self.transport.close()
                return
            if self.conn.their_state is h11.IDLE:
                self._arm_head_timer()
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:
                self._disarm_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
                self._lingering = True
                self._linger_left = linger_bytes
                self._unset_keepalive_if_required()
                self.flow.resume_reading()
                if self.transport.can_write_eof():
                    self.transport.write_eof()
                self.loop.call_later(linger_seconds, self.transport.close)

        def send_400_response(self, msg: str) -> None:
            if self.cycle is None or not self.cycle.response_started:
                self.transport.write(_raw_json_response(400, "Bad Request", f"malformed HTTP request: {msg}"))
            self.transport.close()

        def connection_lost(self, exc) -> None:
            self._disarm_head_timer()
            super().connection_lost(exc)

    return LimitedH11Protocol


def server_config(app, *, log_level: str = "warning", header_timeout: float = HEADER_TIMEOUT,
                  linger_seconds: float = LINGER_SECONDS, linger_bytes: int | None = None, **kwargs):
    """The uvicorn.Config that serves `app` with the limits above (used by `run` and the tests)."""
    import uvicorn

    max_bytes = int(getattr(getattr(app, "state", None), "max_bytes", DEFAULT_MAX_BYTES))
    proto = protocol_class(header_timeout, linger_seconds, max_bytes if linger_bytes is None else linger_bytes)
    return uvicorn.Config(app, http=proto, log_level=log_level, access_log=False, lifespan="on",
                          h11_max_incomplete_event_size=MAX_HEAD_BYTES, **kwargs)


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
    server = uvicorn.Server(server_config(app, log_level=log_level, timeout_graceful_shutdown=3, **ssl))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
