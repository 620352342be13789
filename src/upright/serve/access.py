"""The access token of `upright serve --lan`: every page, file and API call needs it.

A phone opens the printed link `https://ADDR:PORT/?token=T`; the server answers with a
redirect to `/` that sets the cookie `upright_token` (HttpOnly, Secure, SameSite=Strict), so
the token leaves the address bar and the page's own requests carry it from then on. Scripts
may send `Authorization: Bearer T` or `?token=T` on any call instead. Anything else gets
403 {"error": ...}. Tokens are compared in constant time; the token is made fresh at every
start (`new_token`) and lives only in the server process and the phone's cookie.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qsl, urlencode

from starlette.requests import cookie_parser

from .asgi import header, send_body, send_json

COOKIE = "upright_token"
QUERY = "token"
TOKEN_BYTES = 16  # 128 random bits; 22 characters in the link


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def _same(given: str, token: bytes) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token)


DENIED = {
    "error": "this upright server needs its access token: open the link (or scan the QR code) "
             "that `upright serve --lan` (or `upright studio --lan`) printed; it ends in ?token=..."
}


class TokenGate:
    """Pure ASGI middleware: lets a request through only with the right token."""

    def __init__(self, app, token: str):
        if not token:
            raise ValueError("an empty access token would let everyone in")
        self.app = app
        self.token = token.encode("utf-8")

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):  # lifespan
            return await self.app(scope, receive, send)
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        from_query = [v for k, v in query if k == QUERY]
        auth = header(scope, b"authorization") or ""
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        cookie = cookie_parser(header(scope, b"cookie") or "").get(COOKIE)

        if from_query and _same(from_query[-1], self.token) and scope["type"] == "http" \
                and scope.get("method") == "GET" and scope.get("path") == "/":
            # The link from the terminal: keep the token in a cookie, drop it from the address.
            rest = urlencode([(k, v) for k, v in query if k != QUERY])
            return await send_body(send, 303, b"", [
                (b"location", ("/" + ("?" + rest if rest else "")).encode("latin-1")),
                (b"set-cookie", f"{COOKIE}={self.token.decode()}; Path=/; HttpOnly; Secure; "
                                "SameSite=Strict".encode("latin-1")),
                (b"cache-control", b"no-store"),
            ])
        candidates = [c for c in (from_query[-1] if from_query else None, bearer, cookie) if c is not None]
        if any(_same(c, self.token) for c in candidates):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        return await send_json(send, 403, DENIED)
