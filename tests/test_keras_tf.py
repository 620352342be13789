"""upright.keras.image_dataset_from_directory with TensorFlow installed: a tf.data.Dataset with Keras'
own file_paths and iteration order for the same seed, the real orientation examples upright where Keras'
loader gives the stored pixels, and model.fit on it. TensorFlow is not in [dev]: `make test-keras-tf`
runs this file in a side venv (UPRIGHT_REQUIRE_TF=1: a missing TensorFlow fails instead of skipping)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from fixtures import (asym_picture, check_upright, keras_tree, looks_upright, orientation_tree, require_module,
                      stripes_picture, tiny_keras_model, write_photo)
from PIL import Image

tf = require_module("tensorflow", "UPRIGHT_REQUIRE_TF", "TensorFlow is not installed (make test-keras-tf runs "
                    "this file in its side venv)")
import keras  # noqa: E402

import upright.keras as uk  # noqa: E402
from upright.imaging import open_upright  # noqa: E402

pytestmark = pytest.mark.slow


def labels_of(ds) -> list[int]:
    return [int(v) for _, y in ds for v in y.numpy()]


def test_a_tf_dataset_with_keras_file_paths_and_order(tmp_path):
    root = keras_tree(tmp_path)
    kw = {"validation_split": 0.25, "subset": "both", "seed": 11, "image_size": (16, 24), "batch_size": 2,
          "verbose": False}
    ours, theirs = uk.image_dataset_from_directory(root, **kw), keras.utils.image_dataset_from_directory(root, **kw)
    for mine, keras_own in zip(ours, theirs):
        assert isinstance(mine, tf.data.Dataset) and mine.element_spec == keras_own.element_spec
        assert mine.file_paths == keras_own.file_paths and mine.class_names == keras_own.class_names
        assert labels_of(mine) == labels_of(keras_own)  # the same shuffle buffer and seed: the same order
    for mode in ("binary", "categorical", None):
        kw = {"label_mode": mode, "class_names": ["a_cat", "c_owl"] if mode == "binary" else None, "seed": 3,
              "verbose": False}
        mine, keras_own = uk.image_dataset_from_directory(root, **kw), keras.utils.image_dataset_from_directory(root, **kw)
        assert mine.element_spec == keras_own.element_spec and mine.file_paths == keras_own.file_paths, mode


def test_orientation_examples_upright_where_keras_gives_stored_pixels(shared_data, tmp_path):
    root, names = orientation_tree(shared_data, tmp_path)
    size = (64, 96)
    kw = {"class_names": ["landscape"], "shuffle": False, "batch_size": 4, "image_size": size, "verbose": False}
    ds = uk.image_dataset_from_directory(root, **kw)
    images = np.concatenate([x.numpy() for x, _ in ds])
    assert images.shape == (9,) + size + (3,) and ds.file_paths == [str(root / "landscape" / n) for n in names[:9]]
    check_upright(images, ds.file_paths, size)
    keras_own = np.concatenate([x.numpy() for x, _ in keras.utils.image_dataset_from_directory(root, **kw)])
    for img, path in zip(keras_own, ds.file_paths):  # the problem this loader solves
        want = np.asarray(open_upright(path, 200).resize(size[::-1], Image.Resampling.BILINEAR), np.float32)
        assert (np.abs(img - want).mean() > 25) == (int(path[-5]) >= 2), path


def test_model_fit_on_the_tf_dataset_and_unreadable_files(tmp_path):
    for label in ("horizontal", "vertical"):
        for i in range(6):
            write_photo(tmp_path / label / f"{i}.jpg", stripes_picture(label, i, 64, 48), 6 if i == 0 else None)
    (tmp_path / "vertical" / "junk.jpg").write_text("text named .jpg")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), np.uint8))
    data = write_photo(tmp_path / "horizontal" / "cut.jpg", noise).read_bytes()
    (tmp_path / "horizontal" / "cut.jpg").write_bytes(data[: len(data) // 2])  # header reads, pixels do not
    with pytest.warns(UserWarning, match="left out 1 unreadable"):
        train, val = uk.image_dataset_from_directory(tmp_path, validation_split=0.25, subset="both", seed=1,
                                                     image_size=(32, 32), batch_size=4, verbose=False)
    assert not any(p.endswith("junk.jpg") for p in train.file_paths + val.file_paths)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cut.jpg: one "could not be decoded" warning, from a tf.data thread
        history = tiny_keras_model((32, 32), 2).fit(train, validation_data=val, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["val_loss"]).all()
    write_photo(tmp_path / "turned" / "a.jpg", asym_picture(), 6)
    x, y = next(iter(uk.image_dataset_from_directory(tmp_path, class_names=["turned"], image_size=(64, 96),
                                                     verbose=False)))
    assert looks_upright(Image.fromarray(x.numpy()[0].astype(np.uint8))) and y.numpy().tolist() == [0]
