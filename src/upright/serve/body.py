"""Reading an upload within the server's limits (docs/contracts.md, "HTTP (serve)").

`read_upload(request, max_bytes)` returns the file's bytes and its (display-only) name from a
multipart form (field "file") or a raw body, or raises UploadError(status, message): 413 as
soon as the body crosses the limit (a Content-Length over it before a byte is read), 408 for
slow clients, 400 for a malformed body. Uploads stay in memory (multipart files too): nothing
from a request touches the disk. Any FastAPI app taking uploads can call it (serve, studio).
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from dataclasses import dataclass
from typing import AsyncIterator, Iterator

from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from .defaults import BODY_IDLE_TIMEOUT, BODY_TIMEOUT, MIN_BODY_RATE


class TooLarge(Exception):
    def __init__(self, size: int, exact: bool):
        self.size, self.exact = size, exact


class TooSlow(Exception):
    """The client sent the body too slowly; the message is the one-line reason."""


class Body:
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
            raise TooSlow({
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
                raise TooLarge(self.received, exact=self.finished)
            if chunk:
                yield chunk

    async def read(self) -> bytes:
        return b"".join([c async for c in self.chunks()])


class InMemoryMultiPart(MultiPartParser):
    """Starlette's parser spools files over 1 MB to a temp file on disk; uploads here are
    bounded by the size limit and stay in memory (nothing from a request touches the disk)."""

    def __init__(self, *args, limit: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.spool_max_size = limit + 1


class UploadError(Exception):
    """An upload refused: the HTTP status and the one-line message to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Upload:
    data: bytes
    filename: str | None  # for display only: last path component, printable, bounded


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n:,} bytes"


def safe_name(name: str | None) -> str | None:
    """The uploaded filename, for display only: last path component, printable, bounded."""
    if not name:
        return None
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    return name[:200] or None


NO_FILE = 'no file: send multipart/form-data with a file field named "file"'


@contextmanager
def upload_errors(max_bytes: int, too_large: str) -> Iterator[None]:
    """Reading a body within the limits: its failures as UploadError (413, 408, 400)."""
    try:
        yield
    except TooLarge:  # answered as soon as the body crosses the limit
        raise UploadError(413, f"{too_large} (got more than {mb(max_bytes)})") from None
    except TooSlow as exc:
        raise UploadError(408, str(exc)) from None
    except MultiPartException as exc:
        raise UploadError(400, f"malformed multipart body: {exc.message}") from None
    except ClientDisconnect:
        raise UploadError(400, "client disconnected during upload") from None


def check_length(request: Request, max_bytes: int, too_large: str) -> None:
    """413 for a Content-Length over the limit, before a byte of the body is read."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        n = int(declared)
    except ValueError:
        raise UploadError(400, "invalid Content-Length header") from None
    if n > max_bytes:
        raise UploadError(413, f"{too_large} (got {mb(n)})")


async def read_upload(request: Request, max_bytes: int, idle_timeout: float = BODY_IDLE_TIMEOUT,
                      total_timeout: float = BODY_TIMEOUT) -> Upload:
    """The uploaded file, read within the limits (module docstring); UploadError otherwise."""
    too_large = f"upload too large: the limit is {mb(max_bytes)}"
    check_length(request, max_bytes, too_large)
    body = Body(request, max_bytes, idle_timeout, total_timeout)
    with upload_errors(max_bytes, too_large):
        ctype = request.headers.get("content-type", "").lower()
        if ctype.startswith("multipart/form-data"):
            return await _multipart(request, body, max_bytes)
        if ctype.startswith("application/x-www-form-urlencoded"):
            raise UploadError(400, NO_FILE)
        return Upload(await body.read(), None)  # a raw body is accepted too: curl --data-binary @photo.jpg


async def _multipart(request: Request, body: Body, max_bytes: int) -> Upload:
    parser = InMemoryMultiPart(request.headers, body.chunks(), max_files=1, max_fields=16, limit=max_bytes)
    form = await parser.parse()
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise UploadError(400, NO_FILE)
        return Upload(await upload.read(), safe_name(upload.filename))
    finally:
        await form.close()
