"""The pure ASGI layers around the studio's routes.

    Headers     nosniff, no referrer, serve's CSP (the page may be framed by itself: the Test
                tab shows serve's page, the Train tab the model's report); the report gets a
                CSP of its own (inline styles and data: images, no script at all)
    SameOrigin  a browser request that changes something must come from the studio's own page:
                POST/PATCH/DELETE with an Origin of another site, or Sec-Fetch-Site cross-site
                or same-site, is 403 (another web page open in the same browser cannot add
                photos, delete classes or start a training run through it); without a token,
                the Host must be a loopback name (400 otherwise: DNS rebinding)
    TestRoutes  POST /api/predict and GET /api/model go to serve's app of the chosen model
"""

from __future__ import annotations

import json

from starlette.requests import cookie_parser
from urllib.parse import parse_qsl

from ..errors import UprightError, one_line
from ..serve.app import CSP as SERVE_CSP
from . import models

CSP = SERVE_CSP.replace("frame-ancestors 'none'", "frame-ancestors 'self'")
REPORT_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
              "form-action 'none'; frame-ancestors 'self'")
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def send_json(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": data})


class Headers:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        csp = REPORT_CSP if path.startswith("/api/models/") and path.endswith("/report") else CSP

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"content-security-policy"]
                headers += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                            (b"content-security-policy", csp.encode())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class SameOrigin:
    def __init__(self, app, hosts: list[str] | None = None):
        self.app, self.hosts = app, set(hosts) if hosts else None

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.hosts is not None \
                and _host_name(_header(scope, b"host") or "").lower() not in self.hosts:
            return await send_json(send, 400, {"error": "invalid Host header (the studio answers on this "
                                                        "machine's own addresses only)"})
        if scope["type"] == "http" and scope.get("method") in UNSAFE:
            site = (_header(scope, b"sec-fetch-site") or "").lower()
            origin = _header(scope, b"origin")
            host = _header(scope, b"host") or ""
            foreign = site in ("cross-site", "same-site") or (
                origin not in (None, "null") and origin.split("://", 1)[-1] != host)
            if foreign:
                return await send_json(send, 403, {"error": "refused: a request from another web site "
                                                            "(only the studio's own page may change the project)"})
        return await self.app(scope, receive, send)


class TestRoutes:
    PATHS = ("/api/predict", "/api/model")

    def __init__(self, app, studio):
        self.app, self.studio = app, studio

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") not in self.PATHS:
            return await self.app(scope, receive, send)
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        cookies = cookie_parser(_header(scope, b"cookie") or "")
        name = models.chosen(self.studio.project, query, cookies)
        if name is None:
            return await send_json(send, 409, {"error": "no model yet: train one on the Train tab first"})
        try:
            inner = await self.studio.tests.app_for(name)
        except UprightError as exc:
            return await send_json(send, 422, {"error": f"model {name} cannot be loaded: {one_line(exc)}"})
        await inner(scope, receive, send)
