"""The connection-level limits of `upright serve` (docs/contracts.md, "HTTP (serve)"): a
subclass of uvicorn's h11 protocol, so it leans on uvicorn internals. pyproject.toml pins
the uvicorn and h11 releases it was written against, and importing this module checks that
uvicorn still has what the subclass overrides and calls (a one-line error otherwise).
"""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import UprightError
from .defaults import DEFAULT_MAX_BYTES, HEADER_TIMEOUT, LINGER_SECONDS, MAX_HEAD_BYTES

#: What LimitedH11Protocol overrides or calls on uvicorn's H11Protocol.
_USES = ("connection_made", "data_received", "on_response_complete", "send_400_response", "connection_lost",
         "_unset_keepalive_if_required")
_missing = [name for name in _USES if not hasattr(H11Protocol, name)]
if _missing:  # pragma: no cover - only with a uvicorn outside the pinned range
    import uvicorn

    raise UprightError(f"uvicorn {uvicorn.__version__} lacks {', '.join(_missing)} in its h11 protocol, which "
                       "upright serve extends: install the range pyproject.toml pins")


def _raw_json_response(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the connection-level limits (protocol_class sets them)."""

    header_timeout = HEADER_TIMEOUT
    linger_seconds = LINGER_SECONDS
    linger_bytes = DEFAULT_MAX_BYTES

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = None
        self._lingering = False
        self._linger_left = 0
        self._arm_head_timer()
        self._close_after_early_answers()

    def _close_after_early_answers(self) -> None:
        """An answer sent while the request body is still arriving (413, 408, the token's
        403...) says `Connection: close`, so the client opens a new connection instead of
        sending its next request into the lingering close (TLS has no half-close to say it)."""
        conn, send = self.conn, self.conn.send

        def send_event(event):
            if isinstance(event, h11.Response) and conn.their_state is h11.SEND_BODY:
                event = h11.Response(status_code=event.status_code, reason=event.reason,
                                     headers=[*event.headers, (b"connection", b"close")],
                                     http_version=event.http_version)
            return send(event)

        conn.send = send_event

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.trailing_data[0]:  # part of a request head arrived
            self.transport.write(_raw_json_response(
                408, "Request Timeout", f"request head not received within {self.header_timeout:g} s"))
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._linger_left -= len(data)
            if self._linger_left <= 0:
                self.transport.close()
            return
        if self.conn.their_state is h11.IDLE:
            self._arm_head_timer()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self._lingering = True
            self._linger_left = self.linger_bytes
            self._unset_keepalive_if_required()
            self.flow.resume_reading()
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(self.linger_seconds, self.transport.close)

    def send_400_response(self, msg: str) -> None:
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(_raw_json_response(400, "Bad Request", f"malformed HTTP request: {msg}"))
        self.transport.close()

    def connection_lost(self, exc) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)


def protocol_class(header_timeout: float = HEADER_TIMEOUT, linger_seconds: float = LINGER_SECONDS,
                   linger_bytes: int = DEFAULT_MAX_BYTES):
    """uvicorn's h11 protocol with the connection-level limits of a public upload endpoint.

    - The request head must be complete within `header_timeout` seconds of the connection
      opening or of its first byte (slowloris): a started head gets 408 JSON, a connection
      that never sent a byte is just closed; then the connection is closed.
    - An answer given before the request body was read in full (413, 408, 404 to a POST...)
      says `Connection: close` and is followed by a lingering close: the write side is shut, at most `linger_bytes`
      more are read and discarded for at most `linger_seconds`, then the connection is
      closed. (Plain uvicorn keeps reading such a body for as long as the client sends.)
    - Protocol errors (malformed request line, headers over MAX_HEAD_BYTES) answer JSON.
    """
    return type("LimitedH11Protocol", (LimitedH11Protocol,), {
        "header_timeout": header_timeout, "linger_seconds": linger_seconds, "linger_bytes": linger_bytes})


def server_config(app, *, log_level: str = "warning", header_timeout: float = HEADER_TIMEOUT,
                  linger_seconds: float = LINGER_SECONDS, linger_bytes: int | None = None, **kwargs):
    """The uvicorn.Config that serves `app` with the limits above (used by `run` and the tests)."""
    import uvicorn

    max_bytes = int(getattr(getattr(app, "state", None), "max_bytes", DEFAULT_MAX_BYTES))
    proto = protocol_class(header_timeout, linger_seconds, max_bytes if linger_bytes is None else linger_bytes)
    return uvicorn.Config(app, http=proto, log_level=log_level, access_log=False, lifespan="on",
                          h11_max_incomplete_event_size=MAX_HEAD_BYTES, **kwargs)
