"""The few ASGI pieces every pure middleware here needs (guard.py, access.py, the studio's):
reading a request header from the scope, and answering a short response without the app."""

from __future__ import annotations

import json


def header_values(scope, name: bytes) -> list[str]:
    """Every value of the request header `name` (lower-case bytes), in order."""
    return [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == name]


def header(scope, name: bytes) -> str | None:
    """The last value of the request header `name`, or None."""
    values = header_values(scope, name)
    return values[-1] if values else None


async def send_body(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """A whole response in two messages (Content-Length added)."""
    headers = headers + [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send, status: int, body: dict, *, close: bool = False) -> None:
    """A JSON answer, never cached; `close` when the request's body was not read (the
    connection-level protocol then lingers and closes)."""
    headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
    if close:
        headers.append((b"connection", b"close"))
    await send_body(send, status, json.dumps(body).encode(), headers)
