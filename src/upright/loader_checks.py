"""What the drop-in loaders (`upright.torch`, `upright.keras`) share: the header check that leaves
unreadable files out before the first epoch, and the read that lets the next readable sample
stand in for one whose pixels do not decode. One home, so both loaders say the same things.
"""

from __future__ import annotations

import warnings
from typing import Callable, TypeVar

from .errors import UnreadableImage, UprightError
from .imaging import open_header
from .parallel import ordered_map
from .words import count

T = TypeVar("T")


def _short_side(path: str) -> tuple[int | None, str | None]:
    """(short side, None) when the file's header reads as an image upright opens, else (None, reason)."""
    try:
        with open_header(path) as im:
            return min(im.size), None
    except UnreadableImage as exc:
        return None, exc.reason


def check_headers(paths: list[str], root, who: str, on_error: str,
                  stacklevel: int = 2) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """{path: short side} of the files whose header reads (no pixels decoded), and [(path, reason)]
    of the others; one warning, "`who`: left out N unreadable files: path: reason; ...", lists those,
    or UprightError "N unreadable files under `root`: ..." with on_error="raise".
    `stacklevel` is the caller's, as if it warned itself."""
    checked = ordered_map(_short_side, paths)
    sizes = {p: s for p, (s, _) in zip(paths, checked) if s is not None}
    unreadable = [(p, why) for p, (s, why) in zip(paths, checked) if s is None]
    if unreadable:
        listing = "; ".join(f"{p}: {why}" for p, why in unreadable)
        bad = count(len(unreadable), "unreadable file")
        if on_error == "raise":
            raise UprightError(f"{bad} under {root}: {listing}")
        warnings.warn(f"{who}: left out {bad}: {listing}", stacklevel=stacklevel + 1)
    return sizes, unreadable


def next_readable(index: int, n: int, read: Callable[[int], T], path: Callable[[int], str], *,
                  who: str, on_error: str, warned: set[int], errors: tuple[type[BaseException], ...],
                  stacklevel: int = 2) -> tuple[T, int] | None:
    """(read(i), i) for the first i from `index` on (wrapping round) whose read does not raise one of
    `errors`, so an epoch never stops midway and labels stay paired with their images; each file
    that fails is warned about once (`warned` holds the indices already told, per caller). None when
    no sample of the `n` reads; with on_error="raise" the first failure propagates."""
    for step in range(n):
        i = (int(index) + step) % n
        try:
            return read(i), i
        except errors as exc:
            if on_error == "raise":
                raise
            if i not in warned:
                warned.add(i)
                warnings.warn(f"{who}: {path(i)} could not be decoded ({getattr(exc, 'reason', exc)}); "
                              "the next readable sample stands in", stacklevel=stacklevel + 1)
    return None
