"""Reading a multipart upload of several photos within `upright serve`'s bounds.

The body is read through serve's own pieces (serve.body: `Body` counts bytes against the
limit and times the client, `InMemoryMultiPart` keeps files in memory, never on disk): the
same 413 (a Content-Length over the limit is refused before a byte is read), 408 (a slow
client) and 400 (malformed) as `upright serve`. The one place the studio reaches into serve's
upload internals.
"""

from __future__ import annotations

from fastapi import Request

from ..serve.body import Body, InMemoryMultiPart, UploadError, check_length, mb, safe_name, upload_errors

MAX_FILES = 64  # photos in one request
MAX_FIELDS = 16


async def read_files(request: Request, max_bytes: int) -> tuple[list[tuple[str | None, bytes]], dict[str, str]]:
    """([(display name, bytes)] of every "file" field, {other field: text}); UploadError otherwise."""
    too_large = f"upload too large: the limit is {mb(max_bytes)} a request (send fewer photos at once)"
    check_length(request, max_bytes, too_large)
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise UploadError(400, 'send multipart/form-data with one or more file fields named "file"')
    body = Body(request, max_bytes)
    with upload_errors(max_bytes, too_large):
        parser = InMemoryMultiPart(request.headers, body.chunks(), max_files=MAX_FILES, max_fields=MAX_FIELDS,
                                   limit=max_bytes)
        form = await parser.parse()
        try:
            files, fields = [], {}
            for key, value in form.multi_items():
                if isinstance(value, str):
                    fields[key] = value[:200]
                elif key == "file":
                    files.append((safe_name(value.filename), await value.read()))
        finally:
            await form.close()
    if not files:
        raise UploadError(400, 'no file: send multipart/form-data with one or more file fields named "file"')
    return files, fields
