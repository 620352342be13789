"""Reading a multipart upload of several photos within `upright serve`'s bounds.

The body is read through serve's own pieces (serve.body: `Body` counts bytes against the
limit and times the client, `InMemoryMultiPart` keeps files in memory, never on disk): the
same 413 (a Content-Length over the limit is refused before a byte is read), 408 (a slow
client) and 400 (malformed) as `upright serve`. The one place the studio reaches into serve's
upload internals.
"""

from __future__ import annotations

from fastapi import Request
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect

from ..serve.body import Body as _Body
from ..serve.body import InMemoryMultiPart as _InMemoryMultiPart
from ..serve.body import TooLarge as _TooLarge
from ..serve.body import TooSlow as _TooSlow
from ..serve.body import mb as _mb
from ..serve.body import safe_name as _safe_name

MAX_FILES = 64  # photos in one request
MAX_FIELDS = 16


class UploadError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


async def read_files(request: Request, max_bytes: int) -> tuple[list[tuple[str | None, bytes]], dict[str, str]]:
    """([(display name, bytes)] of every "file" field, {other field: text}); UploadError otherwise."""
    too_large = f"upload too large: the limit is {_mb(max_bytes)} a request (send fewer photos at once)"
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise UploadError(400, "invalid Content-Length header")
        if int(declared) > max_bytes:
            raise UploadError(413, f"{too_large} (got {_mb(int(declared))})")
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise UploadError(400, 'send multipart/form-data with one or more file fields named "file"')
    body = _Body(request, max_bytes)
    try:
        parser = _InMemoryMultiPart(request.headers, body.chunks(), max_files=MAX_FILES, max_fields=MAX_FIELDS,
                                    limit=max_bytes)
        form = await parser.parse()
        try:
            files, fields = [], {}
            for key, value in form.multi_items():
                if isinstance(value, str):
                    fields[key] = value[:200]
                elif key == "file":
                    files.append((_safe_name(value.filename), await value.read()))
        finally:
            await form.close()
    except _TooLarge:
        raise UploadError(413, f"{too_large} (got more than {_mb(max_bytes)})") from None
    except _TooSlow as exc:
        raise UploadError(408, str(exc)) from None
    except MultiPartException as exc:
        raise UploadError(400, f"malformed multipart body: {exc.message}") from None
    except ClientDisconnect:
        raise UploadError(400, "client disconnected during upload") from None
    if not files:
        raise UploadError(400, 'no file: send multipart/form-data with one or more file fields named "file"')
    return files, fields
