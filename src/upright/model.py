"""A trained model, loaded: its input contract, the backbone (ONNX Runtime) and the head, and
prediction with them.

The folder (model.json + head.safetensors, written by pipeline/package.py) records labels,
backbone id and weights hash, the input contract (contract.py: sizes, scaling, test views,
orientation policy "upright" or "stored", the naive imitation), training figures and the
upright version. head.safetensors holds `weight` [C, D] and `bias` [C] applied to the raw
backbone embedding (softmax on top), plus `backbone.*` tensors when the backbone was
fine-tuned, plus `fitted_sha256` [N, 8] uint8: what the head was fitted on (provenance.py).
Nothing in a folder is trusted before modelfile.py has checked it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from . import backbones, modelfile
from .contract import InputContract
from .errors import UnreadableImage, UprightError
from .modelfile import FORMAT, FORMAT_VERSION, HEAD_FILE, META_FILE  # noqa: F401 - the folder's contract
from .numerics import softmax
from .results import Prediction

#: Labels per prediction unless asked otherwise (predict, serve, the Python API).
DEFAULT_TOP_K = 5
_ONE = (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)  # one image, not a list of them


class Model:
    """A trained classifier: backbone (ONNX Runtime) + linear softmax head.

    `contract` (contract.InputContract) is everything the model expects of a picture; a web
    server or the studio reads it there. `info` is model.json as checked (modelfile.ModelMeta),
    `meta` the same as a plain dict."""

    def __init__(self, folder: Path, info: modelfile.ModelMeta, weight: np.ndarray, bias: np.ndarray,
                 backbone_state: dict | None = None, cache_dir=None, fitted: np.ndarray | None = None):
        self.folder = folder
        self.info = info
        self.meta: dict = info.as_written()
        self.contract: InputContract = info.contract
        self.labels: list[str] = list(info.labels)
        self.backbone: str = info.backbone
        self.weight = weight
        self.bias = bias
        self.backbone_state = backbone_state
        self.fitted = fitted  # uint8 [N, 8] prefixes of the fitted photos' SHA-256, or None (older models)
        self.cache_dir = cache_dir

    @property
    def views(self) -> tuple[str, ...]:
        """The test views predictions average (the contract's)."""
        return self.contract.test_views

    @views.setter
    def views(self, value) -> None:
        self.contract = self.contract.replace(test_views=tuple(value))

    @property
    def orient(self) -> bool:
        return self.contract.orient

    # -- embeddings -------------------------------------------------------------------
    @property
    def runner(self) -> backbones.Runner:
        """The ONNX Runtime session of this model's backbone (fine-tuned or stock), memoised."""
        return self.runner_at(self.cache_dir)

    def runner_at(self, cache_dir) -> backbones.Runner:
        """The same session with its ONNX graph kept under `cache_dir` (None: the default)."""
        if self.backbone_state is None:
            return backbones.get_runner(self.backbone, cache_dir)
        import torch

        sd = {k: torch.from_numpy(v) for k, v in self.backbone_state.items()}
        return backbones.get_runner(self.backbone, cache_dir, sd, self.info.backbone_sha256)

    def proba_from_embeddings(self, emb: np.ndarray) -> np.ndarray:
        """[N, V, D] embeddings of the test views -> [N, C] probabilities (mean over views)."""
        p = softmax(emb.astype(np.float32) @ self.weight.T + self.bias)
        return p.mean(axis=1)

    def embed_paths(self, paths, variants=None, progress=False, workers=None, description="embedding", *,
                    hashes=None, cache_dir=None):
        """pipeline.embed.embed_paths with this model's weights, views and orientation, through the
        cache (`cache_dir`, else the model's)."""
        from .pipeline.embed import embed_paths

        cache_dir = self.cache_dir if cache_dir is None else cache_dir
        return embed_paths(paths, backbone=self.backbone, variants=variants or self.views, orient=self.orient,
                           cache_dir=cache_dir, progress=progress, workers=workers, hashes=hashes,
                           runner=self.runner_at(cache_dir), description=description)

    def embed_shard(self, sources) -> tuple[np.ndarray, dict[int, str], dict[int, int | None]]:
        """In-memory sources (bytes, file objects, upright PIL images) as one shard, no cache ->
        (embeddings [N, V, D] of the test views, {index: reason}, {index: orientation tag})."""
        from .pipeline.shard import Embedder, Job, Task, embed_shard

        embedder = Embedder(Task(self.backbone, self.orient), runner=self.runner)
        jobs = [Job(i, s, self.views) for i, s in enumerate(sources)]
        out = embed_shard(jobs, embedder, self.contract)
        return out.dense(len(jobs), self.views), out.failed, out.tags

    def _top(self, p: np.ndarray, top_k: int) -> list[tuple[str, float]]:
        k = max(1, min(int(top_k), len(self.labels)))
        order = np.argsort(-p, kind="stable")[:k]
        return [(self.labels[i], float(p[i])) for i in order]

    # -- public API -------------------------------------------------------------------
    def predict_images(self, images: list[Image.Image], top_k: int = DEFAULT_TOP_K) -> list[list[tuple[str, float]]]:
        """Top-k (label, score) per in-memory image, taken as already upright."""
        if not images:
            return []
        emb, _, _ = self.embed_shard(list(images))
        return [self._top(p, top_k) for p in self.proba_from_embeddings(emb)]

    def warm_up(self) -> None:
        """One prediction of a plain grey picture through `predict_images`, so the first real
        one does not pay for creating the ONNX Runtime session and its first run (seconds)."""
        side = int(self.contract.resize)
        self.predict_images([Image.new("RGB", (side, side), (128, 128, 128))], top_k=1)

    def predict(self, items, top_k: int = DEFAULT_TOP_K, *, errors: str = "raise", progress: bool = False
                ) -> list[Prediction]:
        """Predict paths, bytes, memoryviews, binary file objects or upright PIL images (one, or a list of them).

        Files are read through the one door (upright unless the model was trained on stored
        pixels) and their embeddings cached by content hash. errors="raise" raises
        UnreadableImage for the first unreadable item; errors="keep" returns a Prediction
        with `error` set instead.
        """
        if isinstance(items, _ONE) or hasattr(items, "read"):
            items = [items]  # one image (a file object or a memoryview is one image, not many)
        items = list(items)
        results: list[Prediction | None] = [None] * len(items)
        paths = [i for i, it in enumerate(items) if isinstance(it, (str, os.PathLike))]
        if paths:
            self._predict_paths(items, paths, results, top_k, errors, progress)
        others = [i for i in range(len(items)) if results[i] is None and i not in set(paths)]
        if others:
            self._predict_in_memory(items, others, results, top_k, errors)
        return [r for r in results if r is not None]

    def _predict_paths(self, items, where: list[int], results: list, top_k: int, errors: str, progress: bool) -> None:
        """Files, through the cache. The orientation tag comes from the decode when there was one;
        a file served from the cache has its header read for it."""
        paths = [os.fspath(items[i]) for i in where]
        emb = self.embed_paths(paths, progress=progress)
        probs = self.proba_from_embeddings(np.nan_to_num(emb.vectors))
        for j, i in enumerate(where):
            if not emb.ok[j]:
                if errors == "raise":
                    raise UnreadableImage(paths[j], emb.errors.get(j, "unreadable"))
                results[i] = Prediction(paths[j], None, [], emb.errors.get(j, "unreadable"))
                continue
            tag = emb.tags[j] if j in emb.tags else _header_tag(paths[j])
            results[i] = Prediction(paths[j], tag, self._top(probs[j], top_k))

    def _predict_in_memory(self, items, where: list[int], results: list, top_k: int, errors: str) -> None:
        """Bytes, file objects and PIL images: one shard, no cache."""
        sources = []
        for i in where:
            it = items[i]
            if not (isinstance(it, (Image.Image, bytes, bytearray, memoryview)) or hasattr(it, "read")):
                raise UprightError(f"cannot predict an object of type {type(it).__name__}")
            sources.append(bytes(it) if isinstance(it, (bytearray, memoryview)) else it)
        emb, failed, tags = self.embed_shard(sources)
        probs = self.proba_from_embeddings(np.nan_to_num(emb))
        for j, i in enumerate(where):
            name = getattr(items[i], "name", None) if hasattr(items[i], "read") else None
            if j in failed:
                if errors == "raise":
                    raise UnreadableImage(name, failed[j])
                results[i] = Prediction(None, None, [], failed[j])
                continue
            results[i] = Prediction(name, tags.get(j), self._top(probs[j], top_k))


def _header_tag(path: str) -> int | None:
    """The orientation tag of a file whose pixels were not decoded now (its embedding was cached)."""
    from .imaging import open_header, read_orientation

    try:
        with open_header(path) as im:
            return read_orientation(im).tag
    except UnreadableImage:
        return None


def load_model(model_dir, cache_dir=None) -> Model:
    """Load MODEL/ (model.json + head.safetensors) after the checks in modelfile.py (schema,
    sizes, hashes, shapes, finite weights). Raises UprightError with one line when any fails."""
    folder = Path(model_dir)
    f = modelfile.read_model_folder(folder)
    return Model(folder, f.meta, f.weight, f.bias, f.backbone_state, cache_dir, f.fitted)
