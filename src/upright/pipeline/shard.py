"""One shard of work, the embed stage's unit (img2dataset's per-shard function), in two halves:

    read_shard(jobs, contract)       sources -> decode (the one door) -> canvas -> views   where the files are
    embed_pixels(pixels, embedder)   views -> embeddings                                    where the session is
    embed_shard(jobs, embedder, c)   both, in one process

Both halves return arrays with one row per (item, view) (`Pixels`, `Vectors`) plus the items
that failed, each with a one-line reason, and the facts read while decoding (the orientation
tag), so nothing is read twice. `embed_batch` is the public form for another scheduler
([N, V, D] and {index: reason}).

Who calls what: the local engine runs read_shard in its decode pool and embed_pixels in its own
process; the Ray engine runs them as Ray Data tasks and actors (as columns: `to_columns`);
fine-tuning reads shards for their pixels (engines.LocalEngine.read); Model.predict (and so
serve) embeds shards of uploads and in-memory pictures with embed_shard. A job's source is a
path, bytes, a binary file object, or a PIL image taken as already upright.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
from PIL import Image

from .. import backbones
from ..contract import InputContract
from ..errors import UnreadableImage, one_line
from ..views import cut_all, needs_picture
from .decode import image_canvas, load_canvas, to_input

BATCH = 32  # views per ONNX Runtime call (Lite0 at 224 px; see views_per_call)
CHUNK = 8  # items per read_shard call in the engines
NO_TAG = -1  # the orientation tag column's "none" (to_columns)


def views_per_call(backbone: str) -> int:
    """Views per ONNX Runtime call: BATCH at Lite0's 224 px, fewer for bigger inputs and composites,
    so the arena stays near the same size (the pair at 260 px: 11; 32 took 0.35 GB more for no speed-up)."""
    s = backbones.spec(backbone)
    return max(4, int(BATCH * (224 / s.size) ** 2 / len(s.components)))


@dataclass(frozen=True)
class Job:
    """One item of a shard: its index (the caller's key), its source and the views wanted of it."""

    index: int
    source: Any  # a path, bytes, a binary file object, or a PIL image (taken as upright)
    variants: tuple[str, ...]


@dataclass(frozen=True)
class Task:
    """What decides an embedding, small enough to send to every worker."""

    backbone: str = backbones.DEFAULT
    orient: bool = True  # False: the pixels as stored (the naive EXIF-ignoring view)
    cache_dir: str | None = None  # where the ONNX graph is kept (exported there when missing)
    device: str = "auto"  # auto, cpu, cuda (backbones.choose_providers)

    @property
    def contract(self) -> InputContract:
        return InputContract.for_backbone(self.backbone, orientation="upright" if self.orient else "stored")


@dataclass
class Pixels:
    """read_shard's answer: the uint8 views of a shard, one row per (item, view)."""

    index: np.ndarray  # int64 [R]: the job index each row belongs to
    view: np.ndarray  # object [R]: the view's name (upright.views)
    pixels: np.ndarray  # uint8 [R, S, S, 3]
    failed: dict[int, str] = field(default_factory=dict)  # job index -> one-line reason (no rows)
    tags: dict[int, int | None] = field(default_factory=dict)  # job index -> orientation tag read while decoding

    @classmethod
    def concat(cls, parts: list["Pixels"]) -> "Pixels":
        return cls(np.concatenate([p.index for p in parts]), np.concatenate([p.view for p in parts]),
                   np.concatenate([p.pixels for p in parts]), {k: v for p in parts for k, v in p.failed.items()},
                   {k: v for p in parts for k, v in p.tags.items()})

    def __len__(self) -> int:
        return len(self.index)

    def split(self, n: int) -> tuple["Pixels", "Pixels"]:
        """(the first n rows with every failed item and tag, the remaining rows)."""
        return (Pixels(self.index[:n], self.view[:n], self.pixels[:n], self.failed, self.tags),
                Pixels(self.index[n:], self.view[n:], self.pixels[n:]))

    def to_columns(self) -> dict:
        """Ray Data's batch format: one row per view, and one row (zero pixels, `error` set) per failed item."""
        bad = sorted(self.failed)
        blank = np.zeros((len(bad), *self.pixels.shape[1:]), np.uint8)
        return {**_columns(self.index, self.view, self.failed, self.tags), "pixels": np.concatenate([self.pixels, blank])}

    @classmethod
    def from_columns(cls, batch: dict) -> "Pixels":
        rows, failed, tags = _rows(batch)
        return cls(batch["i"][rows].astype(np.int64), batch["view"][rows], batch["pixels"][rows], failed, tags)


@dataclass
class Vectors:
    """embed_pixels' answer (and every engine's): one embedding per (item, view)."""

    index: np.ndarray  # int64 [R]
    view: np.ndarray  # object [R]
    vectors: np.ndarray  # float32 [R, D]
    failed: dict[int, str] = field(default_factory=dict)
    tags: dict[int, int | None] = field(default_factory=dict)

    def to_columns(self) -> dict:
        bad = sorted(self.failed)
        blank = np.zeros((len(bad), self.vectors.shape[1]), np.float32)
        return {**_columns(self.index, self.view, self.failed, self.tags),
                "embedding": np.concatenate([self.vectors, blank])}

    @classmethod
    def from_columns(cls, batch: dict) -> "Vectors":
        rows, failed, tags = _rows(batch)
        return cls(batch["i"][rows].astype(np.int64), batch["view"][rows],
                   np.asarray(batch["embedding"][rows], np.float32), failed, tags)

    def dense(self, n: int, variants) -> np.ndarray:
        """float32 [n, V, D] in `variants` order; rows of failed items are NaN."""
        col = {v: j for j, v in enumerate(variants)}
        out = np.full((n, len(col), self.vectors.shape[1]), np.nan, np.float32)
        if len(self.index):
            out[self.index, [col[v] for v in self.view]] = self.vectors
        return out


def _columns(index, view, failed: dict, tags: dict) -> dict:
    bad = sorted(failed)
    tag = [NO_TAG if tags.get(int(i)) is None else tags[int(i)] for i in index]
    return {"i": np.concatenate([index, np.asarray(bad, np.int64)]),
            "view": np.concatenate([view, np.full(len(bad), "", object)]),
            "error": np.asarray([""] * len(index) + [failed[i] for i in bad], object),
            "tag": np.asarray(tag + [NO_TAG] * len(bad), np.int16)}


def _rows(batch: dict) -> tuple[np.ndarray, dict[int, str], dict[int, int | None]]:
    """(mask of the view rows, failed items, tags) of a columns batch."""
    errors = np.asarray([bool(e) for e in batch["error"]], bool)
    failed = {int(i): str(e) for i, e in zip(batch["i"][errors], batch["error"][errors])}
    tags = {int(i): None if int(t) == NO_TAG else int(t) for i, t in zip(batch["i"][~errors], batch["tag"][~errors])}
    return ~errors, failed, tags


def read_one(source, c: InputContract, picture: bool) -> tuple[np.ndarray | None, int | None, str | None]:
    """One source -> (canvas, orientation tag, None), or (None, None, one-line reason); never raises
    for a bad file. A PIL image is taken as already upright (no tag)."""
    if isinstance(source, Image.Image):
        return image_canvas(source.convert("RGB") if source.mode != "RGB" else source, c, picture), None, None
    try:
        canvas, dec = load_canvas(source, c, picture)
        return canvas, dec.orientation.tag, None
    except UnreadableImage as exc:
        return None, None, exc.reason
    except Exception as exc:  # never let one file kill the run
        return None, None, f"cannot decode: {one_line(exc, 160)}"


def read_shard(jobs: Iterable[Job], c: InputContract) -> Pixels:
    """The first half: every job decoded once through the one door, its views cut (upright.views)."""
    index, names, pixels = [], [], []
    failed: dict[int, str] = {}
    tags: dict[int, int | None] = {}
    for job in jobs:
        canvas, tag, why = read_one(job.source, c, needs_picture(job.variants))
        if canvas is None:
            failed[job.index] = why or "unreadable"
            continue
        tags[job.index] = tag
        pixels.append(cut_all(canvas, job.variants, c.size))
        index += [job.index] * len(job.variants)
        names += job.variants
    pix = np.concatenate(pixels) if pixels else np.zeros((0, c.size, c.size, 3), np.uint8)
    return Pixels(np.asarray(index, np.int64), np.asarray(names, object), pix, failed, tags)


class Embedder:
    """One worker's ONNX Runtime session: uint8 views [N, S, S, 3] -> float32 [N, D].

    threads: intra-op threads of this worker (None: every core this process may use, right
    for one process alone; a pool of workers passes its share). `runner` reuses an existing
    session (e.g. fine-tuned weights)."""

    def __init__(self, task: Task = Task(), threads: int | None = None, runner: backbones.Runner | None = None):
        if runner is None:
            runner = backbones.get_runner(task.backbone, task.cache_dir, threads=threads, device=task.device)
        self.runner = runner
        self.backbone = runner.spec.name
        self.dim = runner.spec.dim
        self.contract = InputContract.for_backbone(self.backbone)  # the scaling the network was trained with

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        out = np.zeros((len(pixels), self.dim), np.float32)
        step = views_per_call(self.backbone)
        for s in range(0, len(pixels), step):
            out[s:s + step] = self.runner(to_input(pixels[s:s + step], self.contract))
        return out


def embed_pixels(p: Pixels, embedder: Embedder) -> Vectors:
    """The second half: every view row embedded (failed items and tags carried through)."""
    return Vectors(p.index, p.view, embedder(p.pixels), p.failed, p.tags)


def embed_shard(jobs: Iterable[Job], embedder: Embedder, c: InputContract) -> Vectors:
    """The whole shard in this process: read_shard, then embed_pixels."""
    return embed_pixels(read_shard(jobs, c), embedder)


def embed_batch(sources, embedder: Embedder, variants=("id",), orient: bool = True
                ) -> tuple[np.ndarray, dict[int, str]]:
    """Paths or bytes -> (float32 [N, V, D], {index: reason}); rows of unreadable sources are NaN.

    The public form of embed_shard, for callers that hold a batch in hand (another scheduler)."""
    variants = tuple(variants)
    c = InputContract.for_backbone(embedder.backbone, orientation="upright" if orient else "stored")
    jobs = [Job(i, s, variants) for i, s in enumerate(sources)]
    out = embed_shard(jobs, embedder, c)
    return out.dense(len(jobs), variants), out.failed


__all__ = ["BATCH", "CHUNK", "Embedder", "Job", "Pixels", "Task", "Vectors", "embed_batch", "embed_pixels",
           "embed_shard", "read_one", "read_shard", "views_per_call"]
