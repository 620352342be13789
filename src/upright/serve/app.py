"""The server behind `upright serve MODEL` (HTTP contract: docs/contracts.md, "HTTP (serve)").

Request path for POST /api/predict:

    guard (guard.py):  431 head over 16 KiB, 400 Content-Length with Transfer-Encoding,
                       403 cross-origin (Origin / Sec-Fetch-Site), before the app reads anything
    body (body.py):    counted while it streams; 413 past the limit; multipart field "file"
      -> price:        imaging.estimate(bytes): the decode's memory from the header alone
      -> budget:       wait (in the event loop) until it fits in the server's decode budget
                       (budget.py), shared by every upload decoding at once
      -> decode pool:  imaging.open_image(bytes) ONCE: upright RGB at the model's resize size
                       + the orientation record; the "view" (what the model saw) and, when a
                       tag turned the picture, the stored pixels are derived from that decode
      -> batcher:      one worker thread (batcher.py); concurrent requests that arrive while
                       the model is busy are grouped into a single `Model.predict_images` call
      -> JSON:         the predict shape + view, stored_view, orientation_note, ms
    ?turns=1 (the turn test, turns.py): the decoded picture as is and turned 90/180/270
    goes to the batcher as ONE job of four images (one model call), + "turn_test".

With a token (`serve --lan`: run(lan=True)), access.TokenGate answers 403 to any request
without it, and the server speaks https with tls.certificate_for's certificate.

Nothing from a request reaches the filesystem: the uploaded filename is only echoed back
as `path`. Uploads are held in memory (bounded by the size limit, multipart files too); the
event loop never decodes or runs the model, so /healthz answers while predictions run.
Connection-level limits (408 for slow heads and bodies, lingering close after an early
answer, JSON protocol errors) are protocol.py's; after a burst of uploads the freed heap
goes back to the OS (release_memory).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import socket
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from PIL import Image
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from ..errors import UprightError, one_line
from ..imaging import open_image, store_as
from ..model import DEFAULT_TOP_K
from ..orientation import orientation_note
from ..report.html import image_data_url
from .access import new_token
from .batcher import Batcher
from .body import UploadError, read_upload
from .budget import Burst, DecodeBudget, decode_failure_reason, decode_upload, turning_tag
from .defaults import (BODY_IDLE_TIMEOUT, BODY_TIMEOUT, DEFAULT_DECODE_BUDGET, DEFAULT_HOST, DEFAULT_LAN_HOST,
                       DEFAULT_MAX_BATCH, DEFAULT_MAX_BYTES, DEFAULT_PORT)
from .guard import guard_app
from .lan import addresses_for, exposure_warning, is_loopback, link, print_lan_access
from .protocol import server_config
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


def json_error(status: int, message: str) -> JSONResponse:
    """The JSON refusal every route answers: {"error": message} with `status` (serve, the studio)."""
    return JSONResponse({"error": message}, status_code=status)


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
    turned = turning_tag(o) is not None
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


# --------------------------------------------------------------------------- app


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


@dataclass
class _Server:
    """What the routes share: the model's facts, the limits and the workers."""

    model: Any
    labels: list[str]
    name: str
    meta: dict
    max_bytes: int
    default_k: int
    size: int  # the model's decode size (short side)
    orient: bool
    body_idle_timeout: float
    body_timeout: float
    batcher: Batcher
    pool: concurrent.futures.ThreadPoolExecutor
    budget: DecodeBudget
    warm: concurrent.futures.Future  # done once the model is warm (Batcher.warm)
    burst: Burst  # requests being answered; when the last ends the freed heap goes back to the OS


def create_app(
    model: Any,
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    top_k: int = DEFAULT_TOP_K,
    max_batch: int = DEFAULT_MAX_BATCH,
    model_name: str | None = None,
    decode_size: int | None = None,
    decode_workers: int | None = None,
    decode_budget: int | DecodeBudget = DEFAULT_DECODE_BUDGET,
    body_idle_timeout: float = BODY_IDLE_TIMEOUT,
    body_timeout: float = BODY_TIMEOUT,
    token: str | None = None,
    loopback_only: bool = False,
) -> FastAPI:
    """The FastAPI app for a loaded `upright.model.Model` (or anything with `labels`,
    `meta` and `predict_images(images, top_k)`).

    max_bytes: largest request body accepted (413 beyond). top_k: default labels per
    answer (the request may ask ?top_k=N). max_batch: most images per model call.
    decode_budget: bytes of decode memory all uploads decoding at once may hold (or a
    DecodeBudget shared with another app). body_idle_timeout / body_timeout: 408 when the
    upload pauses longer / takes longer. Serve it with `server_config(app)` for the
    connection-level limits (head timeout, lingering close, JSON protocol errors). The model
    warms up at once in the batcher's thread (one dummy prediction); /healthz answers 503
    with "ready": false until it is warm (`is_ready(app)`).
    token: when set, every request needs it (access.TokenGate; serve it over https, as
    `run(lan=True)` does: the cookie it sets is Secure). loopback_only: refuse (400) a Host
    header that is not this machine's loopback, as `run` does on a loopback bind without a token
    (a page of another site that DNS-rebinds its name to 127.0.0.1 reaches nothing).
    """
    srv = _server(model, max_bytes, top_k, max_batch, model_name, decode_size, decode_workers, decode_budget,
                  body_idle_timeout, body_timeout)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        srv.batcher.close()
        srv.pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="upright serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.batcher = srv.batcher
    app.state.max_bytes = srv.max_bytes
    app.state.warm = srv.warm
    guard_app(app, token, csp=CSP, loopback_only=loopback_only)
    json_errors(app)
    _routes(app, srv)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _server(model, max_bytes, top_k, max_batch, model_name, decode_size, decode_workers, decode_budget,
            body_idle_timeout, body_timeout) -> _Server:
    labels = [str(x) for x in model.labels]
    batcher = Batcher(model, max_batch=max_batch)
    workers = decode_workers or max(2, min(4, (os.cpu_count() or 2)))
    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="upright-decode")
    return _Server(
        model=model, labels=labels,
        name=model_name or getattr(model, "name", None) or str(getattr(model, "backbone", "model")),
        meta=getattr(model, "meta", None) or {}, max_bytes=int(max_bytes),
        default_k=max(1, min(int(top_k), len(labels))), size=int(decode_size or decode_size_for(model)),
        orient=bool(getattr(model, "orient", True)),
        body_idle_timeout=body_idle_timeout, body_timeout=body_timeout,
        batcher=batcher,
        pool=pool, burst=Burst(pool),
        budget=decode_budget if isinstance(decode_budget, DecodeBudget) else DecodeBudget(decode_budget),
        warm=batcher.warm())


def warm_state(warm: concurrent.futures.Future) -> tuple[bool, str | None]:
    """(warm, why the warm-up failed or None)."""
    if not warm.done():
        return False, None
    exc = warm.exception()
    return exc is None, (f"the model failed its warm-up: {one_line(exc)}" if exc is not None else None)


def is_ready(app: FastAPI) -> bool:
    """Whether an app of create_app has its model warm (what /healthz's "ready" says)."""
    return warm_state(app.state.warm)[0]


def json_errors(app: FastAPI) -> None:
    """Every error the app answers is JSON {"error": str} (serve, the studio)."""

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


def _routes(app: FastAPI, srv: _Server) -> None:
    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    @app.get("/healthz")
    async def healthz():
        b = srv.batcher
        ready, why = warm_state(srv.warm)
        body = {
            "status": "ok" if ready else "failed" if why else "warming", "ready": ready,
            **({"error": why} if why else {}),
            "model": srv.name, "labels": srv.labels, "queue": b.queued, "busy": b.busy,
            "batches": b.batches, "images": b.images, "largest_batch": b.largest_batch,
            "decode_memory": {"budget_mb": srv.budget.total >> 20, "held_mb": srv.budget.held >> 20,
                              "peak_mb": srv.budget.peak >> 20},
        }
        return body if ready else JSONResponse(body, status_code=503)

    @app.get("/api/model")
    async def model_info():
        public = _public_meta(srv.meta) if isinstance(srv.meta, dict) else {}
        return {
            "model": srv.name, "labels": srv.labels, "backbone": str(getattr(srv.model, "backbone", "")),
            "training": _training_figures(public), "meta": public, "top_k": srv.default_k,
            "max_bytes": srv.max_bytes, "decode_size": srv.size, "view_long_side": VIEW_LONG_SIDE,
            "orientation_policy": "upright" if srv.orient else "stored",
        }

    @app.post("/api/predict")
    async def predict(request: Request, top_k: int | None = None, turns: bool = False):
        async with srv.burst.request():
            return await _answer(srv, request, top_k, turns)


async def _decode(srv: _Server, data: bytes) -> "Prepared | JSONResponse":
    """Price, wait for the budget, decode: the Prepared picture or the JSON refusal."""
    try:
        return await decode_upload(data, srv.size, budget=srv.budget, pool=srv.pool,
                                   decode=functools.partial(prepare, decode_size=srv.size, orient=srv.orient))
    except Exception as exc:  # noqa: BLE001 - a hostile upload is a 400 (415 for no image), never a 500
        reason = decode_failure_reason(exc)
        return json_error(_status_for(reason), reason)


async def _answer(srv: _Server, request: Request, top_k: int | None, turns: bool):
    t0 = time.perf_counter()
    k = srv.default_k if top_k is None else max(1, min(int(top_k), len(srv.labels)))
    try:
        upload = await read_upload(request, srv.max_bytes, srv.body_idle_timeout, srv.body_timeout)
    except UploadError as exc:
        return json_error(exc.status, exc.message)
    t_read = time.perf_counter()
    prep = await _decode(srv, upload.data)
    upload.data = b""  # the picture is decoded: the bytes may go
    if isinstance(prep, JSONResponse):
        return prep
    extra: dict = {}
    try:
        if turns:  # the turn test: as is + turned 90/180/270, one model call of four
            images = turned(prep.image)
            views = await asyncio.get_running_loop().run_in_executor(srv.pool, thumbnails, images)
            all_preds, batch_n, model_ms = await asyncio.wrap_future(srv.batcher.submit_many(images, k))
            preds, extra = all_preds[0], {"turn_test": turn_json(all_preds, views)}
        else:
            preds, batch_n, model_ms = await asyncio.wrap_future(srv.batcher.submit(prep.image, k))
    except RuntimeError as exc:
        return json_error(503, str(exc))
    return {
        "path": upload.filename, "orientation": prep.tag,
        "predictions": [{"label": str(lab), "score": float(s)} for lab, s in preds],
        "view": prep.view, "view_size": list(prep.view_size), "stored_view": prep.stored_view,
        "orientation_note": prep.note, "stored_size": list(prep.stored_size), "format": prep.format,
        "notes": prep.notes, "ms": round((time.perf_counter() - t0) * 1000, 1),
        "timings": {"read_ms": round((t_read - t0) * 1000, 1), "decode_ms": round(prep.decode_ms, 1),
                    "model_ms": round(model_ms, 1), "batch": batch_n},
        **extra,
    }


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
    from ..model import load_model

    host = host if host is not None else (DEFAULT_LAN_HOST if lan else DEFAULT_HOST)
    model_dir = Path(model_dir)
    addresses = addresses_for(host) if lan else []
    model = load_model(model_dir)  # UprightError with a one-line reason when it is not a model
    cert = certificate_for(addresses, tls_dir) if lan else None

    def make_app(token):
        return create_app(model, max_bytes=max_bytes, top_k=top_k, max_batch=max_batch,
                          model_name=model_dir.resolve().name, token=token,
                          loopback_only=token is None and is_loopback(host))

    def plain(port: int) -> list[str]:
        warning = exposure_warning(host, port)
        return [warning] if warning else []

    serve_until_stopped("serve", make_app, host=host, port=port, addresses=addresses, cert=cert, echo=echo,
                        log_level=log_level, about=lambda app: f"(model {model_dir}, labels: "
                                                               f"{', '.join(map(str, model.labels))})",
                        plain=plain, lan_words={"phones": "your phone", "server": "server",
                                                "powers": "use the app and the model"})


def serve_until_stopped(verb: str, make_app: Callable[[str | None], FastAPI], *, host: str, port: int,
                        addresses: list[str], cert, echo: Callable[[str], None], log_level: str,
                        about: Callable[[FastAPI], str], plain: Callable[[int], list[str]], lan_words: dict) -> None:
    """Bind HOST:PORT, make the app (`make_app(token)`: a fresh token with --lan, i.e. when
    `cert` is given), print where to reach it (--lan: the links, QR code and what the phone
    will ask, lan.print_lan_access(**lan_words); else the URL and `plain(port)`'s lines),
    and serve with https under --lan until Ctrl+C. `upright serve` and `upright studio`."""
    import uvicorn

    sock = bind_socket(host, port)
    sock.listen(2048)  # connections from now on wait for the server instead of being refused
    actual = sock.getsockname()[1]
    token = new_token() if cert is not None else None
    app = make_app(token)
    ssl: dict = {}
    if cert is not None:
        links = [link(a, actual, token) for a in addresses]
        echo(f"upright {verb}: {links[0]}  {about(app)}")
        print_lan_access(echo, links, addresses, cert, **lan_words)
        ssl = {"ssl_certfile": str(cert.cert_path), "ssl_keyfile": str(cert.key_path)}
    else:
        echo(f"upright {verb}: {url_for(host, actual)}  {about(app)}")
        for line in plain(actual):
            echo("  " + line)
    echo("  Ctrl+C to stop")
    server = uvicorn.Server(server_config(app, log_level=log_level, timeout_graceful_shutdown=3, **ssl))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
