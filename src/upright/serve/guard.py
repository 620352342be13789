"""Request-level limits of a public upload endpoint, as pure ASGI middleware any app can add
(`upright serve`, the studio): `RequestGuard` answers before the app sees the request.

- 431 for a request head (request line + headers) over MAX_HEAD_BYTES (16 KiB): h11 only
  bounds a head that arrives in pieces (400 "malformed"); one that arrives whole is caught here.
- 400 for Content-Length together with Transfer-Encoding (RFC 9112 6.3: a request-smuggling
  pattern; h11 would pick one and go on).
- 403 for a cross-origin request that changes something (any method but GET, HEAD, OPTIONS):
  `Sec-Fetch-Site` other than same-origin/none, or an `Origin` whose host and port are not
  the request's own `Host`. Without both headers (curl, scripts) the request is not from a
  browser page and goes through. So no web page a user visits can make their browser spend
  the server's CPU on uploads.

Every refusal is JSON {"error": str}, with `Connection: close` when the body was not read
(the connection-level protocol, protocol.py, then lingers and closes).
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from .defaults import MAX_HEAD_BYTES

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def head_bytes(scope) -> int:
    """The size of the request head as sent: request line and header lines with their CRLFs."""
    line = len(scope.get("method", "")) + len(scope.get("raw_path") or scope.get("path", "").encode()) + \
        len(scope.get("query_string", b"")) + 12  # spaces, '?', " HTTP/1.1", CRLF
    return line + sum(len(k) + len(v) + 4 for k, v in scope.get("headers", ())) + 2


def _header(scope, name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == name]


def _host_port(netloc: str, scheme: str) -> tuple[str, int | None]:
    try:
        parts = urlsplit(f"//{netloc}")
        return (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # a malformed port
        return "", None


def cross_origin(scope) -> str | None:
    """Why this request comes from another origin's page (the 403 message), or None."""
    site = _header(scope, b"sec-fetch-site")
    if site and site[-1].strip().lower() not in ("same-origin", "none"):
        return f"cross-origin request refused (Sec-Fetch-Site: {site[-1].strip()[:40]})"
    origins = _header(scope, b"origin")
    if not origins:
        return None
    origin = origins[-1].strip()
    host = (_header(scope, b"host") or [""])[-1].strip()
    parts = urlsplit(origin) if origin.lower() != "null" else None
    scheme = scope.get("scheme", "http")
    if parts is None or not host or _host_port(parts.netloc, parts.scheme) != _host_port(host, scheme):
        return f"cross-origin request refused (Origin: {origin[:80]})"
    return None


def refusal(scope) -> tuple[int, str] | None:
    """(status, message) for a request the guard refuses, or None."""
    if head_bytes(scope) > MAX_HEAD_BYTES:
        return 431, f"request head over {MAX_HEAD_BYTES // 1024} KiB"
    if _header(scope, b"content-length") and _header(scope, b"transfer-encoding"):
        return 400, "Content-Length together with Transfer-Encoding (a request-smuggling pattern)"
    if scope.get("method", "GET") not in SAFE_METHODS:
        why = cross_origin(scope)
        if why:
            return 403, why
    return None


class RequestGuard:
    """Pure ASGI middleware: refuses what `refusal` names, before the app reads anything."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refused = refusal(scope)
        if refused is None:
            return await self.app(scope, receive, send)
        status, message = refused
        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    """Pure ASGI middleware: nosniff and no referrer everywhere, and the given CSP."""

    def __init__(self, app, csp: str):
        self.app, self.csp = app, csp.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                headers.append((b"content-security-policy", self.csp))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
