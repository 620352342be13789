"""The package stage: a fitted head, its input contract and what it was fitted on -> the model
folder (model.json + head.safetensors, each written atomically). modelfile.py checks both on
every load; save_model refuses to write what it would refuse to read.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .. import backbones, modelfile, provenance
from ..atomic import atomic_write_bytes, atomic_write_text, clean_leftovers
from ..contract import InputContract
from ..errors import UprightError
from ..modelfile import FORMAT, HEAD_FILE, META_FILE
from ..version import __version__


def fitted_on(fitted: np.ndarray, splits: list[str], test_not_read: str | None) -> dict:
    """model.json "fitted_on": what the head was fitted on (the fingerprints are in head.safetensors)."""
    return {"photos": int(len(fitted)), "splits": splits, "tensor": provenance.TENSOR,
            "fingerprint": f"first {provenance.PREFIX_BYTES} bytes of each photo's SHA-256, rows sorted, "
                           "in head.safetensors",
            "test_not_read": test_not_read}


def model_json(*, labels: list[str], contract: InputContract, weights_sha256: str, preset: str, augment: str,
               train_views, fine_tuned: bool, head: dict, training: dict, fitted: dict, **extra) -> dict:
    """model.json's content (save_model adds the format, version and hashes). The input contract
    is written once; the older keys that state it are derived from it (InputContract.model_json)."""
    stated = contract.model_json()
    return {"labels": labels, "backbone": contract.backbone,
            "backbone_parts": list(backbones.spec(contract.backbone).components),
            "weights_sha256": weights_sha256,
            **{k: stated[k] for k in ("embedding_dim", "input_size", "preprocessing", "orientation_policy")},
            "preset": preset, "augment": augment, "train_variants": list(train_views),
            "test_views": stated["test_views"], "fine_tuned": bool(fine_tuned), "head": head,
            "onnx_input": stated["onnx_input"], "input_contract": stated["input_contract"],
            "training": training, "fitted_on": fitted, **extra}


def embeddings_record(backbone: str, sha256: str) -> dict:
    """model.json "fitted_on"."embeddings": how the near-copy record's rows were made (provenance.py)."""
    return {"file": provenance.EMBEDDINGS_FILE, "sha256": sha256, "backbone": backbone,
            "weights_sha256": backbones.weights_sha256(backbone), "view": provenance.RECORD_VIEW,
            "orientation": "upright", "dtype": "float16",
            "rows": f"L2-normalised embeddings in the order of {provenance.TENSOR}"}


def save_model(out: str | os.PathLike, meta: dict, weight: np.ndarray, bias: np.ndarray,
               backbone_state: dict | None = None, fitted: np.ndarray | None = None,
               fitted_embeddings: np.ndarray | None = None) -> Path:
    """Write MODEL/fitted_embeddings.safetensors (the near-copy record, when given), then
    MODEL/head.safetensors, then MODEL/model.json, each atomically."""
    from safetensors.numpy import save

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
    if fitted_embeddings is not None:
        if fitted is None or len(fitted_embeddings) != len(fitted):
            raise UprightError("refusing to write a near-copy record whose rows are not the fitted photos")
        data = save({provenance.EMBEDDINGS_TENSOR: np.ascontiguousarray(fitted_embeddings, np.float16)})
        atomic_write_bytes(out / provenance.EMBEDDINGS_FILE, data)
        meta["fitted_on"] = {**meta["fitted_on"], "embeddings": embeddings_record(
            provenance.RECORD_BACKBONE, hashlib.sha256(data).hexdigest())}
    data = save(tensors, metadata={"format": FORMAT, "labels": json.dumps(meta["labels"])})
    meta["head_sha256"] = hashlib.sha256(data).hexdigest()  # of exactly the bytes written
    modelfile.validate_for_save(meta)
    atomic_write_bytes(out / HEAD_FILE, data)
    meta = {"format": FORMAT, "format_version": version, "upright_version": __version__, **meta}
    atomic_write_text(out / META_FILE, json.dumps(meta, indent=2) + "\n")
    return out


__all__ = ["META_FILE", "HEAD_FILE", "embeddings_record", "fitted_on", "model_json", "save_model"]
