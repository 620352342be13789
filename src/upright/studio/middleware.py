"""The studio's own ASGI layers; the request limits are `upright serve`'s (serve.guard).

    studio_csp  serve's CSP, but the page may be framed by itself (the Test tab shows serve's
                page, the Train tab the model's report); the report gets a CSP of its own
                (inline styles and data: images, no script at all)
    TestRoutes  POST /api/predict and GET /api/model go to serve's app of the chosen model

serve.guard.guard_app adds the rest around the app: 431 / 400 Content-Length with
Transfer-Encoding / 403 cross-origin for anything but GET, HEAD, OPTIONS (another web page
open in the same browser cannot add photos, delete classes or start a training run), 400 a
Host that is not a loopback name without --lan (DNS rebinding), the token with --lan, and
the security headers.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import cookie_parser

from ..errors import UprightError, one_line
from ..serve.app import CSP as SERVE_CSP
from ..serve.asgi import header, send_json
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
