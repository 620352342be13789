"""One decode-memory budget for a whole server, so N concurrent uploads cannot multiply the
bound the door keeps for one file (issue 23).

Each upload is priced from its header alone (`imaging.estimate`: the cost model of cost.py,
no pixel buffer yet), then waits in the event loop, never in a decoding thread, until its
bytes fit in what the uploads being decoded hold; then it decodes. A file the door refuses
is answered at once, holding nothing. Small uploads pass big ones that wait (first fit), so
a normal photo is answered in seconds while a few expensive files take turns.

    budget = DecodeBudget(960 << 20)
    decoded = await decode_upload(data, size, budget=budget, pool=pool, decode=prepare)

Any FastAPI app that decodes uploads (serve, the studio) shares one the same way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from contextlib import asynccontextmanager, contextmanager
from typing import AsyncIterator, Callable, Iterator, TypeVar

from ..cost import DEFAULT_BUDGET
from ..errors import UnreadableImage, one_line
from ..imaging import estimate

T = TypeVar("T")
S = TypeVar("S")
#: After a decode that held at least this much, the freed heap goes back to the OS before the
#: next one starts: glibc keeps it in the decoding thread's arena, and the next decode runs in
#: another thread's arena, so two turns of the budget would otherwise cost twice its RSS.
TRIM_AFTER = 64 << 20


_malloc_trim: list = []


def release_memory() -> None:
    """Hand the heap freed after a burst of uploads back to the OS. glibc keeps it (per-thread
    arenas, a raised mmap threshold) and the server's RSS would stay at the burst's level;
    malloc_trim returns it. A no-op where the C library has no malloc_trim."""
    if not _malloc_trim:
        try:
            import ctypes

            _malloc_trim.append(ctypes.CDLL(None).malloc_trim)
        except (OSError, AttributeError):
            _malloc_trim.append(None)
    if _malloc_trim[0] is not None:
        _malloc_trim[0](0)


class Burst:
    """The requests an app is answering at once: when the last of a burst ends, its freed heap
    goes back to the OS (release_memory, in `pool`). `async with burst.request(): ...`"""

    def __init__(self, pool: concurrent.futures.Executor):
        self.pool = pool
        self.in_flight = 0

    @asynccontextmanager
    async def request(self) -> AsyncIterator[None]:
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:  # the burst is over: give its memory back
                try:
                    asyncio.get_running_loop().run_in_executor(self.pool, release_memory)
                except RuntimeError:  # shutting down: the pool takes no more work
                    pass


def turning_tag(orientation) -> int | None:
    """The orientation tag of a decode (imaging's orientation record) when it really turns the
    picture (2-8, and no problem made the door ignore it), else None: whether an upload has a
    stored view unlike its upright one (serve's stored_view, the studio's thumbnails)."""
    tag = orientation.tag
    return tag if tag is not None and 2 <= tag <= 8 and not orientation.problem else None


def decode_failure_reason(exc: BaseException) -> str:
    """Why an upload did not decode, in one line: the door's refusal, or any other failure of a
    hostile file (serve answers it, the studio refuses the upload with it)."""
    if isinstance(exc, UnreadableImage):
        return exc.reason
    if isinstance(exc, MemoryError):  # the decoder's limits should prevent it; the upload is still the cause
        return "image too large to decode in memory"
    return f"cannot decode the image ({type(exc).__name__}: {one_line(exc, 160)})"


class DecodeBudget:
    """Bytes of decode memory that the uploads decoding at once may hold together."""

    def __init__(self, total: int = DEFAULT_BUDGET):
        self.total = int(total)
        self.held = 0
        self.peak = 0  # the most held at once (for /healthz and the tests)
        self._changed: asyncio.Condition | None = None

    @asynccontextmanager
    async def hold(self, nbytes: int) -> AsyncIterator[int]:
        """Wait until `nbytes` fit, hold them for the block. A file priced over the whole
        budget (the door's own bound can be higher) waits until it can run alone."""
        need = max(0, min(int(nbytes), self.total))
        if self._changed is None:
            self._changed = asyncio.Condition()
        async with self._changed:
            await self._changed.wait_for(lambda: self.held + need <= self.total)
            self.held += need
            self.peak = max(self.peak, self.held)
        try:
            yield need
        finally:
            async with self._changed:
                self.held -= need
                self._changed.notify_all()

    @contextmanager
    def hold_in_thread(self, nbytes: int, loop: asyncio.AbstractEventLoop) -> Iterator[int]:
        """`hold` for a thread beside the event loop `loop` (the studio's live audit decodes
        in its own thread): it blocks that thread, never the loop, until the bytes fit."""
        held = self.hold(nbytes)
        need = asyncio.run_coroutine_threadsafe(held.__aenter__(), loop).result()
        try:
            yield need
        finally:
            asyncio.run_coroutine_threadsafe(held.__aexit__(None, None, None), loop).result()
            if need >= TRIM_AFTER:
                release_memory()


async def decode_upload(source: S, size: int | None, *, budget: DecodeBudget,
                        pool: concurrent.futures.Executor, decode: Callable[[S], T]) -> T:
    """Price `source` (an upload's bytes, or a stored file's path) at `size` in `pool`
    (UnreadableImage when the door refuses it from its header), wait for its bytes in
    `budget`, then run `decode(source)` in `pool`."""
    loop = asyncio.get_running_loop()
    cost = await loop.run_in_executor(pool, estimate, source, size)
    async with budget.hold(cost.total) as held:
        try:
            return await loop.run_in_executor(pool, decode, source)
        finally:
            if held >= TRIM_AFTER:
                await loop.run_in_executor(pool, release_memory)
