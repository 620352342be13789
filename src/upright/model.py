"""The model folder (model.json + head.safetensors) and prediction with it.

model.json records labels, backbone id and weights hash, preprocessing, input size,
orientation policy ("upright": orientation applied, the default; "stored": pixels as stored,
the naive imitation), the test-time views, training figures and the upright version.
head.safetensors holds `weight` [C, D] and `bias` [C] applied to the raw backbone embedding
(softmax on top), plus `backbone.*` tensors when the backbone was fine-tuned, plus
`fitted_sha256` [N, 8] uint8: what the head was fitted on (provenance.py). No pickle.
Nothing in a folder is trusted before modelfile.py has checked it (schema, sizes, hashes,
shapes, finite weights); save_model records the hashes those checks verify.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from . import __version__, backbones, modelfile, provenance
from .atomic import atomic_path, atomic_write_text, clean_leftovers
from .errors import UnreadableImage, UprightError
from .modelfile import FORMAT, FORMAT_VERSION, HEAD_FILE, META_FILE  # noqa: F401 - the folder's contract
from .numerics import softmax

#: Labels per prediction unless asked otherwise (predict, serve, the Python API).
DEFAULT_TOP_K = 5


@dataclass
class Prediction:
    path: str | None
    orientation: int | None
    predictions: list[tuple[str, float]]
    error: str | None = None  # set (and predictions empty) when the image could not be read

    def to_dict(self) -> dict:
        d = {"path": self.path, "orientation": self.orientation,
             "predictions": [{"label": lab, "score": float(s)} for lab, s in self.predictions]}
        if self.error is not None:
            d["error"] = self.error
        return d


def save_model(out: str | os.PathLike, meta: dict, weight: np.ndarray, bias: np.ndarray,
               backbone_state: dict | None = None, fitted: np.ndarray | None = None) -> Path:
    """Write MODEL/head.safetensors then MODEL/model.json, each atomically."""
    from safetensors.numpy import save_file

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UprightError(f"{out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UprightError(f"cannot create the model folder {out}: {exc.strerror or exc}") from exc
    clean_leftovers(out)  # temp files of a save that was killed
    tensors = {"weight": np.ascontiguousarray(weight, np.float32), "bias": np.ascontiguousarray(bias, np.float32)}
    if backbone_state:
        for k, v in backbone_state.items():
            tensors[f"backbone.{k}"] = modelfile.c_array(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
    version = modelfile.format_version_for(meta.get("test_views", ["id"]))
    meta = {**meta, "format": FORMAT, "format_version": version, "upright_version": __version__}
    if backbone_state:  # the hash of exactly what is written, checked again on every load
        meta["backbone_sha256"] = modelfile.tensors_sha256(
            {k[len("backbone."):]: v for k, v in tensors.items() if k.startswith("backbone.")})
    if fitted is not None:
        tensors[provenance.TENSOR] = np.ascontiguousarray(provenance.check(fitted))
    with atomic_path(out / HEAD_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "labels": json.dumps(meta["labels"])})
        meta["head_sha256"] = hashlib.sha256(tmp.read_bytes()).hexdigest()
        modelfile.validate_for_save(meta)
    meta = {"format": FORMAT, "format_version": version, "upright_version": __version__, **meta}
    atomic_write_text(out / META_FILE, json.dumps(meta, indent=2) + "\n")
    return out


class Model:
    """A trained classifier: backbone (ONNX Runtime) + linear softmax head."""

    def __init__(self, folder: Path, meta: dict, weight: np.ndarray, bias: np.ndarray,
                 backbone_state: dict | None = None, cache_dir=None, fitted: np.ndarray | None = None):
        self.folder = folder
        self.meta = meta
        self.labels: list[str] = list(meta["labels"])
        self.backbone: str = meta["backbone"]
        self.weight = weight
        self.bias = bias
        self.backbone_state = backbone_state
        self.fitted = fitted  # uint8 [N, 8] prefixes of the fitted photos' SHA-256, or None (older models)
        self.cache_dir = cache_dir
        self.orient: bool = meta.get("orientation_policy", "upright") != "stored"
        self.views: tuple[str, ...] = tuple(meta.get("test_views", ["id"]))
        self._runner = None

    # -- embeddings -------------------------------------------------------------------
    @property
    def runner(self) -> backbones.Runner:
        if self._runner is None:
            if self.backbone_state is not None:
                import torch

                sd = {k: torch.from_numpy(v) for k, v in self.backbone_state.items()}
                self._runner = backbones.get_runner(self.backbone, self.cache_dir, sd, self.meta.get("backbone_sha256"))
            else:
                self._runner = backbones.get_runner(self.backbone, self.cache_dir)
        return self._runner

    def proba_from_embeddings(self, emb: np.ndarray) -> np.ndarray:
        """[N, V, D] embeddings of the test views -> [N, C] probabilities (mean over views)."""
        p = softmax(emb.astype(np.float32) @ self.weight.T + self.bias)
        return p.mean(axis=1)

    def embed_paths(self, paths, variants=None, progress=False, workers=None, description="embedding"):
        from .pipeline.embed import embed_paths

        return embed_paths(paths, backbone=self.backbone, variants=variants or self.views, orient=self.orient,
                           cache_dir=self.cache_dir, progress=progress, workers=workers, runner=self.runner,
                           description=description)

    def _top(self, p: np.ndarray, top_k: int) -> list[tuple[str, float]]:
        k = max(1, min(int(top_k), len(self.labels)))
        order = np.argsort(-p, kind="stable")[:k]
        return [(self.labels[i], float(p[i])) for i in order]

    # -- public API -------------------------------------------------------------------
    def predict_images(self, images: list[Image.Image], top_k: int = DEFAULT_TOP_K) -> list[list[tuple[str, float]]]:
        """Top-k (label, score) per in-memory image, taken as already upright."""
        from .pipeline.embed import embed_images

        emb = embed_images(list(images), backbone=self.backbone, variants=self.views, runner=self.runner)
        return [self._top(p, top_k) for p in self.proba_from_embeddings(emb)] if len(emb) else []

    def predict(self, items, top_k: int = DEFAULT_TOP_K, *, errors: str = "raise", progress: bool = False
                ) -> list[Prediction]:
        """Predict paths, bytes, memoryviews, binary file objects or upright PIL images (one, or a list of them).

        Files are read through the one door (upright unless the model was trained on stored
        pixels) and their embeddings cached by content hash. errors="raise" raises
        UnreadableImage for the first unreadable item; errors="keep" returns a Prediction
        with `error` set instead.
        """
        from .pipeline.embed import embed_crops
        from .imaging import open_header, read_orientation
        from .pipeline.decode import image_canvas, load_canvas
        from .views import needs_picture

        if isinstance(items, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)) or hasattr(items, "read"):
            items = [items]  # one image (a file object or a memoryview is one image, not many)
        items = list(items)
        results: list[Prediction | None] = [None] * len(items)
        path_idx = [i for i, it in enumerate(items) if isinstance(it, (str, os.PathLike))]
        if path_idx:
            paths = [os.fspath(items[i]) for i in path_idx]
            emb = self.embed_paths(paths, progress=progress)
            probs = self.proba_from_embeddings(np.nan_to_num(emb.vectors))
            for j, i in enumerate(path_idx):
                if not emb.ok[j]:
                    if errors == "raise":
                        raise UnreadableImage(paths[j], emb.errors.get(j, "unreadable"))
                    results[i] = Prediction(paths[j], None, [], emb.errors.get(j, "unreadable"))
                    continue
                try:
                    with open_header(paths[j]) as im:
                        tag = read_orientation(im).tag
                except UnreadableImage:
                    tag = None
                results[i] = Prediction(paths[j], tag, self._top(probs[j], top_k))
        crops, where, tags = [], [], []
        whole = needs_picture(self.views)  # views off centre are cut from the whole resized picture
        for i, it in enumerate(items):
            if results[i] is not None or i in path_idx:
                continue
            try:
                if isinstance(it, Image.Image):
                    crops.append(image_canvas(it.convert("RGB"), self.backbone, whole))
                    tags.append(None)
                elif isinstance(it, (bytes, bytearray, memoryview)) or hasattr(it, "read"):
                    crop, dec = load_canvas(it if hasattr(it, "read") else bytes(it), self.backbone, self.orient,
                                            whole)
                    crops.append(crop)
                    tags.append(dec.orientation.tag)
                else:
                    raise UprightError(f"cannot predict an object of type {type(it).__name__}")
                where.append(i)
            except UnreadableImage as exc:
                if errors == "raise":
                    raise
                results[i] = Prediction(None, None, [], exc.reason)
        if crops:
            emb = embed_crops(crops, backbone=self.backbone, variants=self.views, runner=self.runner)
            for i, p, tag in zip(where, self.proba_from_embeddings(emb), tags):
                results[i] = Prediction(getattr(items[i], "name", None) if hasattr(items[i], "read") else None,
                                        tag, self._top(p, top_k))
        return [r for r in results if r is not None]


def load_model(model_dir, cache_dir=None) -> Model:
    """Load MODEL/ (model.json + head.safetensors) after the checks in modelfile.py (schema,
    sizes, hashes, shapes, finite weights). Raises UprightError with one line when any fails."""
    folder = Path(model_dir)
    meta, weight, bias, bstate, fitted = modelfile.read_model_folder(folder)
    return Model(folder, meta, weight, bias, bstate, cache_dir, fitted)
