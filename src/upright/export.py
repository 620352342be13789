"""`upright export MODEL --format onnx`: one ONNX graph, backbone + head (+ test views).

Input "input": the backbone's input contract (backbones.BackboneSpec.describe_input, also
written into the graph as the input's description and into model.json "preprocessing"):
float32 [batch, 3, S, S] RGB, the upright picture resized so its short side is `resize`,
centre-cropped to S x S and scaled. Output "probabilities": [batch, n_labels] in the order of
model.json "labels", averaged over the model's test views exactly as `upright predict` does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import backbones
from .console import err
from .errors import UprightError
from .model import Model, load_model
from .orientation import VARIANTS


def build_module(m):
    """The whole model as a torch module: preprocessed input -> probabilities."""
    import torch

    sd = None
    if m.backbone_state is not None:
        sd = {k: torch.from_numpy(np.array(v)) for k, v in m.backbone_state.items()}
    emb = backbones.torch_module(m.backbone, sd)
    views = [VARIANTS[v] for v in m.views]

    class Whole(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = emb
            self.head = torch.nn.Linear(m.weight.shape[1], m.weight.shape[0])
            with torch.no_grad():
                self.head.weight.copy_(torch.from_numpy(m.weight))
                self.head.bias.copy_(torch.from_numpy(m.bias))

        def forward(self, x):
            probs = None
            for flip, k in views:  # NCHW: width is dim 3; clockwise quarter turn = rot90(k=-1, dims=(2,3))
                v = torch.flip(x, dims=[3]) if flip else x
                if k:
                    v = torch.rot90(v, k=-k, dims=(2, 3))
                p = torch.softmax(self.head(self.backbone(v)), dim=1)
                probs = p if probs is None else probs + p
            return probs / len(views)

    return Whole().eval()


def export_onnx(model, output=None) -> Path:
    m = model if isinstance(model, Model) else load_model(model)
    out = Path(output) if output is not None else m.folder / "model.onnx"
    if out.is_dir():
        raise UprightError(f"{out}: is a folder; give a file name with -o")
    try:
        backbones.export_onnx(build_module(m), out, backbones.spec(m.backbone), output_name="probabilities")
    except OSError as exc:
        raise UprightError(f"cannot write {out}: {exc.strerror or exc}") from exc
    return out


def run_export(model, fmt: str = "onnx", output=None) -> Path:
    if fmt != "onnx":
        raise UprightError(f"unsupported export format '{fmt}' (onnx)")
    out = export_onnx(model, output)
    err.print(f"wrote {out} (input 'input' float32 NCHW preprocessed, output 'probabilities')")
    return out
