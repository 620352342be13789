"""upright.keras.image_dataset_from_directory on Keras 3's torch backend (no TensorFlow): Keras' file
order, split and labels, images read upright (the real EXIF orientation examples), a keras.utils.PyDataset
that model.fit trains on, unreadable files left out. The tf.data path: tests/test_keras_tf.py."""

from __future__ import annotations

import importlib.util
import os
import warnings

import numpy as np
import pytest
from fixtures import (KERAS_FORMATS, asym_picture, check_upright, keras_tree, looks_upright, orientation_tree,
                      stripes_picture, tiny_keras_model, write_photo)
from PIL import Image

keras = pytest.importorskip("keras")
if importlib.util.find_spec("tensorflow"):
    pytest.skip("TensorFlow is installed: the default is a tf.data.Dataset (tests/test_keras_tf.py)",
                allow_module_level=True)
import upright.keras as uk  # noqa: E402
from upright.errors import UprightError  # noqa: E402


def keras_index(root, **kw):
    """Keras' own index (keras.src: pure Python, no TensorFlow needed), as its loader calls it."""
    from keras.src.utils import dataset_utils

    return dataset_utils.index_directory(str(root), kw.pop("labels", "inferred"), formats=KERAS_FORMATS,
                                         verbose=False, **kw)


def test_file_order_shuffle_split_and_labels_are_keras(tmp_path):
    from keras.src.utils import dataset_utils

    root = keras_tree(tmp_path)
    for kw in ({"shuffle": False}, {"shuffle": True, "seed": 1337}, {"shuffle": True, "seed": 7, "class_names": ["c_owl", "a_cat"]},
               {"shuffle": True, "seed": 3, "labels": None}, {"shuffle": True, "seed": 5, "labels": [0, 1, 0, 2, 1, 1] * 2 + [2]}):
        labels = kw.pop("labels", "inferred")
        # a copy for Keras, which shuffles a labels list in place
        want = keras_index(root, labels=list(labels) if isinstance(labels, list) else labels, **kw)
        got = uk.index_directory(root, labels, KERAS_FORMATS, verbose=False, **kw)
        assert got[0] == want[0] and got[2] == want[2], kw
        assert (got[1] is None and want[1] is None) or list(got[1]) == list(want[1]), kw
    paths, labels, names = keras_index(root, shuffle=True, seed=11)
    train = dataset_utils.get_training_or_validation_split(paths, labels, 0.25, "training")
    val = dataset_utils.get_training_or_validation_split(paths, labels, 0.25, "validation")
    ds_train, ds_val = uk.image_dataset_from_directory(root, validation_split=0.25, subset="both", seed=11,
                                                       image_size=(16, 24), batch_size=4, verbose=False)
    assert ds_train.file_paths == train[0] and ds_val.file_paths == val[0] and ds_train.class_names == names
    assert isinstance(ds_train, keras.utils.PyDataset) and ds_train.unreadable == []
    got = np.concatenate([y for _, y in ds_val])  # validation is never reshuffled
    assert list(got) == list(val[1])
    one = uk.image_dataset_from_directory(root, validation_split=0.25, subset="validation", seed=11, verbose=False)
    assert one.file_paths == val[0]
    # upright's extensions are a superset: a HEIC joins the list (Keras would not see it)
    write_photo(root / "a_cat" / "z.heic", asym_picture(), fmt="HEIF")
    ds = uk.image_dataset_from_directory(root, shuffle=False, image_size=(16, 24), verbose=False)
    assert ds.file_paths[:5] == [str(root / "a_cat" / n) for n in ("00.jpg", "01.JPG", "03.jpeg", "z.heic", "deep/02.png")]


def test_orientation_examples_come_out_upright_in_file_paths_order(shared_data, tmp_path):
    root, names = orientation_tree(shared_data, tmp_path)
    for cls, size in (("landscape", (64, 96)), ("portrait", (96, 64))):
        ds = uk.image_dataset_from_directory(root, class_names=[cls], shuffle=False, batch_size=4, image_size=size,
                                             verbose=False)
        assert [os.path.basename(p) for p in ds.file_paths] == [n for n in names if n.lower().startswith(cls)]
        images = np.concatenate([x for x, _ in ds])
        assert images.shape == (9,) + size + (3,) and images.dtype == np.float32
        check_upright(images, ds.file_paths, size)


def test_a_tiny_keras_model_trains_on_it_with_fit(tmp_path):
    for label in ("horizontal", "vertical"):
        for i in range(6):
            write_photo(tmp_path / label / f"{i}.jpg", stripes_picture(label, i, 64, 48), 6 if i == 0 else None)
    train, val = uk.image_dataset_from_directory(tmp_path, validation_split=0.25, subset="both", seed=1,
                                                 image_size=(32, 32), batch_size=4, verbose=False)
    model = tiny_keras_model((32, 32), 2)
    before = train.order.copy()
    history = model.fit(train, validation_data=val, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["val_loss"]).all()
    assert sorted(train.order) == sorted(before) and list(train.order) != list(before)  # reshuffled each epoch
    assert model.predict(val, verbose=0).shape == (len(val.file_paths), 2)


def test_label_modes_colour_modes_layouts_and_aspect(tmp_path):
    thirds = np.zeros((30, 90, 3), np.uint8)
    thirds[:, :30], thirds[:, 30:60], thirds[:, 60:] = (20, 20, 200), (200, 10, 10), (20, 200, 20)
    write_photo(tmp_path / "a" / "wide.png", Image.fromarray(thirds), fmt="PNG")  # blue | red | green
    write_photo(tmp_path / "b" / "turned.jpg", asym_picture(), 6)  # stored sideways, read upright
    kw = {"shuffle": False, "verbose": False, "image_size": (30, 30)}
    x, y = uk.image_dataset_from_directory(tmp_path, label_mode="binary", **kw)[0]
    assert y.dtype == np.float32 and y.tolist() == [[0.0], [1.0]] and x.shape == (2, 30, 30, 3)
    assert np.allclose(x[0, :, 2], (20, 20, 200), atol=3) and np.allclose(x[0, :, -3], (20, 200, 20), atol=3)
    _, y = uk.image_dataset_from_directory(tmp_path, label_mode="categorical", **kw)[0]
    assert y.tolist() == [[1, 0], [0, 1]] and y.dtype == np.float32
    x = uk.image_dataset_from_directory(tmp_path, label_mode=None, color_mode="grayscale", **kw)[0]
    assert isinstance(x, np.ndarray) and x.shape == (2, 30, 30, 1)
    x, _ = uk.image_dataset_from_directory(tmp_path, color_mode="rgba", data_format="channels_first", **kw)[0]
    assert x.shape == (2, 4, 30, 30) and (x[:, 3] == 255).all()
    x, _ = uk.image_dataset_from_directory(tmp_path, crop_to_aspect_ratio=True, **kw)[0]
    assert np.allclose(x[0], (200, 10, 10), atol=3)  # the largest centred square: the red third only
    x, _ = uk.image_dataset_from_directory(tmp_path, pad_to_aspect_ratio=True, **kw)[0]
    assert (x[0, :10] == 0).all() and (x[0, -10:] == 0).all() and np.allclose(x[0, 15, 15], (200, 10, 10), atol=3)
    assert looks_upright(Image.fromarray(x[1, 5:25].astype(np.uint8)))  # 96 x 64 upright in a square: 30 x 20
    unbatched = uk.image_dataset_from_directory(tmp_path, batch_size=None, **kw)
    img, label = unbatched[1]
    assert img.shape == (30, 30, 3) and int(label) == 1 and len(unbatched) == 2


def test_unreadable_files_are_left_out_with_one_warning(tmp_path):
    for i in range(3):
        write_photo(tmp_path / "a" / f"{i}.jpg", asym_picture())
    (tmp_path / "a" / "1b.jpg").write_text("text named .jpg")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), np.uint8))
    data = write_photo(tmp_path / "a" / "2.jpg", noise).read_bytes()
    (tmp_path / "a" / "2.jpg").write_bytes(data[: len(data) // 2])  # header reads, pixels do not
    write_photo(tmp_path / "b" / "x.jpg", asym_picture(), 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = uk.image_dataset_from_directory(tmp_path, shuffle=False, image_size=(32, 48), batch_size=8, verbose=False)
    assert len(caught) == 1 and "left out 1 unreadable" in str(caught[0].message) and "1b.jpg" in str(caught[0].message)
    assert [os.path.basename(p) for p in ds.file_paths] == ["0.jpg", "1.jpg", "2.jpg", "x.jpg"]
    assert [os.path.basename(p) for p, _ in ds.unreadable] == ["1b.jpg"]
    with pytest.warns(UserWarning, match="2.jpg could not be decoded"):
        x, y = ds[0]
    assert x.shape == (4, 32, 48, 3) and y.tolist() == [0, 0, 1, 1]  # 2.jpg's slot: the next readable (x.jpg)
    assert all(looks_upright(Image.fromarray(im.astype(np.uint8))) for im in x)
    with pytest.raises(UprightError, match="1 unreadable"):
        uk.image_dataset_from_directory(tmp_path, shuffle=False, verbose=False, on_error="raise")


def test_arguments_are_checked_as_keras_does(tmp_path):
    write_photo(tmp_path / "a" / "0.jpg", asym_picture())
    cases = [({"interpolation": "lanczos5"}, "Pillow"), ({"validation_split": 0.2, "subset": "training"}, "seed"),
             ({"validation_split": 0.2}, "inversely"), ({"format": "grain"}, "pydataset"),
             ({"label_mode": "binary"}, "exactly 2"), ({"labels": "folders"}, "list/tuple"),
             ({"color_mode": "cmyk"}, "color_mode"), ({"crop_to_aspect_ratio": True, "pad_to_aspect_ratio": True}, "Only one"),
             ({"class_names": ["zebra"]}, "did not match"), ({"labels": [0, 1]}, "lengths")]
    for kw, words in cases:
        with pytest.raises(ValueError, match=words):
            uk.image_dataset_from_directory(tmp_path, verbose=False, **kw)
