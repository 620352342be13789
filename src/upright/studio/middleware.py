"""The studio's own ASGI layers; the request limits are `upright serve`'s (serve.guard).

    studio_csp  serve's CSP, but the page may be framed by itself (the Test tab shows serve's
                page, the Train tab the model's report); the report gets a CSP of its own
                (inline styles and data: images, no script at all)
    TestRoutes  POST /api/predict and GET /api/model go to serve's app of the chosen model
    ProjectPaths  every JSON, HTML and event-stream answer names what lies under PROJECT
                relative to it, and PROJECT itself by its name: the train report, a job's
                result, the audit's JSON and any message (a --lan token holder never learns
                where the project lives on this machine)

serve.guard.guard_app adds the rest around the app: 431 / 400 Content-Length with
Transfer-Encoding / 403 cross-origin for anything but GET, HEAD, OPTIONS (another web page
open in the same browser cannot add photos, delete classes or start a training run), 400 a
Host that is not a loopback name without --lan (DNS rebinding), the token with --lan, and
the security headers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qsl

from markupsafe import escape
from starlette.requests import cookie_parser

from ..errors import UprightError, one_line
from ..serve.app import CSP as SERVE_CSP
from ..serve.asgi import header, send_body, send_json
from . import models

CSP = SERVE_CSP.replace("frame-ancestors 'none'", "frame-ancestors 'self'")
REPORT_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
              "form-action 'none'; frame-ancestors 'self'")


def studio_csp(path: str) -> str:
    """The page's policy, or the report's (no script at all) for a model's report."""
    return REPORT_CSP if path.startswith("/api/models/") and path.endswith("/report") else CSP


class TestRoutes:
    PATHS = ("/api/predict", "/api/model")

    def __init__(self, app, studio):
        self.app, self.studio = app, studio

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") not in self.PATHS:
            return await self.app(scope, receive, send)
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        cookies = cookie_parser(header(scope, b"cookie") or "")
        name = models.chosen(self.studio.project, query, cookies)
        if name is None:
            return await send_json(send, 409, {"error": "no model yet: train one on the Train tab first"})
        try:
            inner = await self.studio.tests.app_for(name)
        except UprightError as exc:
            return await send_json(send, 422, {"error": f"model {name} cannot be loaded: {one_line(exc)}"})
        await inner(scope, receive, send)


class ProjectPaths:
    """Pure ASGI middleware: PROJECT's absolute path leaves no answer (see the module docstring).
    It is matched as written in UTF-8, in JSON (either escaping) and in HTML: "ROOT/a/b.jpg"
    becomes "a/b.jpg", "ROOT" alone the project's name; images and downloads pass untouched."""

    TEXT = (b"application/json", b"text/html")
    STREAM = b"text/event-stream"

    def __init__(self, app, root: Path):
        self.app, self.name = app, Path(root).name.encode()
        text = str(root)
        forms = {text, json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1], str(escape(text))}
        alternatives = b"|".join(re.escape(f.encode()) for f in sorted(forms, key=len, reverse=True))
        # followed by "/": a path below PROJECT; by nothing a path could go on with: PROJECT itself
        self.pattern = re.compile(b"(?:" + alternatives + rb")(?:/|(?![\w.\-\x80-\xff]))")

    def _hide(self, body: bytes) -> bytes:
        return self.pattern.sub(lambda m: b"" if m.group().endswith(b"/") else self.name, body)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") == "HEAD":
            return await self.app(scope, receive, send)
        start: dict | None = None
        mode, parts = None, []

        async def send_hidden(message):
            nonlocal start, mode
            if message["type"] == "http.response.start":
                ctype = dict(message.get("headers", [])).get(b"content-type", b"")
                mode = "stream" if ctype.startswith(self.STREAM) else "whole" if ctype.startswith(self.TEXT) else None
                if mode != "whole":
                    return await send(message)
                start = message  # sent with the whole body, its length known
                return None
            if message["type"] != "http.response.body" or mode is None:
                return await send(message)
            if mode == "stream":
                return await send({**message, "body": self._hide(message.get("body", b""))})
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return None
            body = self._hide(b"".join(parts))
            headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
            await send_body(send, start["status"], body, headers)

        await self.app(scope, receive, send_hidden)
