"""Request-level limits of a public upload endpoint, as pure ASGI middleware any app can add
(`upright serve`, the studio): `RequestGuard` answers before the app sees the request, and
`guard_app` puts it, the access token and the security headers around an app.

- 431 for a request head (request line + headers) over MAX_HEAD_BYTES (16 KiB): h11 only
  bounds a head that arrives in pieces (400 "malformed"); one that arrives whole is caught here.
- 400 for Content-Length together with Transfer-Encoding (RFC 9112 6.3: a request-smuggling
  pattern; h11 would pick one and go on).
- 403 for a cross-origin request that changes something (any method but GET, HEAD, OPTIONS):
  `Sec-Fetch-Site` other than same-origin/none, or an `Origin` whose host and port are not
  the request's own `Host`. Without both headers (curl, scripts) the request is not from a
  browser page and goes through. So no web page a user visits can make their browser spend
  the server's CPU on uploads.
- 400 for a `Host` that is not a loopback name or address, when the app is built with
  `loopback_only` (the studio without --lan: a page of another site that a DNS rebinding
  points at 127.0.0.1 is same-origin to the browser, but it cannot send this machine's name).

Every refusal is JSON {"error": str}, with `Connection: close` when the body was not read
(the connection-level protocol, protocol.py, then lingers and closes).
"""

from __future__ import annotations

from typing import Callable
from urllib.parse import urlsplit

from .access import TokenGate
from .asgi import header, header_values, send_json
from .defaults import MAX_HEAD_BYTES
from .lan import is_loopback

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def head_bytes(scope) -> int:
    """The size of the request head as sent: request line and header lines with their CRLFs."""
    line = len(scope.get("method", "")) + len(scope.get("raw_path") or scope.get("path", "").encode()) + \
        len(scope.get("query_string", b"")) + 12  # spaces, '?', " HTTP/1.1", CRLF
    return line + sum(len(k) + len(v) + 4 for k, v in scope.get("headers", ())) + 2


def _host_port(netloc: str, scheme: str) -> tuple[str, int | None]:
    try:
        parts = urlsplit(f"//{netloc}")
        return (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # a malformed port
        return "", None


def cross_origin(scope) -> str | None:
    """Why this request comes from another origin's page (the 403 message), or None."""
    site = header(scope, b"sec-fetch-site")
    if site is not None and site.strip().lower() not in ("same-origin", "none"):
        return f"cross-origin request refused (Sec-Fetch-Site: {site.strip()[:40]})"
    origin = header(scope, b"origin")
    if origin is None:
        return None
    origin = origin.strip()
    host = (header(scope, b"host") or "").strip()
    parts = urlsplit(origin) if origin.lower() != "null" else None
    scheme = scope.get("scheme", "http")
    if parts is None or not host or _host_port(parts.netloc, parts.scheme) != _host_port(host, scheme):
        return f"cross-origin request refused (Origin: {origin[:80]})"
    return None


def foreign_host(scope) -> str | None:
    """Why the Host header does not name this machine's loopback (the 400 message), or None."""
    host = (header(scope, b"host") or "").strip()
    name = _host_port(host, scope.get("scheme", "http"))[0]
    if name and is_loopback(name):
        return None
    return "invalid Host header (this server answers to this machine's own loopback names only)"


def refusal(scope, loopback_only: bool = False) -> tuple[int, str] | None:
    """(status, message) for a request the guard refuses, or None."""
    if head_bytes(scope) > MAX_HEAD_BYTES:
        return 431, f"request head over {MAX_HEAD_BYTES // 1024} KiB"
    if header_values(scope, b"content-length") and header_values(scope, b"transfer-encoding"):
        return 400, "Content-Length together with Transfer-Encoding (a request-smuggling pattern)"
    if loopback_only:
        why = foreign_host(scope)
        if why:
            return 400, why
    if scope.get("method", "GET") not in SAFE_METHODS:
        why = cross_origin(scope)
        if why:
            return 403, why
    return None


class RequestGuard:
    """Pure ASGI middleware: refuses what `refusal` names, before the app reads anything."""

    def __init__(self, app, loopback_only: bool = False):
        self.app, self.loopback_only = app, loopback_only

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refused = refusal(scope, self.loopback_only)
        if refused is None:
            return await self.app(scope, receive, send)
        status, message = refused
        await send_json(send, status, {"error": message}, close=True)


class SecurityHeaders:
    """Pure ASGI middleware: nosniff and no referrer everywhere, and the CSP: one string, or
    a function of the request path. They replace any an inner app set (an app mounted inside
    another gets the outer one's policy)."""

    OWN = (b"x-content-type-options", b"referrer-policy", b"content-security-policy")

    def __init__(self, app, csp: str | Callable[[str], str]):
        self.app = app
        self.csp = csp if callable(csp) else (lambda path, policy=csp: policy)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        csp = self.csp(scope.get("path", "")).encode()

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k not in self.OWN]
                headers += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                            (b"content-security-policy", csp)]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def guard_app(app, token: str | None = None, *, csp: str | Callable[[str], str],
              loopback_only: bool = False) -> None:
    """The request-level limits of a public upload endpoint (RequestGuard), the access token
    when given (access.TokenGate), and the security headers (outermost, so every refusal
    carries them too). `loopback_only`: refuse a Host that is not this machine's loopback."""
    app.add_middleware(RequestGuard, loopback_only=loopback_only)
    if token is not None:
        app.add_middleware(TokenGate, token=token)
    app.add_middleware(SecurityHeaders, csp=csp)  # added last = outermost
