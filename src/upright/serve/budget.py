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
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable, TypeVar

from ..cost import DEFAULT_BUDGET
from ..imaging import estimate

T = TypeVar("T")


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


async def decode_upload(data: bytes, size: int | None, *, budget: DecodeBudget,
                        pool: concurrent.futures.Executor, decode: Callable[[bytes], T]) -> T:
    """Price `data` at `size` in `pool` (UnreadableImage when the door refuses it from its
    header), wait for its bytes in `budget`, then run `decode(data)` in `pool`."""
    loop = asyncio.get_running_loop()
    cost = await loop.run_in_executor(pool, estimate, data, size)
    async with budget.hold(cost.total):
        return await loop.run_in_executor(pool, decode, data)
