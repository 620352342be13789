"""upright inside a Hugging Face `datasets` pipeline: decode an `Image(decode=False)` column upright.

    from datasets import Image
    import upright.hf
    ds = ds.cast_column("image", Image(decode=False))          # keep the bytes: upright decodes
    ds = ds.filter(upright.hf.readable())                     # optional: drop unreadable rows first
    ds = ds.with_transform(upright.hf.decode("image", size=256))  # or ds.map(..., batched=True)

`datasets` applies the EXIF tag itself (recent versions), but not XMP or HEIF orientation,
colour profiles, the decompression-bomb limits or a DCT-domain sized decode: upright's one door
does all of them. Needs the optional extra `upright[hf]` only for `datasets` itself; this module
imports nothing from it.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

from PIL import Image

from .errors import UnreadableImage, UprightError
from .imaging import open_header, open_image

ON_ERROR = ("raise", "none")


def _source(value: Any):
    """An Image(decode=False) cell ({"bytes", "path"}), raw bytes or a path -> what the door reads."""
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
        if data is not None:
            return data
        if path:
            return path
        raise UprightError("an image cell has neither 'bytes' nor 'path'")
    if isinstance(value, Image.Image):
        raise UprightError("this column is already decoded (by PIL, without upright): cast it with "
                           "ds.cast_column(column, datasets.Image(decode=False)) first")
    if isinstance(value, (bytes, bytearray, memoryview, str)) or hasattr(value, "__fspath__"):
        return value
    raise UprightError(f"cannot decode an image cell of type {type(value).__name__}")


def _name(value: Any) -> str:
    return (value.get("path") if isinstance(value, dict) else None) or "image"


def decode(column: str = "image", *, size: int | None = None, orient: bool = True,
           output_column: str | None = None, on_error: str = "raise") -> Callable[[dict], dict]:
    """A transform for `Dataset.with_transform` / `set_transform` / `map` (batched or not).

    Replaces `column` (or writes `output_column`) with upright RGB PIL images; `size` decodes at
    that short side. on_error="raise" raises UnreadableImage (one line, the file's path when the
    cell has one); "none" puts None in its place with a warning (then `filter` the Nones).
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
    target = output_column or column

    def one(value):
        try:
            return open_image(_source(value), size, orient=orient).image
        except UnreadableImage as exc:
            exc = UnreadableImage(_name(value), exc.reason) if exc.path is None else exc
            if on_error == "raise":
                raise exc from None
            warnings.warn(f"upright.hf: {exc}; the cell is None", stacklevel=3)
            return None

    def transform(example: dict) -> dict:
        values = example[column]
        out = dict(example)
        out[target] = [one(v) for v in values] if isinstance(values, list) else one(values)
        return out

    return transform


def readable(column: str = "image") -> Callable[[dict], Any]:
    """A predicate for `Dataset.filter` (batched or not): True where the cell's header reads as
    an image upright opens (no pixels decoded)."""

    def ok(value) -> bool:
        try:
            with open_header(_source(value)):
                return True
        except (UnreadableImage, UprightError):
            return False

    def predicate(example: dict):
        values = example[column]
        return [ok(v) for v in values] if isinstance(values, list) else ok(values)

    return predicate
