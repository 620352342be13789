"""Server-sent events: every open page hears what changed (photos, audit, jobs) at once.

Any thread may `publish`; each page's stream gets the message through the event loop. A
stream ends by itself after STREAM_SECONDS (the browser's EventSource reconnects in about a
second), so no stream outlives a server that is shutting down by more than that.
"""

from __future__ import annotations

import asyncio
import json
from typing import AsyncIterator

PING_SECONDS = 15.0
STREAM_SECONDS = 60.0
QUEUE_SIZE = 256  # per page; a page that stops reading loses the oldest messages, never blocks others


class Events:
    def __init__(self) -> None:
        self._queues: set[asyncio.Queue] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, kind: str, data: dict | None = None) -> None:
        """Send `kind` (with JSON `data`) to every page; safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        message = f"event: {kind}\ndata: {json.dumps(data or {})}\n\n"
        try:
            loop.call_soon_threadsafe(self._put, message)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def _put(self, message: str) -> None:
        for q in list(self._queues):
            if q.full():
                q.get_nowait()
            q.put_nowait(message)

    async def stream(self, hello: dict) -> AsyncIterator[str]:
        """One page's stream: a hello, then messages and pings, for at most STREAM_SECONDS."""
        q: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(q)
        loop = asyncio.get_running_loop()
        end = loop.time() + STREAM_SECONDS
        try:
            yield f"retry: 1000\nevent: hello\ndata: {json.dumps(hello)}\n\n"
            while (left := end - loop.time()) > 0:
                try:
                    yield await asyncio.wait_for(q.get(), min(PING_SECONDS, left))
                except asyncio.TimeoutError:
                    yield ": ping\n\n"
        finally:
            self._queues.discard(q)
