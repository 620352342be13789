"""Embedding at any scale: pure batch pieces (batch.py), engines that run them (engines.py: a
local process pool; ray_engine.py: Ray Data), stores that keep the results (stores.py: the
SQLite cache, Parquet shards) and the `upright embed` verb (verb.py)."""

from .batch import Embedder, Task, embed_batch
from .engines import ENGINES, Job, LocalEngine, make_engine

__all__ = ["ENGINES", "Embedder", "Job", "LocalEngine", "Task", "embed_batch", "make_engine"]
