"""orientation.py: the eight flips and turns, EXIF Orientation, and the words for them."""

import numpy as np
import pytest
from PIL import Image, ImageOps

from fixtures import BLUE, GREEN, RED, YELLOW, asym_picture, corners, looks_upright, same_colour
from upright import orientation as o


def _corners_are(img, tl, tr, bl, br):
    return all(same_colour(a, b) for a, b in zip(corners(img), [tl, tr, bl, br]))


def test_variant_pixels():
    up = asym_picture()  # TL red, TR green, BL blue, BR yellow
    assert looks_upright(o.variant_image(up, "id"))
    assert _corners_are(o.variant_image(up, "flip"), GREEN, RED, YELLOW, BLUE)
    r90 = o.variant_image(up, "r90")  # clockwise: the left column becomes the top row
    assert r90.size == (64, 96) and _corners_are(r90, BLUE, RED, YELLOW, GREEN)
    assert _corners_are(o.variant_image(up, "r180"), YELLOW, BLUE, GREEN, RED)
    assert _corners_are(o.variant_image(up, "r270"), GREEN, YELLOW, RED, BLUE)
    assert _corners_are(o.variant_image(up, "flip_r90"), YELLOW, GREEN, BLUE, RED)
    with pytest.raises(ValueError, match="unknown variant"):
        o.variant_image(up, "r45")


def test_numpy_and_pil_agree_and_compose_is_the_group_law():
    up = asym_picture()
    a = np.asarray(up)
    for v in o.VARIANTS:
        assert np.array_equal(o.variant_array(a, v), np.asarray(o.variant_image(up, v))), v
        back = o.variant_image(o.variant_image(up, v), o.inverse(v))
        assert np.array_equal(np.asarray(back), a), v
        for w in o.VARIANTS:
            both = np.asarray(o.variant_image(o.variant_image(up, v), w))
            assert np.array_equal(both, np.asarray(o.variant_image(up, o.compose(v, w)))), (v, w)


@pytest.mark.parametrize("tag", range(1, 9))
def test_exif_table_agrees_with_pillow(tag):
    """Pillow's own ImageOps.exif_transpose is an independent statement of the EXIF table."""
    up = asym_picture()
    stored = o.store_as(up, tag)
    stored.getexif()[0x0112] = tag
    want = np.asarray(ImageOps.exif_transpose(stored))
    assert np.array_equal(np.asarray(o.apply_orientation(stored, tag)), want)
    assert np.array_equal(np.asarray(o.apply_orientation(o.store_as(up, tag), tag)), np.asarray(up))
    assert o.exif_orientation(o.EXIF_UPRIGHT[tag]) == tag
    assert (stored.size != up.size) == (tag in o.SWAPS_AXES)


def test_turn_back_undoes_a_turn():
    up = asym_picture()
    for deg, variant in o.ROTATIONS.items():
        assert looks_upright(o.turn_back(o.variant_image(up, variant), deg)), deg


def test_words():
    assert o.stored_words(6) == "stored sideways" and o.stored_words(3) == "stored upside down"
    note = o.orientation_note(6, "exif")
    assert note == "stored sideways (EXIF 6); upright turned it 90° clockwise before the model saw it"
    assert "XMP 8" in o.orientation_note(8, "xmp") and "counter-clockwise" in o.orientation_note(8, "xmp")
    assert o.orientation_note(None) == "no orientation tag: the pixels are used as stored"
    assert "nothing to turn" in o.orientation_note(1)
    assert o.orientation_note(6, "exif", "orientation value 9 is not 1-8").endswith("used as stored")
    assert set(o.STORED_WORDS) == set(o.EXIF_UPRIGHT) and set(o.UPRIGHT_DOES) == set(range(2, 9))


def test_is_pure():
    """Nothing is changed in place: a transform returns a new image (or the same one for "id")."""
    up = asym_picture()
    before = up.tobytes()
    for v in o.VARIANTS:
        o.variant_image(up, v)
    assert up.tobytes() == before and isinstance(o.variant_image(up, "r90"), Image.Image)
