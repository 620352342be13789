"""upright inside a PyTorch pipeline: `ImageFolder` (a drop-in for torchvision's) and `read_image`.

torchvision's ImageFolder and `decode_jpeg` ignore the EXIF orientation tag, so a phone photo
stored sideways reaches the network sideways. These read every picture through the one door
(`upright.imaging`): upright (EXIF, XMP, HEIF), colour-managed to sRGB, HEIC included, bombs
refused. No torchvision import (it does not load beside every torch build).

Unreadable files: found at construction by a cheap header check (no pixels decoded) and left
out, with one warning listing them, so `len()` is final before the first epoch. A file whose
header reads but whose pixels do not (a truncated JPEG body) can only be found when it is
decoded: `__getitem__` then warns once per file and returns the next readable sample, so an
epoch never crashes midway and the length stays stable. `on_error="raise"` raises instead,
at construction or at that read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch  # PyTorch (absolute import: this module is upright.torch)
from PIL import Image

from .errors import UnreadableImage, UprightError
from .files import IMAGE_EXTENSIONS, walk_files
from .imaging import Source, open_upright
from .loader_checks import check_headers, next_readable
from .words import count

__all__ = ["IMG_EXTENSIONS", "ImageFolder", "pil_to_tensor", "read_image", "upright_loader"]

#: The extensions ImageFolder takes by default: upright's (torchvision's plus HEIC, AVIF, ...).
IMG_EXTENSIONS = tuple(sorted(IMAGE_EXTENSIONS))
ON_ERROR = ("skip", "raise")


def upright_loader(path: str | os.PathLike) -> Image.Image:
    """The default loader: the picture as a photo viewer shows it, RGB (PIL image)."""
    return open_upright(path)


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """An RGB PIL image -> uint8 tensor [3, H, W] (as torchvision's `pil_to_tensor`)."""
    a = np.asarray(img.convert("RGB") if img.mode != "RGB" else img)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


def read_image(source: Source | torch.Tensor, size: int | None = None) -> torch.Tensor:
    """A file (path, bytes, binary file, or a 1-d uint8 tensor of its bytes) -> uint8 [3, H, W], upright.

    Like torchvision's `decode_image(..., apply_exif_orientation=True)`, plus XMP and HEIF
    orientation, HEIC/AVIF, ICC to sRGB and the decompression-bomb limits. `size`: short side
    (decoded in the DCT domain for JPEG). Raises UnreadableImage with a one-line reason.
    """
    if isinstance(source, torch.Tensor):
        source = source.cpu().numpy().astype(np.uint8, copy=False).tobytes()
    return pil_to_tensor(open_upright(source, size))


class ImageFolder(torch.utils.data.Dataset):
    """`root/<class>/**/<image>` -> (upright RGB PIL image, class index), as torchvision's ImageFolder.

    Same arguments (root, transform, target_transform, loader, is_valid_file, allow_empty) and
    attributes (root, classes, class_to_idx, samples, imgs, targets, extensions, loader,
    transform, target_transform). Differences, on purpose: hidden folders (".ipynb_checkpoints")
    are not classes and hidden files are not samples; symlink loops are never followed
    (upright.files); the default extensions include HEIC/HEIF/AVIF. `on_error`: "skip" (default)
    or "raise" (module docstring); `unreadable` lists (path, reason) of the files left out.
    The header check runs with the default loader only (a custom loader may read anything).
    """

    def __init__(self, root: str | os.PathLike, transform: Callable | None = None,
                 target_transform: Callable | None = None, loader: Callable[[str], Any] | None = None,
                 is_valid_file: Callable[[str], bool] | None = None, allow_empty: bool = False, *,
                 on_error: str = "skip"):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
        self.root = os.fspath(root)
        self.transform = transform
        self.target_transform = target_transform
        self.loader = loader or upright_loader
        self.on_error = on_error
        self.extensions = None if is_valid_file is not None else IMG_EXTENSIONS
        self.classes, self.class_to_idx = self.find_classes(self.root)
        samples = self.make_dataset(self.root, self.class_to_idx, self.extensions, is_valid_file, allow_empty)
        self.unreadable: list[tuple[str, str]] = []
        if loader is None:
            samples = self._readable(samples)
        self.samples = samples
        self.imgs = self.samples
        self.targets = [t for _, t in self.samples]
        self._warned: set[int] = set()

    @staticmethod
    def find_classes(directory: str | os.PathLike) -> tuple[list[str], dict[str, int]]:
        """The class folders of `directory`, sorted, and their indices (hidden folders left out)."""
        try:
            classes = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))
        except OSError as exc:
            raise FileNotFoundError(f"{directory}: cannot list the folder ({exc.strerror or exc})") from exc
        if not classes:
            raise FileNotFoundError(f"Couldn't find any class folder in {directory}.")
        return classes, {name: i for i, name in enumerate(classes)}

    @staticmethod
    def make_dataset(directory: str | os.PathLike, class_to_idx: dict[str, int],
                     extensions: str | tuple[str, ...] | None = None,
                     is_valid_file: Callable[[str], bool] | None = None,
                     allow_empty: bool = False) -> list[tuple[str, int]]:
        """(path, class index) for every file of every class, as torchvision's make_dataset
        (exactly one of `extensions` / `is_valid_file`; an empty class raises unless
        allow_empty), walked with upright's rules (upright.files.walk_files)."""
        if class_to_idx is None:
            raise ValueError("class_to_idx must be given")
        if (extensions is None) == (is_valid_file is None):
            raise ValueError("Both extensions and is_valid_file cannot be None or not None at the same time")
        if is_valid_file is None:
            exts = tuple(e.lower() for e in ((extensions,) if isinstance(extensions, str) else extensions))

            def is_valid_file(path: str) -> bool:
                return path.lower().endswith(exts)

        samples, empty = [], []
        for name in sorted(class_to_idx):
            folder = Path(directory) / name
            if not folder.is_dir():
                continue
            found = [(str(p), class_to_idx[name]) for p in walk_files(folder) if is_valid_file(str(p))]
            if not found:
                empty.append(name)
            samples += found
        if empty and not allow_empty:
            raise FileNotFoundError(f"Found no valid file for the classes {', '.join(empty)}. "
                                    + (f"Supported extensions are: {', '.join(extensions)}"
                                       if isinstance(extensions, tuple) else ""))
        return samples

    def _readable(self, samples: list[tuple[str, int]]) -> list[tuple[str, int]]:
        sizes, self.unreadable = check_headers([p for p, _ in samples], self.root, "upright.torch.ImageFolder",
                                               self.on_error, stacklevel=3)
        return [(p, t) for p, t in samples if p in sizes]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        got = next_readable(index, len(self.samples), lambda i: self.loader(self.samples[i][0]),
                            lambda i: self.samples[i][0], who="upright.torch.ImageFolder",
                            on_error=self.on_error, warned=self._warned,  # once per file (per worker process)
                            errors=(UnreadableImage, OSError), stacklevel=2)
        if got is None:
            raise UprightError(f"{self.root}: no sample could be decoded")
        sample, i = got
        target = self.samples[i][1]
        if self.transform is not None:
            sample = self.transform(sample)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return sample, target

    def __repr__(self) -> str:
        return (f"upright.torch.ImageFolder({count(len(self), 'image')}, {count(len(self.classes), 'class')}, "
                f"root={self.root!r}"
                + (f", {len(self.unreadable)} unreadable left out" if self.unreadable else "") + ")")
