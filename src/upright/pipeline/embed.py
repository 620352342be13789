"""The embed stage: backbone embeddings of files (cached by content hash) and of in-memory pictures.

`embed_paths` is the one-machine entry point:
  1. hash every file (sha256 of its bytes; or take the hashes the scan made) and look every
     (hash, view) up in the store (the SQLite cache): a hit never decodes the image, and
     neither does a content an earlier run could not decode (recorded with its reason);
  2. the misses, one job per distinct content, go to an engine (engines.py: the local process
     pool, or Ray Data with `engine="ray"`), which runs them as shards (shard.py);
  3. each finished batch of rows is written into the result and committed to the store (a
     killed run keeps its finished work).

Views (upright.views): the dihedral group on the centre crop (named in orientation.py: "rN" is
the upright picture rotated N degrees clockwise, "flip" its left-right mirror, "flip_rN" the
mirror rotated N degrees clockwise), or the same on a corner window ("flip-crop-top-left"; the
ten crops of --preset accurate). Each is cached under its name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import backbones, orientation, views
from ..cache import model_key
from ..console import progress as progress_bar
from ..contract import InputContract
from ..errors import UprightError
from ..files import file_sha256
from .engines import make_engine
from .shard import Embedder, Job, Pixels, Task, Vectors, embed_pixels, embed_shard
from .stores import SqliteStore


@dataclass
class Embeddings:
    """What embed_paths learned about each file, in input order."""

    vectors: np.ndarray  # float32 [N, V, D]; rows of unreadable files are NaN
    ok: np.ndarray  # bool [N]
    errors: dict[int, str] = field(default_factory=dict)  # index -> one-line reason
    variants: tuple[str, ...] = ("id",)
    hits: int = 0  # files served entirely from the cache
    decoded: int = 0  # files decoded in this call
    tags: dict[int, int | None] = field(default_factory=dict)  # index -> orientation tag, for the files decoded now


def check_variants(variants) -> tuple[str, ...]:
    variants = tuple(variants)
    bad = [v for v in variants if not views.is_view(v)]
    if bad or not variants:
        raise UprightError(f"unknown {'variant' if len(bad) == 1 else 'variants'} {bad or '()'} (choose from {', '.join(orientation.VARIANTS)}, "
                           f"or [variant-]crop-<corner>: {', '.join(views.CORNERS)})")
    return variants


def hash_files(paths) -> tuple[list[str | None], dict[int, str]]:
    """sha256 of every file, with a one-line reason for those that cannot be read."""
    shas: list[str | None] = []
    errors: dict[int, str] = {}
    for i, p in enumerate(paths):
        try:
            shas.append(file_sha256(p))
            continue
        except FileNotFoundError:
            errors[i] = "file not found"
        except IsADirectoryError:
            errors[i] = "is a folder, not an image file"
        except OSError as exc:
            errors[i] = f"cannot read file: {exc.strerror or exc}"
        shas.append(None)
    return shas, errors


class _Filling:
    """The result of one embed_paths call while it fills: rows from the store or from an engine
    are written straight into the [N, V, D] array (copies of one content get the same rows)."""

    def __init__(self, shas: list[str | None], variants: tuple[str, ...], dim: int, errors: dict[int, str]):
        self.shas, self.variants = shas, variants
        self.col = {v: j for j, v in enumerate(variants)}
        self.vectors = np.full((len(shas), len(variants), dim), np.nan, np.float32)
        self.ok = np.zeros(len(shas), bool)
        self.errors = errors
        self.tags: dict[int, int | None] = {}
        self.copies: dict[str, list[int]] = {}  # content -> the files still to embed that hold it
        self.left: dict[int, int] = {}  # a job's index -> its views still to come
        self.failures: list[tuple[str, str]] = []  # (content, reason) not yet recorded in the store
        self.hits = 0

    def look_up(self, store: SqliteStore) -> list[Job]:
        """Fill what the store holds, written straight into the array (no dict of every vector:
        memory stays N x V x D); a content an earlier run could not decode is not tried again
        (its recorded reason is the error) -> one job per distinct content still missing a view."""
        found = store.read_into(self.shas, self.variants, self.vectors)  # bool [N, V]
        complete = found.all(axis=1)
        failed = store.failures(s for s, c in zip(self.shas, complete) if s is not None and not c)
        jobs = []
        for i, sha in enumerate(self.shas):
            if sha is None:
                continue
            if complete[i]:
                self.ok[i] = True
                self.hits += 1
            elif sha in failed:
                self.errors[i] = failed[sha]
            elif sha in self.copies:
                self.copies[sha].append(i)
            else:
                self.copies[sha] = [i]
                missing = tuple(v for v in self.variants if not found[i, self.col[v]])
                jobs.append(Job(i, i, missing))  # source filled in by the caller
                self.left[i] = len(missing)
        return jobs

    def add(self, part: Vectors) -> tuple[list[tuple], int]:
        """Write one finished batch -> (rows for the store, files finished by it)."""
        finished = 0
        for i, why in part.failed.items():
            group = self.copies[self.shas[i]]
            self.errors.update({g: why for g in group})
            self.failures.append((self.shas[i], why))
            finished += len(group)
        rows = []
        for i, v, vec in zip(part.index.tolist(), part.view, part.vectors):
            sha = self.shas[i]
            group = self.copies[sha]
            self.vectors[group, self.col[v]] = vec
            rows.append((sha, v, vec, None))
            self.left[i] -= 1
            if self.left[i] == 0:
                self.ok[group] = True
                finished += len(group)
        for i, tag in part.tags.items():
            self.tags.update({g: tag for g in self.copies[self.shas[i]]})
        return rows, finished


def embed_paths(paths, *, backbone: str = backbones.DEFAULT, variants=("id",), orient: bool = True,
                cache_dir=None, progress: bool = True, workers: int | None = None,
                hashes: list[str] | None = None, runner: backbones.Runner | None = None,
                description: str = "embedding", engine="local", ray_address: str | None = None,
                device: str = "auto") -> Embeddings:
    """Embeddings [N, V, D] of image files, through the cache.

    orient=False embeds the pixels as stored (the naive EXIF-ignoring view); it is part of
    the cache key. `hashes` (sha256 per path) skips re-hashing when the caller has them.
    `runner` embeds with other weights (e.g. a fine-tuned backbone; local engine only).
    `engine`: "local" (a process pool here, `workers` decoders) or "ray" (Ray Data, a local
    instance for the call or the cluster at `ray_address`); both give the same vectors.
    """
    paths = [str(p) for p in paths]
    variants = check_variants(variants)
    if not paths:
        return Embeddings(np.full((0, len(variants), backbones.spec(backbone).dim), np.nan, np.float32),
                          np.zeros(0, bool), {}, variants)
    eng = make_engine(engine, ray_address=ray_address, workers=workers, runner=runner)
    shas, errors = hash_files(paths) if hashes is None else (list(hashes), {})
    fill = _Filling(shas, variants, backbones.spec(backbone).dim, errors)
    task = Task(backbone, orient, None if cache_dir is None else str(cache_dir), device)
    key = runner.key if runner is not None else backbones.weights_sha256(backbone)
    store = SqliteStore(cache_dir, model_key(backbone, key, task.contract.preprocess_version), orient)
    try:
        jobs = [Job(j.index, paths[j.index], j.variants) for j in fill.look_up(store)]
        with progress_bar(len(paths), description, enabled=progress) as advance:
            advance(len(paths) - sum(len(g) for g in fill.copies.values()))
            for part in eng.run(jobs, task):
                rows, finished = fill.add(part)
                store.put_many(rows)
                store.put_failures(fill.failures)  # not decoded again while the bytes are the same
                fill.failures.clear()
                advance(finished)
    finally:
        store.close()
    return Embeddings(fill.vectors, fill.ok, fill.errors, variants, hits=fill.hits,
                      decoded=int(fill.ok.sum()) - fill.hits, tags=fill.tags)


def _embedder(backbone: str, runner: backbones.Runner | None, cache_dir) -> Embedder:
    return Embedder(Task(backbone, cache_dir=None if cache_dir is None else str(cache_dir)), runner=runner)


def embed_images(images, *, backbone: str = backbones.DEFAULT, variants=("id",),
                 runner: backbones.Runner | None = None, cache_dir=None) -> np.ndarray:
    """Embeddings [N, V, D] of in-memory PIL images (taken as upright), no cache: one shard."""
    variants = check_variants(variants)
    emb = _embedder(backbone, runner, cache_dir)
    jobs = [Job(i, im, variants) for i, im in enumerate(images)]
    return embed_shard(jobs, emb, InputContract.for_backbone(emb.backbone)).dense(len(jobs), variants)


def embed_canvases(canvases, *, backbone: str = backbones.DEFAULT, variants=("id",),
                   runner: backbones.Runner | None = None, cache_dir=None) -> np.ndarray:
    """Embeddings [N, V, D] of canvases already decoded (uint8 centre crops, or for views off
    centre the resized pictures: decode.image_canvas), no cache."""
    variants = check_variants(variants)
    emb = _embedder(backbone, runner, cache_dir)
    size = backbones.spec(emb.backbone).size
    pixels = Pixels(np.repeat(np.arange(len(canvases), dtype=np.int64), len(variants)),
                    np.asarray(list(variants) * len(canvases), object),
                    np.concatenate([views.cut_all(c, variants, size) for c in canvases])
                    if len(canvases) else np.zeros((0, size, size, 3), np.uint8))
    return embed_pixels(pixels, emb).dense(len(canvases), variants)


__all__ = ["Embeddings", "check_variants", "embed_canvases", "embed_images", "embed_paths", "hash_files"]
