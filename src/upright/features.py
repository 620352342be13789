"""Backbone embeddings of files (cached by content hash) and of in-memory images.

Pipeline of `embed_paths`:
  1. hash every file (sha256 of its bytes) and look every (hash, variant) up in the cache:
     a hit never decodes the image;
  2. the misses are decoded in worker processes (one decode per file, through the one door
     at the size the network needs) while the main process runs ONNX Runtime on batches;
  3. each finished batch is committed to the cache (a killed run keeps its finished work).

Variants (the dihedral group, named in orientation.py): "rN" is the upright picture rotated N
degrees clockwise, "flip" its left-right mirror, "flip_rN" the mirror rotated N degrees clockwise.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from . import backbones, orientation
from .cache import EmbeddingCache, model_key, resolve_cache_dir
from .console import progress as progress_bar
from .errors import UnreadableImage, UprightError, one_line
from .files import file_sha256
from .orientation import variant_array
from .preprocess import PREPROCESS_VERSION, image_crop, load_crop, to_input

VARIANTS = tuple(orientation.VARIANTS)  # "id", "flip", "r90", ... (see upright.orientation)
AUGMENT_VARIANTS = {"none": ("id",), "flip": ("id", "flip"), "rotate": ("id", "r90", "r180", "r270"),
                    "d4": VARIANTS}
BATCH = 32
CHUNK = 8  # files per worker task


@dataclass
class Embeddings:
    vectors: np.ndarray  # float32 [N, V, D]; rows of unreadable files are NaN
    ok: np.ndarray  # bool [N]
    errors: dict[int, str] = field(default_factory=dict)  # index -> one-line reason
    variants: tuple[str, ...] = ("id",)
    hits: int = 0  # files served entirely from the cache
    decoded: int = 0  # files decoded in this call


_runners: dict[tuple, backbones.Runner] = {}
_runners_lock = threading.Lock()


def get_runner(backbone: str = backbones.DEFAULT, cache_dir=None, state_dict: dict | None = None,
               key: str | None = None) -> backbones.Runner:
    """A memoised ONNX Runtime runner for these weights (one session per process)."""
    if key is None:
        key = backbones.weights_sha256(backbone) if state_dict is None else backbones.state_dict_sha256(state_dict)
    k = (backbone, key, str(resolve_cache_dir(cache_dir)))
    with _runners_lock:
        r = _runners.get(k)
        if r is None:
            r = _runners[k] = backbones.Runner(backbone, cache_dir, state_dict, key)
        return r


def _check_variants(variants) -> tuple[str, ...]:
    variants = tuple(variants)
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        raise UprightError(f"unknown variant(s) {bad or '()'} (choose from {', '.join(VARIANTS)})")
    return variants


def _decode_chunk(job):
    """Worker: decode files to uint8 crops. Returns [(index, crop | None, error | None)]."""
    items, backbone, orient = job
    out = []
    for idx, path in items:
        try:
            crop, _ = load_crop(path, backbone, orient)
            out.append((idx, crop, None))
        except UnreadableImage as exc:
            out.append((idx, None, exc.reason))
        except Exception as exc:  # never let one file kill the run
            out.append((idx, None, f"cannot decode: {one_line(exc, 160)}"))
    return out


def _worker_init():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    os.environ["OMP_NUM_THREADS"] = "1"


def _pool(workers: int):
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    return mp.get_context(method).Pool(workers, initializer=_worker_init)


def _decoded_stream(jobs, workers: int):
    """Yield decode results in order; with workers > 0 from a pool, at most a few chunks ahead."""
    if workers <= 0:
        for job in jobs:
            yield from _decode_chunk(job)
        return
    pool = _pool(workers)
    try:
        pending: deque = deque()
        it = iter(jobs)
        window = 3 * workers
        for job in it:
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


def embed_paths(paths, *, backbone: str = backbones.DEFAULT, variants=("id",), orient: bool = True,
                cache_dir=None, progress: bool = True, workers: int | None = None,
                hashes: list[str] | None = None, runner: backbones.Runner | None = None,
                description: str = "embedding") -> Embeddings:
    """Embeddings [N, V, D] of image files, through the cache.

    orient=False embeds the pixels as stored (the naive EXIF-ignoring view); it is part of
    the cache key. `hashes` (sha256 per path) skips re-hashing when the caller has them.
    `runner` embeds with other weights (e.g. a fine-tuned backbone).
    """
    paths = [str(p) for p in paths]
    variants = _check_variants(variants)
    backbones.spec(backbone)
    n, nv = len(paths), len(variants)
    dim = backbones.spec(backbone).dim
    vectors = np.full((n, nv, dim), np.nan, np.float32)
    ok = np.zeros(n, bool)
    errors: dict[int, str] = {}
    if n == 0:
        return Embeddings(vectors, ok, errors, variants)

    shas: list[str | None] = list(hashes) if hashes is not None else []
    if hashes is None:
        for i, p in enumerate(paths):
            try:
                shas.append(file_sha256(p))
            except FileNotFoundError:
                shas.append(None)
                errors[i] = "file not found"
            except IsADirectoryError:
                shas.append(None)
                errors[i] = "is a folder, not an image file"
            except OSError as exc:
                shas.append(None)
                errors[i] = f"cannot read file: {exc.strerror or exc}"

    key = runner.key if runner is not None else backbones.weights_sha256(backbone)
    mkey = model_key(backbone, key, PREPROCESS_VERSION)
    cache = EmbeddingCache(cache_dir)
    try:
        found = cache.get_many([s for s in shas if s], mkey, variants, orient)
        todo: list[int] = []
        hits = 0
        for i, sha in enumerate(shas):
            if sha is None:
                continue
            if all((sha, v) in found for v in variants):
                vectors[i] = np.stack([found[(sha, v)] for v in variants])
                ok[i] = True
                hits += 1
            else:
                todo.append(i)
        with progress_bar(n, description, enabled=progress) as advance:
            advance(n - len(todo))
            if todo:
                if workers is None:
                    workers = default_workers(len(todo))
                jobs = [([(i, paths[i]) for i in todo[j:j + CHUNK]], backbone, orient)
                        for j in range(0, len(todo), CHUNK)]
                stream = _decoded_stream(jobs, workers)  # forks before ORT starts its threads
                first = next(stream, None)
                run = runner or get_runner(backbone, cache_dir)
                # (file index, missing variants, uint8 [len(missing), S, S, 3])
                batch_rows: list[tuple[int, list[str], np.ndarray]] = []

                def finish(i):
                    vectors[i] = np.stack([found[(shas[i], v)] for v in variants])
                    ok[i] = True

                def flush():
                    if not batch_rows:
                        return
                    emb = run(to_input(np.concatenate([c for _, _, c in batch_rows]), backbone))
                    rows, pos = [], 0
                    for i, miss, c in batch_rows:
                        for v, e in zip(miss, emb[pos:pos + len(c)]):
                            found[(shas[i], v)] = e
                            rows.append((shas[i], v, e))
                        pos += len(c)
                        finish(i)
                    cache.put_many(rows, mkey, orient)
                    advance(len(batch_rows))
                    batch_rows.clear()

                def consume(res):
                    i, crop, err = res
                    if crop is None:
                        errors[i] = err
                        advance(1)
                        return
                    if any(shas[j] == shas[i] for j, _, _ in batch_rows):
                        flush()  # an identical file is pending in this batch: let it land first
                    miss = [v for v in variants if (shas[i], v) not in found]
                    if not miss:
                        finish(i)
                        advance(1)
                        return
                    batch_rows.append((i, miss, np.stack([variant_array(crop, v) for v in miss])))
                    if sum(len(c) for _, _, c in batch_rows) >= BATCH:
                        flush()

                if first is not None:
                    consume(first)
                for res in stream:
                    consume(res)
                flush()
    finally:
        cache.close()
    decoded = len([i for i in range(n) if ok[i]]) - hits
    return Embeddings(vectors, ok, errors, variants, hits=hits, decoded=decoded)


def embed_crops(crops: np.ndarray, *, backbone: str = backbones.DEFAULT, variants=("id",),
                runner: backbones.Runner | None = None, cache_dir=None) -> np.ndarray:
    """uint8 crops [N, S, S, 3] -> [N, V, D] (no cache)."""
    variants = _check_variants(variants)
    run = runner or get_runner(backbone, cache_dir)
    n, nv = len(crops), len(variants)
    out = np.zeros((n, nv, run.spec.dim), np.float32)
    flat = [(i, j, v) for i in range(n) for j, v in enumerate(variants)]
    for s in range(0, len(flat), BATCH):
        part = flat[s:s + BATCH]
        emb = run(to_input(np.stack([variant_array(crops[i], v) for i, _, v in part]), run.name))
        for (i, j, _), e in zip(part, emb):
            out[i, j] = e
    return out


def embed_images(images: list[Image.Image], *, backbone: str = backbones.DEFAULT, variants=("id",),
                 runner: backbones.Runner | None = None, cache_dir=None) -> np.ndarray:
    """Embeddings [N, V, D] of in-memory images (taken as upright), no cache."""
    if not images:
        return np.zeros((0, len(tuple(variants)), backbones.spec(backbone).dim), np.float32)
    crops = np.stack([image_crop(im, backbone) for im in images])
    return embed_crops(crops, backbone=backbone, variants=variants, runner=runner, cache_dir=cache_dir)


__all__ = ["AUGMENT_VARIANTS", "Embeddings", "VARIANTS", "embed_crops", "embed_images", "embed_paths",
           "get_runner"]
