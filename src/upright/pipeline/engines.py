"""Engines: where the pure pieces (batch.py) run. One signature, swappable (like img2dataset's
distributors):

    engine.run(jobs, task) -> iterator of lists of (index, {variant: vector} | None, reason | None)

Each yielded list is one finished batch, so the caller can commit it to its store (a killed
run keeps every finished batch). Jobs are `Job(index, source, variants)`: the views still
missing for one file. Results come in any order; the caller keys them by index.

- `LocalEngine` (default): a process pool decodes (one decode per file, at the size the
  network needs) while this process runs ONNX Runtime on batches.
- `RayEngine` (ray_engine.py): the same pieces as Ray Data tasks and actors, on one machine
  or a cluster.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import signal
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from .. import backbones
from ..errors import UprightError
from . import shard as B
from .shard import Embedder, Task
from ..views import needs_picture

CHUNK = 8  # files per decode task
ENGINES = ("local", "ray")

Result = tuple[int, "dict[str, np.ndarray] | None", "str | None"]


@dataclass(frozen=True)
class Job:
    index: int
    source: str  # a path (or bytes)
    variants: tuple[str, ...]


# -- the local process pool --------------------------------------------------------------
def _decode_chunk(job):
    """Pool worker: (items, backbone, orient, whole) -> [(index, crop | None, reason | None)]."""
    items, backbone, orient, whole = job
    return B.decode_items(items, backbone, orient, whole)


def _worker_init():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    os.environ["OMP_NUM_THREADS"] = "1"


def _pool(workers: int):
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    return mp.get_context(method).Pool(workers, initializer=_worker_init)


def decoded_stream(jobs, workers: int):
    """Yield decode results in order; with workers > 0 from a pool, at most a few chunks ahead."""
    if workers <= 0:
        for job in jobs:
            yield from _decode_chunk(job)
        return
    pool = _pool(workers)
    try:
        pending: deque = deque()
        window = 3 * workers
        for job in jobs:
            pending.append(pool.apply_async(_decode_chunk, (job,)))
            if len(pending) >= window:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()
    finally:
        pool.terminate()
        pool.join()


def default_workers(n_todo: int) -> int:
    if n_todo < 2 * CHUNK:
        return 0
    return max(1, min(backbones.cpu_count(), 8, n_todo // CHUNK))


class LocalEngine:
    """Decode in a process pool, embed in this process (today's single-machine pipeline)."""

    name = "local"

    def __init__(self, workers: int | None = None, runner: backbones.Runner | None = None):
        self.workers = workers
        self.runner = runner  # e.g. fine-tuned weights; None: the task's backbone

    def run(self, jobs: Iterable[Job], task: Task) -> Iterator[list[Result]]:
        jobs = list(jobs)
        if not jobs:
            return
        workers = default_workers(len(jobs)) if self.workers is None else self.workers
        wanted = {j.index: j.variants for j in jobs}
        chunks = [([(j.index, j.source) for j in part], task.backbone, task.orient,
                   any(needs_picture(j.variants) for j in part))
                  for part in (jobs[s:s + CHUNK] for s in range(0, len(jobs), CHUNK))]
        stream = decoded_stream(chunks, workers)
        first = next(stream, None)  # the pool forks before ONNX Runtime starts its threads
        embedder = Embedder(task, runner=self.runner)
        rows: list[tuple[int, np.ndarray]] = []  # (index, views uint8 [V, S, S, 3])
        done: list[Result] = []

        def flush() -> list[Result]:
            if rows:
                emb = embedder(np.concatenate([v for _, v in rows]))
                pos = 0
                for i, v in rows:
                    done.append((i, dict(zip(wanted[i], emb[pos:pos + len(v)])), None))
                    pos += len(v)
                rows.clear()
            out = list(done)
            done.clear()
            return out

        for res in itertools.chain([] if first is None else [first], stream):
            i, crop, why = res
            if crop is None:
                done.append((i, None, why))
            else:
                rows.append((i, B.views(crop, wanted[i], task.backbone)))
            if sum(len(v) for _, v in rows) >= B.BATCH or len(done) >= B.BATCH:
                yield flush()
        last = flush()
        if last:
            yield last


def make_engine(engine: "str | object | None" = "local", *, ray_address: str | None = None,
                workers: int | None = None, runner: backbones.Runner | None = None):
    """An engine by name ('local' or 'ray'), or the engine object itself."""
    if ray_address is not None and engine != "ray":
        raise UprightError("--ray-address goes with --engine ray")
    if engine is None or engine == "local":
        return LocalEngine(workers, runner)
    if engine == "ray":
        if runner is not None:
            raise UprightError("--engine ray embeds with the backbone's own weights; "
                               "a fine-tuned model's embeddings run on the local engine")
        from .ray_engine import RayEngine

        return RayEngine(ray_address)
    if isinstance(engine, str):
        raise UprightError(f"unknown --engine '{engine}' (choose from {', '.join(ENGINES)})")
    return engine
