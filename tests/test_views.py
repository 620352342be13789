"""Views (upright.views): a window of the resized picture, then a flip or turn; and how the
eval rotation check names the views of a turned photo."""

from __future__ import annotations

import numpy as np
import pytest

from upright import views as V
from upright.orientation import VARIANTS, variant_array

ALL = [V.name(d, p) for d in VARIANTS for p in V.POSITIONS]


def test_names_round_trip_and_bad_names_are_refused():
    assert len(set(ALL)) == 40
    assert all(V.name(*V.parse(v)) == v for v in ALL)
    assert V.parse("flip-crop-top-left") == ("flip", "top-left") and V.parse("r90") == ("r90", "centre")
    for bad in ("id-crop-top-left", "crop-middle", "flipcrop-top-left", "crop-", "", "r45", None):
        with pytest.raises(ValueError):
            V.parse(bad)


def test_ten_crops_are_the_centre_corners_and_mirrors():
    img = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    v = V.cut_all(img, V.TEN_CROPS, 4)
    assert v.shape == (10, 4, 4, 3)
    assert (v[0] == img[1:5, 2:6]).all() and (v[1] == img[:4, :4]).all() and (v[4] == img[2:, 4:]).all()
    assert (v[5] == img[1:5, 2:6][:, ::-1]).all() and (v[9] == img[2:, 4:][:, ::-1]).all()
    assert V.needs_picture(V.TEN_CROPS) and not V.needs_picture(("id", "flip", "r90"))


@pytest.mark.parametrize("turn", list(VARIANTS))
def test_a_view_of_the_turned_picture_is_the_composed_view_of_the_picture(turn):
    # even margins (9 - 5, 13 - 5), so the centre window is exact under every turn too
    pic = np.random.default_rng(0).integers(0, 256, (9, 13, 3), dtype=np.uint8)
    turned = np.ascontiguousarray(variant_array(pic, turn))
    for v in ALL:
        assert (V.cut(turned, v, 5) == V.cut(pic, V.compose(turn, v), 5)).all(), (turn, v)


def test_a_centre_crop_is_its_own_centre_view_and_too_small_pictures_are_refused():
    crop = np.random.default_rng(1).integers(0, 256, (5, 5, 3), dtype=np.uint8)
    assert (V.cut(crop, "flip", 5) == crop[:, ::-1]).all()
    with pytest.raises(ValueError, match="smaller"):
        V.window(crop, "top-left", 6)


def test_the_flips_and_turns_agree_in_numpy_pillow_torch_and_the_onnx_graph():
    """The eight variants exist in four implementations: orientation.variant_array (numpy, what the
    embeddings use), variant_image (Pillow, fix and serve), export.variant_tensor (torch, the exported
    graph) and export.preprocess_graph's windows and mirror (ONNX, --preprocess). They must agree."""
    import onnxruntime as ort
    import torch
    from PIL import Image

    from upright.contract import InputContract
    from upright.export import preprocess_graph, variant_tensor
    from upright.orientation import variant_image
    from upright.pipeline.decode import to_input

    pic = np.random.default_rng(2).integers(0, 256, (7, 7, 3), dtype=np.uint8)  # square: every turn keeps the shape
    for v in VARIANTS:
        want = variant_array(pic, v)
        assert (np.asarray(variant_image(Image.fromarray(pic), v)) == want).all(), v
        got = variant_tensor(torch.from_numpy(pic).permute(2, 0, 1)[None], v)[0].permute(1, 2, 0).numpy()
        assert (got == want).all(), v
    # the ONNX graph on a picture already at the resize (no resampling): its windows, mirrored or not,
    # are exactly views.cut of that picture, scaled as to_input scales
    c = InputContract(size=8, resize=12, mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 8.0))
    picture = np.random.default_rng(3).integers(0, 256, (12, 17, 3), dtype=np.uint8)
    views = ("id", "flip", "crop-top-right", "flip-crop-bottom-left")
    graph = preprocess_graph(c, 8, views)  # ONNX IR version 8
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"pixels": picture[None]})[0]
    want = to_input(V.cut_all(picture, views, 8), c)
    assert got.shape == want.shape == (4, 3, 8, 8) and np.abs(got - want).max() < 1e-4
