"""upright: train image classifiers from folders of real-world photos, right side up."""

from __future__ import annotations

import sys
import types

from .errors import UnreadableImage, UprightError
from .imaging import open_image, open_stored, open_upright
from .metadata import FileFacts, describe
from .model import load_model
from .pipeline.scan import Dataset, Record, scan
from .version import __version__


def train(data, out, *, force: bool = False, **options):
    """Train a model folder `out` from DATA (train/ and val/; test/ is never read) -> TrainResult.

    Options as `upright train`: preset, backbone, augment, epochs, fine_tune, resume, val_split, seed, orient,
    cache_dir, progress (default False here), workers, report. `force` replaces an existing
    model folder atomically. `result.to_dict()` is the `train --json` object.
    """
    from .train import train_dataset

    options.setdefault("progress", False)
    return train_dataset(data, out, force=force, **options)


def evaluate(model, data, **options):
    """Score a model (folder or Model) on DATA's test/ (else val/, else every photo) -> EvalResult.

    Options as `upright eval`: report, csv, cache_dir, rotations, progress (default False
    here). `result.seen_in_training` counts scored photos the model was fitted on;
    `result.photos` holds one row per photo; `result.to_dict()` is the `eval --json` object.
    """
    from .evaluate import evaluate as _evaluate

    options.setdefault("progress", False)
    return _evaluate(model, data, **options)


class _Package(types.ModuleType):
    """Keeps `upright.train` / `upright.evaluate` the API functions above once their modules of the
    same name are imported (the import system would otherwise bind the submodule over them).
    Import the modules themselves with `from upright.train import ...`."""

    _API = frozenset({"train", "evaluate", "audit"})

    def __setattr__(self, name, value):
        if name in self._API and isinstance(value, types.ModuleType) and callable(self.__dict__.get(name)):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "Dataset", "FileFacts", "Record", "UnreadableImage", "UprightError", "__version__",
    "describe", "evaluate", "load_model", "open_image", "open_stored", "open_upright", "scan", "train",
]
