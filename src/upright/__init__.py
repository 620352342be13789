"""upright: train image classifiers from folders of real-world photos, right side up."""

from __future__ import annotations

__version__ = "0.1.0"

from .dataset import Dataset, Record, scan
from .errors import UnreadableImage, UprightError
from .imaging import open_image, open_stored, open_upright
from .metadata import FileFacts, describe
from .model import load_model


__all__ = [
    "Dataset", "FileFacts", "Record", "UnreadableImage", "UprightError", "__version__",
    "describe", "load_model", "open_image", "open_stored", "open_upright", "scan",
]
