"""`upright embed` (verb.py) and the public pieces of the embed stage for another scheduler:
one shard of work (`embed_batch`, `Embedder`, `Task`) and the engines that run shards
(`LocalEngine`, `make_engine`). They live in upright.pipeline (shard.py, engines.py)."""

from ..pipeline.engines import ENGINES, Job, LocalEngine, make_engine
from ..pipeline.shard import Embedder, Task, embed_batch

__all__ = ["ENGINES", "Embedder", "Job", "LocalEngine", "Task", "embed_batch", "make_engine"]
