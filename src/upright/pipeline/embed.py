"""Backbone embeddings of files (cached by content hash) and of in-memory images.

`embed_paths` is the one-machine entry point of the embedding package (upright.embedding):
  1. hash every file (sha256 of its bytes) and look every (hash, variant) up in the store
     (the SQLite cache): a hit never decodes the image;
  2. the misses, one job per distinct content, go to an engine: the local process pool
     (default) or Ray Data (`engine="ray"`);
  3. each finished batch is committed to the store (a killed run keeps its finished work).

Variants are views (upright.views): the dihedral group on the centre crop (named in
orientation.py: "rN" is the upright picture rotated N degrees clockwise, "flip" its left-right
mirror, "flip_rN" the mirror rotated N degrees clockwise), or the same on a corner window
("flip-crop-top-left"; the ten crops of --preset accurate). Each is cached under its name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .. import backbones, orientation, views
from ..cache import model_key, resolve_cache_dir
from ..console import progress as progress_bar
from .shard import Task, views_per_call
from .engines import Job, make_engine
from .stores import SqliteStore
from ..errors import UprightError
from ..files import file_sha256
from .decode import PREPROCESS_VERSION, image_canvas, to_input

VARIANTS = tuple(orientation.VARIANTS)  # "id", "flip", "r90", ... (see upright.orientation)
AUGMENT_VARIANTS = {"none": ("id",), "flip": ("id", "flip"), "rotate": ("id", "r90", "r180", "r270"),
                    "d4": VARIANTS}


@dataclass
class Embeddings:
    vectors: np.ndarray  # float32 [N, V, D]; rows of unreadable files are NaN
    ok: np.ndarray  # bool [N]
    errors: dict[int, str] = field(default_factory=dict)  # index -> one-line reason
    variants: tuple[str, ...] = ("id",)
    hits: int = 0  # files served entirely from the cache
    decoded: int = 0  # files decoded in this call


def check_variants(variants) -> tuple[str, ...]:
    variants = tuple(variants)
    bad = [v for v in variants if not views.is_view(v)]
    if bad or not variants:
        raise UprightError(f"unknown variant(s) {bad or '()'} (choose from {', '.join(VARIANTS)}, "
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
    dim = backbones.spec(backbone).dim
    n = len(paths)
    vectors = np.full((n, len(variants), dim), np.nan, np.float32)
    ok = np.zeros(n, bool)
    if n == 0:
        return Embeddings(vectors, ok, {}, variants)
    eng = make_engine(engine, ray_address=ray_address, workers=workers, runner=runner)
    if hashes is None:
        shas, errors = hash_files(paths)
    else:
        shas, errors = list(hashes), {}

    key = runner.key if runner is not None else backbones.weights_sha256(backbone)
    store = SqliteStore(cache_dir, model_key(backbone, key, PREPROCESS_VERSION), orient)
    try:
        found = store.get_many([s for s in shas if s], variants)
        copies: dict[str, list[int]] = {}  # content -> the files still to embed that hold it
        hits = 0
        for i, sha in enumerate(shas):
            if sha is None:
                continue
            if all((sha, v) in found for v in variants):
                vectors[i] = np.stack([found[(sha, v)] for v in variants])
                ok[i] = True
                hits += 1
            else:
                copies.setdefault(sha, []).append(i)
        jobs = [Job(group[0], paths[group[0]], tuple(v for v in variants if (sha, v) not in found))
                for sha, group in copies.items()]  # one decode per distinct content
        task = Task(backbone, orient, None if cache_dir is None else str(cache_dir), device)
        with progress_bar(n, description, enabled=progress) as advance:
            advance(n - sum(len(g) for g in copies.values()))
            for done in eng.run(jobs, task):
                rows = []
                for i, vecs, why in done:
                    sha = shas[i]
                    group = copies[sha]
                    if vecs is None:
                        errors.update({g: why for g in group})
                    else:
                        for v, e in vecs.items():
                            found[(sha, v)] = e
                            rows.append((sha, v, e, None))
                        vectors[group] = np.stack([found[(sha, v)] for v in variants])
                        ok[group] = True
                    advance(len(group))
                store.put_many(rows)
    finally:
        store.close()
    decoded = int(ok.sum()) - hits
    return Embeddings(vectors, ok, errors, variants, hits=hits, decoded=decoded)


def embed_crops(crops, *, backbone: str = backbones.DEFAULT, variants=("id",),
                runner: backbones.Runner | None = None, cache_dir=None) -> np.ndarray:
    """uint8 crops [N, S, S, 3] (or, for views off centre, resized pictures: a list of
    preprocess.image_canvas arrays) -> [N, V, D] (no cache)."""
    variants = check_variants(variants)
    run = runner or backbones.get_runner(backbone, cache_dir)
    n, nv = len(crops), len(variants)
    out = np.zeros((n, nv, run.spec.dim), np.float32)
    flat = [(i, j, v) for i in range(n) for j, v in enumerate(variants)]
    step = views_per_call(run.name)
    for s in range(0, len(flat), step):
        part = flat[s:s + step]
        emb = run(to_input(np.stack([views.cut(crops[i], v, run.spec.size) for i, _, v in part]), run.name))
        for (i, j, _), e in zip(part, emb):
            out[i, j] = e
    return out


def embed_images(images: list[Image.Image], *, backbone: str = backbones.DEFAULT, variants=("id",),
                 runner: backbones.Runner | None = None, cache_dir=None) -> np.ndarray:
    """Embeddings [N, V, D] of in-memory images (taken as upright), no cache."""
    if not images:
        return np.zeros((0, len(tuple(variants)), backbones.spec(backbone).dim), np.float32)
    whole = views.needs_picture(check_variants(variants))
    crops = [image_canvas(im, backbone, whole) for im in images]
    return embed_crops(crops, backbone=backbone, variants=variants, runner=runner, cache_dir=cache_dir)


__all__ = ["AUGMENT_VARIANTS", "Embeddings", "VARIANTS", "embed_crops", "embed_images", "embed_paths", "hash_files"]
