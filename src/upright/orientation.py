"""Which way is up: the eight flips and turns of a picture, EXIF Orientation, and their words.

The eight transforms of a picture onto itself (the dihedral group of the square) have one
name each, used everywhere (embedding variants, test-time views, the eval rotation check):

    "id"      the picture as it is            "flip"       mirrored left-right
    "r90"     turned 90 degrees clockwise     "flip_r90"   mirrored, then turned 90 clockwise
    "r180"    turned 180 degrees              "flip_r180"  mirrored, then turned 180
    "r270"    turned 270 degrees clockwise    "flip_r270"  mirrored, then turned 270 clockwise

EXIF Orientation n (1-8) names the transform that turns a file's stored pixels into the
picture a viewer shows (`EXIF_UPRIGHT[n]`); `store_as` is its inverse, what a camera does.
Small pure functions in the style of Pillow's ImageOps; nothing here reads a file.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: name -> (mirror left-right first, then this many quarter turns clockwise)
VARIANTS: dict[str, tuple[bool, int]] = {
    "id": (False, 0), "flip": (True, 0), "r90": (False, 1), "r180": (False, 2), "r270": (False, 3),
    "flip_r90": (True, 1), "flip_r180": (True, 2), "flip_r270": (True, 3),
}
_NAME = {ops: name for name, ops in VARIANTS.items()}

#: Turns of the upright picture, degrees clockwise -> variant name.
ROTATIONS: dict[int, str] = {0: "id", 90: "r90", 180: "r180", 270: "r270"}

#: EXIF Orientation -> the variant that turns the stored pixels upright.
EXIF_UPRIGHT: dict[int, str] = {1: "id", 2: "flip", 3: "r180", 4: "flip_r180", 5: "flip_r270", 6: "r90",
                                7: "flip_r90", 8: "r270"}
_EXIF_OF = {name: value for value, name in EXIF_UPRIGHT.items()}

#: EXIF Orientation values whose stored pixels have width and height swapped.
SWAPS_AXES = frozenset(v for v, name in EXIF_UPRIGHT.items() if VARIANTS[name][1] % 2)

# Each variant is a single Pillow transpose (Pillow's ROTATE_n turn counter-clockwise).
_TRANSPOSE = {
    "flip": Image.Transpose.FLIP_LEFT_RIGHT, "r90": Image.Transpose.ROTATE_270,
    "r180": Image.Transpose.ROTATE_180, "r270": Image.Transpose.ROTATE_90,
    "flip_r90": Image.Transpose.TRANSVERSE, "flip_r180": Image.Transpose.FLIP_TOP_BOTTOM,
    "flip_r270": Image.Transpose.TRANSPOSE,
}

#: How a file with each EXIF Orientation stores the picture, in words.
STORED_WORDS = {1: "upright", 2: "mirrored", 3: "upside down", 4: "mirrored upside down",
                5: "sideways and mirrored", 6: "sideways", 7: "sideways and mirrored", 8: "sideways"}
#: What reading the file upright does to its stored pixels, in words.
UPRIGHT_DOES = {2: "flipped it left to right", 3: "turned it 180°",
                4: "flipped it top to bottom", 5: "turned and flipped it", 6: "turned it 90° clockwise",
                7: "turned and flipped it", 8: "turned it 90° counter-clockwise"}
_SOURCE_WORDS = {"exif": "EXIF", "xmp": "XMP", "heif": "HEIF"}


def _check(variant: str) -> tuple[bool, int]:
    try:
        return VARIANTS[variant]
    except KeyError:
        raise ValueError(f"unknown variant {variant!r} (one of {', '.join(VARIANTS)})") from None


def compose(first: str, then: str) -> str:
    """The variant equal to applying `first`, then `then`."""
    f1, k1 = _check(first)
    f2, k2 = _check(then)
    if f2:  # mirroring after turning by k1 = turning by -k1 after mirroring
        f1, k1 = not f1, -k1
    return _NAME[(f1, (k1 + k2) % 4)]


def inverse(variant: str) -> str:
    """The variant that undoes `variant` (mirrored ones undo themselves)."""
    flip, k = _check(variant)
    return variant if flip else _NAME[(False, -k % 4)]


def exif_orientation(variant: str) -> int:
    """The EXIF Orientation value whose upright transform is `variant`."""
    _check(variant)
    return _EXIF_OF[variant]


def variant_image(img: Image.Image, variant: str) -> Image.Image:
    """The `variant` of a PIL image (one transpose; the image itself when "id")."""
    _check(variant)
    return img if variant == "id" else img.transpose(_TRANSPOSE[variant])


def variant_array(a: np.ndarray, variant: str) -> np.ndarray:
    """The `variant` of an HWC array (a view where possible)."""
    flip, k = _check(variant)
    if flip:
        a = a[:, ::-1]
    if k:
        a = np.rot90(a, k=-k, axes=(0, 1))  # negative k = clockwise
    return a


def apply_orientation(image: Image.Image, orientation: int) -> Image.Image:
    """Turn stored pixels upright for an EXIF Orientation value (1-8). Pure pixel transform."""
    return variant_image(image, EXIF_UPRIGHT[orientation])


def store_as(image: Image.Image, orientation: int) -> Image.Image:
    """Inverse of apply_orientation: the pixels a camera stores with this tag for this picture."""
    return variant_image(image, inverse(EXIF_UPRIGHT[orientation]))


def turn_back(image: Image.Image, turned: int) -> Image.Image:
    """A picture whose content looks turned `turned` degrees clockwise, turned back upright."""
    return variant_image(image, inverse(ROTATIONS[turned]))


def stored_words(orientation: int) -> str:
    """'stored sideways' style words for how a file with this EXIF Orientation holds its pixels."""
    return f"stored {STORED_WORDS[orientation]}"


def orientation_note(tag: int | None, source: str | None = None, problem: str | None = None) -> str:
    """One sentence on what the file said about its orientation and what upright did."""
    if problem:
        return f"{problem}; the pixels were used as stored"
    if tag is None:
        return "no orientation tag: the pixels are used as stored"
    if tag == 1:
        return "orientation tag 1 (upright): nothing to turn"
    src = _SOURCE_WORDS.get(source or "", "EXIF")
    return f"{stored_words(tag)} ({src} {tag}); upright {UPRIGHT_DOES[tag]} before the model saw it"


#: The turns of the serve page's turn test (and eval's rotation check), degrees clockwise.
TURNS = tuple(ROTATIONS)


def turn_verdict(answers: dict[int, str]) -> tuple[bool, str]:
    """Whether a model's answer depends on how a picture is turned, in one line.

    answers: degrees clockwise (0 = as is) -> the top label for the picture turned so.
    A model that learned the object answers the same at every turn (for most objects); a
    model that learned how the pixels were stored (the soda-can shortcut) changes its mind.
    """
    first = answers[0]
    changed = {d: a for d, a in sorted(answers.items()) if a != first}
    if changed:
        where = ", ".join(f"{a!r} at {d}°" for d, a in changed.items())
        return True, ("the answer changes when the picture is turned: the model may have learned "
                      f"orientation ({first!r} as is, {where})")
    return False, (f"the answer stays {first!r} however the picture is turned: orientation "
                   "does not decide it for this picture")
