"""Views of a picture: a square window of the resized picture, then one of the eight flips and turns.

A view is what the network sees of a photo. Its name is a dihedral variant (upright.orientation:
"id", "flip", "r90", ...), optionally followed by where the window sits:

    "id", "flip", "r90"          the centre window (the standard crop), then the variant
    "crop-top-left"              the top-left window as it is
    "flip-crop-bottom-right"     the bottom-right window, mirrored
    "r90-crop-top-right"         the top-right window, turned 90 degrees clockwise

The picture is the photo resized so its short side is the contract's `resize` (pipeline/decode.py);
the window is the backbone's `size` square. The centre views need only the centre crop, so
`needs_picture` tells a decoder when it may keep just that (the fast path); corner views need
the whole resized picture. TEN_CROPS are the classic ten: centre and four corners, each also
mirrored (--preset accurate trains on them and averages them at test time).

`compose(turn, view)` answers the eval rotation check: the view of the picture turned by a
variant, named as a view of the picture itself (a corner of the turned picture is another
corner of the original). Small pure functions; nothing here reads a file.
"""

from __future__ import annotations

import numpy as np

from .orientation import VARIANTS, variant_array
from .orientation import compose as compose_variants

POSITIONS = ("centre", "top-left", "top-right", "bottom-left", "bottom-right")
CORNERS = POSITIONS[1:]
_SEP = "crop-"

#: centre + 4 corners, then the same mirrored (the cache order of --preset accurate)
TEN_CROPS: tuple[str, ...] = ("id", "crop-top-left", "crop-top-right", "crop-bottom-left", "crop-bottom-right",
                              "flip", "flip-crop-top-left", "flip-crop-top-right", "flip-crop-bottom-left",
                              "flip-crop-bottom-right")


def parse(view: str) -> tuple[str, str]:
    """"flip-crop-top-left" -> ("flip", "top-left"); "r90" -> ("r90", "centre"). ValueError if unknown.

    One name per view: the identity is left out ("crop-top-left", never "id-crop-top-left")."""
    if isinstance(view, str):
        if view in VARIANTS:
            return view, "centre"
        head, sep, position = view.partition(_SEP)
        variant = "id" if head == "" else head[:-1] if head.endswith("-") else None
        if sep and position in CORNERS and variant in VARIANTS and not (variant == "id" and head):
            return variant, position
    raise ValueError(f"unknown view {view!r} (a variant: {', '.join(VARIANTS)}; or [variant-]crop-<corner>, "
                     f"corners {', '.join(CORNERS)})")


def name(variant: str, position: str = "centre") -> str:
    """The view's name: the variant alone for the centre window; "crop-<corner>" prefixed by it otherwise."""
    if position == "centre":
        return variant
    return _SEP + position if variant == "id" else f"{variant}-{_SEP}{position}"


def is_view(view) -> bool:
    try:
        parse(view)
        return True
    except ValueError:
        return False


def needs_picture(views) -> bool:
    """True when some view sits off centre, so the decoder must keep the whole resized picture."""
    return any(parse(v)[1] != "centre" for v in views)


def window(picture: np.ndarray, position: str, size: int) -> np.ndarray:
    """The size x size window of an HWC picture at `position` (the centre as pipeline.decode.centre_crop:
    (h - size) // 2 from the top, (w - size) // 2 from the left)."""
    h, w = picture.shape[:2]
    if h < size or w < size:
        raise ValueError(f"picture {w}x{h} is smaller than the {size}-px window")
    top = {"centre": (h - size) // 2, "top-left": 0, "top-right": 0, "bottom-left": h - size,
           "bottom-right": h - size}[position]
    left = {"centre": (w - size) // 2, "top-left": 0, "top-right": w - size, "bottom-left": 0,
            "bottom-right": w - size}[position]
    return picture[top:top + size, left:left + size]


def cut(picture: np.ndarray, view: str, size: int) -> np.ndarray:
    """The view of a resized picture (or of a centre crop, for centre views): window, then variant."""
    variant, position = parse(view)
    if position == "centre" and picture.shape[0] == picture.shape[1] == size:
        return variant_array(picture, variant)  # already the centre crop
    return variant_array(window(picture, position, size), variant)


def cut_all(picture: np.ndarray, views, size: int) -> np.ndarray:
    """uint8 [len(views), size, size, 3]: every view of one picture."""
    return np.ascontiguousarray(np.stack([cut(picture, v, size) for v in views]))


def describe(views) -> str:
    """The views in a few words for people: "10 crops (centre + 4 corners, each mirrored)" or "id+flip"."""
    views = tuple(views)
    if views == TEN_CROPS:
        return "10 crops (centre + 4 corners, each mirrored)"
    return "+".join(views)


_GRID = np.array([["top-left", "top-right"], ["bottom-left", "bottom-right"]], dtype=object)
_CELL = {"top-left": (0, 0), "top-right": (0, 1), "bottom-left": (1, 0), "bottom-right": (1, 1)}


def compose(turn: str, view: str) -> str:
    """The view of the picture turned by variant `turn`, as a view of the picture itself.

    The window at corner c of the turned picture holds, turned, the window at the corner of the
    original that the turn carries to c; so the view is (that corner, `turn` then the view's
    variant). Centre views compose as their variants do (orientation.compose)."""
    variant, position = parse(view)
    if position != "centre":
        moved = variant_array(_GRID, turn)  # moved[cell] = the original corner that lands there
        position = str(moved[_CELL[position]])
    return name(compose_variants(turn, variant), position)


__all__ = ["CORNERS", "POSITIONS", "TEN_CROPS", "compose", "cut", "cut_all", "describe", "is_view", "name",
           "needs_picture", "parse", "window"]
