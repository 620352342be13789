"""Per-file work (header facts, content hashes) over a pool of threads, results in input order.

Threads, not processes: sha256 (hashlib) and Pillow's header parsing release the GIL for their
heavy parts, the results need no pickling, and nothing forks a process that may already run
ONNX Runtime threads (bench/audit.py measures threads vs processes vs one loop; see docs/audit.md).
The function must not raise for one bad item (describe and file hashing are written that way);
an exception would propagate, as it does in a plain loop.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Threads at most: header reads and hashing are I/O- and memory-bound beyond a few cores.
MAX_WORKERS = 8
#: Items per task.
CHUNK = 64
#: Below this many items a pool costs more than it saves.
MIN_ITEMS = 16


def default_workers() -> int:
    """Threads for per-file work: the cores this process may use, at most MAX_WORKERS."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, n))


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int | None = None,
                advance: Callable[[int], object] | None = None) -> list[R]:
    """[fn(x) for x in items] computed on `workers` threads (default: default_workers()).

    Order is the input order whatever finishes first; `advance(n)` is called after each finished
    chunk with the number done (console.progress's bar), from the calling thread.
    """
    items = list(items)
    workers = default_workers() if workers is None else max(1, int(workers))
    if workers == 1 or len(items) < MIN_ITEMS:
        out = []
        for x in items:
            out.append(fn(x))
            if advance:
                advance(1)
        return out
    # chunks: one task per item costs more than a header read (~0.1 ms) in executor overhead
    size = max(1, min(CHUNK, len(items) // (4 * workers)))
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    out: list[R] = []
    with ThreadPoolExecutor(workers, thread_name_prefix="upright-files") as pool:
        for part in pool.map(lambda chunk: [fn(x) for x in chunk], chunks):  # yields in input order
            out += part
            if advance:
                advance(len(part))
    return out
