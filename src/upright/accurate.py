"""`upright train --preset accurate`: Lite0 and Lite2 together, a linear head fitted on 10 crops
of every photo.

What it does differently from the fast preset (Lite0 alone, the centre crop and its mirror):
the composite backbone "efficientnet-lite0+lite2" (both networks on one 260-px input, pooled
features concatenated, 2560-d), and training views that are the classic 10 crops of the
picture resized to the backbone's short side (297 px): the centre and the four corners, each
also mirrored. The head (head.py: l2 and test views chosen on the val photos, then fitted on
train + val) is the fast preset's, so the model folder is an ordinary one with the composite
backbone, test views "id" (+ "flip"), and every verb uses it unchanged (the ONNX export is the
whole model, mirror averaging included).

Measured in bench/accuracy.py (5-fold CV on flowers-500, README "Accuracy: fast or accurate"), which also tried
fine-tuning the last block of each network on activations cached once per view (through the
same epoch loop as --fine-tune, bench/_last_blocks.py): it scored below these frozen features,
so it is not part of the preset.

The 10 views of each photo are embedded once and cached by content hash like every other
embedding (variant names VIEW_NAMES; "id" and "flip" are the same entries `embed_paths` uses),
so a re-train is seconds.
"""

from __future__ import annotations

import multiprocessing as mp

import numpy as np

from . import backbones
from .errors import UnreadableImage, one_line

BACKBONE = "efficientnet-lite0+lite2"
CROPS = ("centre", "top-left", "top-right", "bottom-left", "bottom-right")
#: the training views in cache order: the crops, then the same mirrored ("id" and "flip" are the
#: centre crop and its mirror, the standard variants)
VIEW_NAMES = ("id", "crop-top-left", "crop-top-right", "crop-bottom-left", "crop-bottom-right",
              "flip", "flip-crop-top-left", "flip-crop-top-right", "flip-crop-bottom-left", "flip-crop-bottom-right")
TEST_VIEWS = ("id", "flip")  # what the head may average at test time (chosen on val among id, id + flip)
BATCH = 10  # views per ONNX Runtime call: one photo's 10 (batches of 40 took 2.3 GB of arena for no speed-up)


def crop_views(img: np.ndarray, size: int, crops=CROPS, mirror: bool = True) -> np.ndarray:
    """uint8 [H, W, 3] (short side already the backbone's resize) -> [V, size, size, 3] crops
    (in `crops` order, then the same mirrored when `mirror`). The centre crop is exactly
    preprocess.centre_crop's."""
    h, w = img.shape[:2]
    where = {"centre": ((h - size) // 2, (w - size) // 2), "top-left": (0, 0), "top-right": (0, w - size),
             "bottom-left": (h - size, 0), "bottom-right": (h - size, w - size)}
    out = [img[t:t + size, x:x + size] for t, x in (where[c] for c in crops)]
    if mirror:
        out += [c[:, ::-1] for c in out]
    return np.ascontiguousarray(np.stack(out))


def _decode_views(job):
    """Worker: (index, path, orient) -> (index, uint8 [10, S, S, 3] | None, error | None)."""
    from .imaging import open_image

    i, path, orient = job
    s = backbones.spec(BACKBONE)
    try:
        img = np.asarray(open_image(path, size=s.resize, orient=orient).image.convert("RGB"))
        return i, crop_views(img, s.size), None
    except UnreadableImage as exc:
        return i, None, exc.reason
    except Exception as exc:  # never let one file kill the run
        return i, None, f"cannot decode: {one_line(exc, 160)}"


def embed_views(paths, *, backbone: str = BACKBONE, variants=VIEW_NAMES, orient: bool = True, cache_dir=None,
                progress: bool = True, hashes: list[str] | None = None, workers: int | None = None,
                description: str = "embedding 10 crops"):
    """features.embed_paths for the 10 training views: Embeddings [N, 10, 2560], through the cache.

    Same call shape as embed_paths (train.py picks one or the other); `backbone` and
    `variants` must be this preset's.
    """
    from .cache import EmbeddingCache, model_key
    from .console import progress as progress_bar
    from .features import Embeddings, get_runner
    from .files import file_sha256
    from .preprocess import PREPROCESS_VERSION, to_input

    if backbone != BACKBONE or tuple(variants) != VIEW_NAMES:
        raise ValueError(f"embed_views embeds {BACKBONE}'s {len(VIEW_NAMES)} views only")
    paths = [str(p) for p in paths]
    n, nv, dim = len(paths), len(VIEW_NAMES), backbones.spec(BACKBONE).dim
    shas = list(hashes) if hashes is not None else [file_sha256(p) for p in paths]
    vectors = np.full((n, nv, dim), np.nan, np.float32)
    ok = np.zeros(n, bool)
    errors: dict[int, str] = {}
    mkey = model_key(BACKBONE, backbones.weights_sha256(BACKBONE), PREPROCESS_VERSION)
    cache = EmbeddingCache(cache_dir)
    pool = None
    try:
        found = cache.get_many(shas, mkey, VIEW_NAMES, orient)
        todo = [i for i in range(n) if not all((shas[i], v) in found for v in VIEW_NAMES)]
        for i in set(range(n)) - set(todo):
            vectors[i] = np.stack([found[(shas[i], v)] for v in VIEW_NAMES])
            ok[i] = True
        workers = min(backbones.cpu_count(), 8) if workers is None else workers
        if todo and workers > 0 and len(todo) > 4:  # fork the decoders before ONNX Runtime starts threads
            pool = mp.get_context("fork").Pool(workers)
        with progress_bar(n, description, enabled=progress) as advance:
            advance(n - len(todo))
            if todo:
                run = get_runner(BACKBONE, cache_dir)
                jobs = [(i, paths[i], orient) for i in todo]
                stream = pool.imap(_decode_views, jobs, chunksize=2) if pool else map(_decode_views, jobs)
                pending: list[tuple[int, np.ndarray]] = []

                def flush():
                    if not pending:
                        return
                    emb = run(to_input(np.concatenate([v for _, v in pending]), BACKBONE)).reshape(-1, nv, dim)
                    rows = []
                    for (i, _), e in zip(pending, emb):
                        vectors[i], ok[i] = e, True
                        rows += [(shas[i], v, e[k]) for k, v in enumerate(VIEW_NAMES)]
                    cache.put_many(rows, mkey, orient)  # a killed run keeps its finished photos
                    advance(len(pending))
                    pending.clear()

                for i, views, err in stream:
                    if views is None:
                        errors[i] = err
                        advance(1)
                        continue
                    pending.append((i, views))
                    if len(pending) * nv >= BATCH:
                        flush()
                flush()
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        cache.close()
    hits = n - len(todo)
    return Embeddings(vectors, ok, errors, VIEW_NAMES, hits=hits, decoded=int(ok.sum()) - hits)
