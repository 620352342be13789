"""The pure pieces every engine calls: sources -> upright crops (the one door) -> embeddings.

`decode_items` turns paths or bytes into uint8 network crops (or, for views off centre, the
resized picture) through `preprocess.load_canvas` (so through `imaging.open_image`,
orientation applied once) and never raises for one bad
file; `Embedder` is built once per worker (one ONNX Runtime session, its thread count set
explicitly) and embeds crops in batches. Engines (engines.py) only decide where these run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import backbones
from ..errors import UnreadableImage, one_line
from .decode import load_canvas, to_input
from ..views import cut_all, needs_picture

BATCH = 32  # views per ONNX Runtime call (Lite0 at 224 px; see views_per_call)


def views_per_call(backbone: str) -> int:
    """Views per ONNX Runtime call: BATCH at Lite0's 224 px, fewer for bigger inputs and composites,
    so the arena stays near the same size (the pair at 260 px: 11; 32 took 0.35 GB more for no speed-up)."""
    s = backbones.spec(backbone)
    return max(4, int(BATCH * (224 / s.size) ** 2 / len(s.components)))


@dataclass(frozen=True)
class Task:
    """What decides an embedding, small enough to send to every worker."""

    backbone: str = backbones.DEFAULT
    orient: bool = True  # False: the pixels as stored (the naive EXIF-ignoring view)
    cache_dir: str | None = None  # where the ONNX graph is kept (exported there when missing)
    device: str = "auto"  # auto, cpu, cuda (backbones.choose_providers)


def decode_one(source, backbone: str, orient: bool = True, whole: bool = False
               ) -> tuple[np.ndarray | None, str | None]:
    """A path or bytes -> (uint8 [S, S, 3] crop, None), or (None, one-line reason); with `whole`
    the resized picture instead of its centre crop (views off centre need it)."""
    try:
        return load_canvas(source, backbone, orient, whole)[0], None
    except UnreadableImage as exc:
        return None, exc.reason
    except Exception as exc:  # never let one file kill the run
        return None, f"cannot decode: {one_line(exc, 160)}"


def decode_items(items, backbone: str, orient: bool = True, whole: bool = False) -> list[tuple]:
    """[(key, source)] -> [(key, crop | None, reason | None)], in order."""
    return [(key, *decode_one(source, backbone, orient, whole)) for key, source in items]


def views(canvas: np.ndarray, variants, backbone: str) -> np.ndarray:
    """uint8 [len(variants), S, S, 3]: the views (upright.views) of one decoded canvas."""
    return cut_all(canvas, variants, backbones.spec(backbone).size)


class Embedder:
    """One worker's ONNX Runtime session: uint8 crops [N, S, S, 3] -> float32 [N, D].

    threads: intra-op threads of this worker (None: every core this process may use, right
    for one process alone; a pool of workers passes its share). `runner` reuses an existing
    session (e.g. fine-tuned weights)."""

    def __init__(self, task: Task = Task(), threads: int | None = None, runner: backbones.Runner | None = None):
        if runner is None:
            runner = backbones.get_runner(task.backbone, task.cache_dir, threads=threads, device=task.device)
        self.runner = runner
        self.backbone = runner.spec.name
        self.dim = runner.spec.dim

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        out = np.zeros((len(crops), self.dim), np.float32)
        step = views_per_call(self.backbone)
        for s in range(0, len(crops), step):
            out[s:s + step] = self.runner(to_input(crops[s:s + step], self.backbone))
        return out


def embed_batch(sources, embedder: Embedder, variants=("id",), orient: bool = True
                ) -> tuple[np.ndarray, dict[int, str]]:
    """Paths or bytes -> (float32 [N, V, D], {index: reason}); rows of unreadable sources are NaN.

    The whole pipeline for one shard of work, for callers that hold a batch in hand."""
    variants = tuple(variants)
    decoded = decode_items(enumerate(sources), embedder.backbone, orient, needs_picture(variants))
    out = np.full((len(decoded), len(variants), embedder.dim), np.nan, np.float32)
    errors = {i: why for i, crop, why in decoded if crop is None}
    good = [(i, crop) for i, crop, _ in decoded if crop is not None]
    if good:
        emb = embedder(np.concatenate([views(crop, variants, embedder.backbone) for _, crop in good]))
        for k, (i, _) in enumerate(good):
            out[i] = emb[k * len(variants):(k + 1) * len(variants)]
    return out, errors
