"""Engines: where shards of work (shard.py) run. One signature, swappable (like img2dataset's
distributors):

    engine.run(jobs, task) -> iterator of shard.Vectors

Each yielded `Vectors` is one finished batch (a vector per (job, view), and the jobs that
failed with their reason), so the caller can commit it to its store (a killed run keeps every
finished batch). Jobs are `shard.Job(index, source, variants)`: the views still missing for
one file. Rows come in any order, and the views of one job may come in different batches; the
caller keys them by index and view.

- `LocalEngine` (default): a process pool runs read_shard (one decode per file, at the size
  the network needs) while this process runs embed_pixels on batches. `LocalEngine.read` is
  the pool alone (fine-tuning reads its pixels through it).
- `RayEngine` (ray_engine.py): the same two halves as Ray Data tasks and actors, on one
  machine or a cluster.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import signal
from collections import deque
from typing import Iterable, Iterator

from .. import backbones
from ..contract import InputContract
from ..errors import UprightError
from . import shard
from .shard import CHUNK, Embedder, Job, Pixels, Task, Vectors, embed_pixels, read_shard

ENGINES = ("local", "ray")


def _worker_init():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    os.environ["OMP_NUM_THREADS"] = "1"


def _pool(workers: int):
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    return mp.get_context(method).Pool(workers, initializer=_worker_init)


def default_workers(n_todo: int) -> int:
    """Decode processes for n_todo files: none for a handful (the pool costs more than it saves)."""
    if n_todo < 2 * CHUNK:
        return 0
    return max(1, min(backbones.cpu_count(), 8, n_todo // CHUNK))


class LocalEngine:
    """Decode in a process pool, embed in this process (the single-machine pipeline)."""

    name = "local"

    def __init__(self, workers: int | None = None, runner: backbones.Runner | None = None):
        self.workers = workers
        self.runner = runner  # e.g. fine-tuned weights; None: the task's backbone

    def read(self, jobs: list[Job], c: InputContract) -> Iterator[Pixels]:
        """read_shard over CHUNK-sized shards, in order; with workers, from a pool at most a few
        shards ahead (bounded memory)."""
        workers = default_workers(len(jobs)) if self.workers is None else self.workers
        shards = [jobs[s:s + CHUNK] for s in range(0, len(jobs), CHUNK)]
        if workers <= 0:
            for part in shards:
                yield read_shard(part, c)
            return
        pool = _pool(workers)
        try:
            pending: deque = deque()
            for part in shards:
                pending.append(pool.apply_async(read_shard, (part, c)))
                if len(pending) >= 3 * workers:
                    yield pending.popleft().get()
            while pending:
                yield pending.popleft().get()
        finally:
            pool.terminate()
            pool.join()

    def run(self, jobs: Iterable[Job], task: Task) -> Iterator[Vectors]:
        jobs = list(jobs)
        if not jobs:
            return
        stream = self.read(jobs, task.contract)
        first = next(stream, None)  # the pool forks before ONNX Runtime starts its threads
        embedder = Embedder(task, runner=self.runner)
        waiting = None
        for part in itertools.chain([first], stream):
            waiting = part if waiting is None else Pixels.concat([waiting, part])
            while len(waiting) >= shard.BATCH or len(waiting.failed) >= shard.BATCH:
                batch, waiting = waiting.split(shard.BATCH)  # one file's views may straddle two batches
                yield embed_pixels(batch, embedder)
        if waiting is not None and (len(waiting) or waiting.failed):
            yield embed_pixels(waiting, embedder)


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


__all__ = ["ENGINES", "Job", "LocalEngine", "Task", "default_workers", "make_engine"]
