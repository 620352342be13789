"""The Ray Data engine: the same two halves of a shard (shard.py) as Ray tasks and actors.

    paths -> map_batches(read_shard: decode through the one door, tasks of DECODE_CPUS each)
          -> map_batches(embed_pixels in an actor pool: one ONNX Runtime session per actor,
                         EMBED_THREADS intra-op threads, EMBED_THREADS CPUs reserved)
          -> streamed back to the caller as shard.Vectors, which it commits to its store.

The dataset holds paths, not bytes: each decode task reads its own files (shared storage on a
cluster), so the object store carries only crops and vectors. Decode tasks take a fraction of
a CPU so that they are never starved by the actors holding whole ones. Pixels are never read
with Ray's own `read_images`: it ignores the EXIF orientation, the very thing upright exists
to get right.

Without an address a local Ray instance is started for the run (every core, no dashboard, a
small object store, quiet logs) and shut down after it; with one, the run joins that cluster
(upright and the backbone wheels installed on its nodes) and leaves it running.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from typing import Iterable, Iterator

from .. import backbones
from ..contract import InputContract
from ..errors import UprightError, one_line
from .shard import BATCH, CHUNK, Embedder, Job, Pixels, Task, Vectors, embed_pixels, read_shard

DECODE_CPUS = 0.5
EMBED_THREADS = 1
BLOCK_ROWS = 64  # files per input block (the unit a decode task is scheduled on)
OBJECT_STORE_BYTES = 256 * 1024 * 1024
CONNECT_TIMEOUT_S = 10.0
LOOPBACK = "127.0.0.1"  # a local instance names itself by loopback (no outside address looked up)


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise UprightError("--engine ray needs Ray Data: pip install 'upright[ray]'") from None
    return ray


def _quiet(ray) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """A HOST:PORT (or ray://HOST:PORT) address must answer within `timeout`: Ray itself keeps
    retrying a dead address for minutes. Other forms ("auto") are left to Ray."""
    import socket

    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UprightError(f"Ray did not start at {address}: nothing answers there "
                           f"({exc.strerror or type(exc).__name__})") from None


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None):
    """Ray for one run: joins `address`, reuses a Ray already started in this process, or starts
    a local instance and shuts it down after. Failing to start is a one-line UprightError."""
    ray = _import_ray()
    if ray.is_initialized():
        _quiet(ray)
        yield ray
        return
    if address:
        check_reachable(address)
    try:
        if address:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus or backbones.cpu_count(), include_dashboard=False, _node_ip_address=LOOPBACK,
                     object_store_memory=OBJECT_STORE_BYTES, logging_level=logging.ERROR, log_to_driver=False)
    except Exception as exc:  # noqa: BLE001 (any failure to start is the user's one line)
        where = f"at {address}" if address else "locally"
        raise UprightError(f"Ray did not start {where}: {one_line(exc, 200)}") from None
    try:
        _quiet(ray)
        yield ray
    finally:
        ray.shutdown()


def read_columns(batch: dict, contract: InputContract) -> dict:
    """Ray task: rows (i, path, variants "id,flip") -> read_shard's rows as columns (shard.Pixels)."""
    jobs = [Job(int(i), str(path), tuple(str(wanted).split(",")))
            for i, path, wanted in zip(batch["i"], batch["path"], batch["variants"])]
    return read_shard(jobs, contract).to_columns()


class EmbedActor:
    """Ray actor: one Embedder (one ONNX Runtime session) for its whole life, running embed_pixels."""

    def __init__(self, task: Task, threads: int):
        self.embedder = Embedder(task, threads=threads)

    def __call__(self, batch: dict) -> dict:
        return embed_pixels(Pixels.from_columns(batch), self.embedder).to_columns()


class RayEngine:
    """Embeds on Ray Data (a local instance for the run, or the cluster at `address`)."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        self.address = address
        self.num_cpus = num_cpus

    def run(self, jobs: Iterable[Job], task: Task) -> Iterator[Vectors]:
        jobs = list(jobs)
        if not jobs:
            return
        with ray_session(self.address, self.num_cpus) as ray:
            resources = ray.cluster_resources()
            cpus, gpus = int(resources.get("CPU", 1)), int(resources.get("GPU", 0))
            on_gpu = gpus > 0 and task.device != "cpu"
            actors = gpus if on_gpu else max(1, cpus // (2 * EMBED_THREADS))
            items = [{"i": j.index, "path": str(j.source), "variants": ",".join(j.variants)} for j in jobs]
            ds = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / BLOCK_ROWS)))
            ds = ds.map_batches(read_columns, fn_kwargs={"contract": task.contract}, batch_size=CHUNK,
                                num_cpus=DECODE_CPUS)
            ds = ds.map_batches(EmbedActor, fn_constructor_kwargs={"task": task, "threads": EMBED_THREADS},
                                batch_size=BATCH, num_cpus=EMBED_THREADS, num_gpus=1 if on_gpu else 0,
                                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors))
            for b in ds.iter_batches(batch_size=BATCH, batch_format="numpy"):
                yield Vectors.from_columns(b)
