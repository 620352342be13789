"""upright inside a Keras 3 pipeline: `image_dataset_from_directory`, a drop-in for Keras' own.

Keras' `keras.utils.image_dataset_from_directory` decodes with `tf.io.decode_image`, which ignores
the EXIF orientation tag: a phone photo stored sideways reaches the network sideways. This one
takes the same arguments, defaults and return, and reads every picture through the one door
(`upright.imaging`): upright (EXIF, XMP, HEIF), colour-managed to sRGB, HEIC included, bombs
refused, JPEGs decoded in the DCT domain near the target size.

Same as Keras (its keras/src/utils/image_dataset_utils.py and dataset_utils.py, Keras 3.15): the
file list (class folders sorted, hidden ones left out, files walked and sorted as Keras walks them),
the global shuffle by `seed`, the training/validation split, the labels and their encodings, the
shuffle buffer (batch_size x 8) of the `tf.data` pipeline, `class_names` and `file_paths` on the
result. So a folder of Keras' formats gives Keras' `file_paths` for the same seed, less any
unreadable file.

Different, on purpose:
- upright's extensions (HEIC/HEIF, AVIF, WebP, TIFF besides Keras' JPEG, PNG, BMP, GIF);
- unreadable files are found before the first epoch by a header check and left out, with one
  warning listing them (`.unreadable` on the result); the split is made first, so the two subsets
  are Keras' own. A file whose header reads but whose pixels do not is replaced, with a warning, by
  the next readable sample of its subset. `on_error="raise"` raises instead;
- resizing is Pillow's (antialiased when shrinking), so `interpolation` is one of bilinear, nearest,
  bicubic, area (Pillow's box) and lanczos3; pixels are upright RGB composited on white, so "rgba"
  has an opaque alpha channel;
- symlink loops are not followed (follow_links=True);
- without TensorFlow (`format="tf"`, the default) or with `format="pydataset"` the result is a
  `keras.utils.PyDataset` of NumPy batches (reshuffled each epoch when `shuffle`), which
  `model.fit` takes on every backend.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .errors import UnreadableImage, UprightError
from .files import IMAGE_EXTENSIONS
from .imaging import open_upright
from .loader_checks import check_headers, next_readable
from .parallel import default_workers

try:
    import keras  # Keras 3 (absolute import: this module is upright.keras)
except ImportError as exc:  # pragma: no cover - keras is in [keras] and [dev]
    raise ImportError("upright.keras needs Keras 3: pip install 'upright[keras]' (and a backend: "
                      "TensorFlow, torch or JAX)") from exc

__all__ = ["ALLOWLIST_FORMATS", "image_dataset_from_directory", "index_directory", "split"]

#: The extensions read (lower case): upright's, a superset of Keras' (.bmp .gif .jpeg .jpg .png).
ALLOWLIST_FORMATS = tuple(sorted(IMAGE_EXTENSIONS))
FILTERS = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST,
           "bicubic": Image.Resampling.BICUBIC, "area": Image.Resampling.BOX,
           "lanczos3": Image.Resampling.LANCZOS}
KERAS_ONLY_FILTERS = ("lanczos5", "gaussian", "mitchellcubic")  # tf.image.resize has them, Pillow not
CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
LABEL_MODES = ("int", "categorical", "binary", None)
FORMATS = ("tf", "pydataset")
ON_ERROR = ("skip", "raise")


def image_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None,
                                 color_mode="rgb", batch_size=32, image_size=(256, 256), shuffle=True,
                                 seed=None, validation_split=None, subset=None, interpolation="bilinear",
                                 follow_links=False, crop_to_aspect_ratio=False, pad_to_aspect_ratio=False,
                                 data_format=None, format="tf", verbose=True, *, on_error="skip"):
    """Keras' `image_dataset_from_directory`, every image read upright (module docstring).

    Returns a `tf.data.Dataset` when TensorFlow is installed (and `format="tf"`), else a
    `keras.utils.PyDataset`; with `subset="both"`, a list [training, validation]. Each yields
    `(images, labels)` (images alone when `label_mode` is None): images float32
    (batch, height, width, channels) in 0-255 (channels first with data_format="channels_first"),
    labels int32 (batch,), float32 (batch, 1) for "binary", float32 (batch, classes) for
    "categorical". Attributes: `class_names`, `file_paths` and `unreadable` [(path, reason)].
    """
    labels, label_mode, image_size, interpolation = _check_arguments(
        labels, label_mode, class_names, color_mode, image_size, interpolation, format, on_error,
        crop_to_aspect_ratio, pad_to_aspect_ratio)
    _check_split(validation_split, subset, shuffle, seed)
    if seed is None:
        seed = np.random.randint(1e6)
    paths, labels, class_names = index_directory(directory, labels, ALLOWLIST_FORMATS, class_names, shuffle,
                                                 seed, follow_links, verbose)
    if label_mode == "binary" and len(class_names) != 2:
        raise ValueError('When passing `label_mode="binary"`, there must be exactly 2 '
                         f"class_names. Received: class_names={class_names}")
    reader = Reader(tuple(image_size), CHANNELS[color_mode], interpolation, bool(crop_to_aspect_ratio),
                    bool(pad_to_aspect_ratio), data_format or keras.config.image_data_format())
    sizes, unreadable = check_headers(paths, directory, "upright.keras", on_error, stacklevel=2)
    make = _tf_dataset if format == "tf" and importlib.util.find_spec("tensorflow") else _py_dataset
    encoded = encode_labels(labels, label_mode, len(class_names) if class_names else 0)
    subsets = ("training", "validation") if subset == "both" else (subset,)
    out = []
    for name in subsets:
        idx, _ = split(list(range(len(paths))), None, validation_split, name, verbose)
        idx = [i for i in idx if paths[i] in sizes]
        if not idx:
            kind = {"training": "training images", "validation": "validation images"}.get(name, "images")
            raise ValueError(f"No {kind} found in directory {directory}. Allowed formats: {ALLOWLIST_FORMATS}")
        samples = Samples([paths[i] for i in idx], None if encoded is None else encoded[idx],
                          [sizes[paths[i]] for i in idx], reader, on_error)
        ds = make(samples, batch_size, shuffle and not (subset == "both" and name == "validation"), seed)
        ds.class_names, ds.file_paths, ds.unreadable = class_names, samples.paths, unreadable
        out.append(ds)
    return out if subset == "both" else out[0]


def _check_arguments(labels, label_mode, class_names, color_mode, image_size, interpolation, format, on_error,
                     crop, pad):
    """Keras' argument checks (same messages), plus upright's own: interpolation, format, on_error."""
    if labels not in ("inferred", None):
        if not isinstance(labels, (list, tuple, np.ndarray)):
            raise ValueError("`labels` argument should be a list/tuple of integer labels, of the same size as "
                             "the number of image files in the target directory. If you wish to infer the "
                             'labels from the subdirectory names in the target directory, pass `labels="inferred"`. '
                             "If you wish to get a dataset that only contains images (no labels), pass "
                             f"`labels=None`. Received: labels={labels}")
        if class_names:
            raise ValueError('You can only pass `class_names` if `labels="inferred"`. '
                             f"Received: labels={labels}, and class_names={class_names}")
    if label_mode not in LABEL_MODES:
        raise ValueError('`label_mode` argument must be one of "int", "categorical", "binary", '
                         f"or None. Received: label_mode={label_mode}")
    if labels is None or label_mode is None:
        labels = label_mode = None
    if color_mode not in CHANNELS:
        raise ValueError(f'`color_mode` must be one of {{"rgb", "rgba", "grayscale"}}. Received: color_mode={color_mode}')
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    elif not isinstance(image_size, (list, tuple)) or not len(image_size) == 2:
        raise ValueError(f"Invalid `image_size` value. Expected a tuple of 2 integers. Received: image_size={image_size}")
    interpolation = str(interpolation).lower()
    if interpolation not in FILTERS:
        extra = (f" ({interpolation} is tf.image.resize's; upright.keras resizes with Pillow)"
                 if interpolation in KERAS_ONLY_FILTERS else "")
        raise ValueError(f"Argument `interpolation` should be one of {tuple(FILTERS)}{extra}. "
                         f"Received: interpolation={interpolation}")
    if crop and pad:
        raise ValueError("Only one of `pad_to_aspect_ratio`, `crop_to_aspect_ratio` can be set to `True`.")
    if format not in FORMATS:
        raise ValueError(f'`format` should be "tf" (a tf.data.Dataset, or a keras.utils.PyDataset without '
                         f'TensorFlow) or "pydataset". Received: format={format}')
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
    return labels, label_mode, image_size, interpolation


def _check_split(validation_split, subset, shuffle, seed) -> None:
    """Keras' dataset_utils.check_validation_split_arg (same messages)."""
    if validation_split and not 0 < validation_split < 1:
        raise ValueError(f"`validation_split` must be between 0 and 1, received: {validation_split}")
    if (validation_split or subset) and not (validation_split and subset):
        raise ValueError("If `subset` is set, `validation_split` must be set, and inversely.")
    if subset not in ("training", "validation", "both", None):
        raise ValueError(f'`subset` must be either "training", "validation" or "both", received: {subset}')
    if validation_split and shuffle and seed is None:
        raise ValueError("If using `validation_split` and shuffling the data, you must provide a `seed` "
                         "argument, to make sure that there is no overlap between the training and "
                         "validation subset.")


def index_directory(directory, labels, formats, class_names=None, shuffle=True, seed=None, follow_links=False,
                    verbose=True):
    """(file_paths, labels, class_names) in Keras' order (dataset_utils.index_directory): class
    folders sorted (or in `class_names` order), each walked with its folders sorted by path and
    their files by name, then all shuffled by `seed`."""
    directory = os.fspath(directory)
    if labels == "inferred":
        subdirs = [d for d in sorted(os.listdir(directory))
                   if os.path.isdir(os.path.join(directory, d)) and not d.startswith(".")]
        if class_names is not None:
            if not set(class_names).issubset(set(subdirs)):
                raise ValueError("The `class_names` passed did not match the names of the subdirectories of "
                                 f"the target directory. Expected: {subdirs} (or a subset of it), but received: "
                                 f"class_names={class_names}")
            subdirs = list(class_names)
    else:
        subdirs = [""]
        if class_names is not None:
            raise ValueError("When `labels=None` (no labels), argument `class_names` cannot be specified."
                             if labels is None else "When argument `labels` is specified, argument "
                             "`class_names` cannot be specified (the `class_names` will be the sorted list of labels).")
    filenames, found = [], []
    for index, sub in enumerate(subdirs):
        folder = os.path.join(directory, sub)
        for root, fname in _walk(folder, follow_links, tuple(formats)):
            filenames.append(os.path.join(os.path.basename(folder), os.path.relpath(os.path.join(root, fname), folder)))
            found.append(index)
    if labels == "inferred":
        labels, class_names = np.array(found, dtype="int32"), subdirs
    elif labels is None:
        class_names = None
    else:
        if len(labels) != len(filenames):
            raise ValueError("Expected the lengths of `labels` to match the number of files in the target "
                             f"directory. len(labels) is {len(labels)} while we found {len(filenames)} files "
                             f"in directory {directory}.")
        labels, class_names = np.asarray(labels), [str(v) for v in sorted(set(labels))]
    if verbose:
        print(f"Found {len(filenames)} files." if labels is None
              else f"Found {len(filenames)} files belonging to {len(class_names)} classes.")
    file_paths = [os.path.join(directory, f) for f in filenames]
    if shuffle:  # Keras: one RandomState(seed) shuffle for the paths, another for the labels
        np.random.RandomState(seed).shuffle(file_paths)
        if labels is not None:
            np.random.RandomState(seed).shuffle(labels)
    return file_paths, labels, class_names


def _walk(folder: str, follow_links: bool, formats: tuple[str, ...]):
    """(root, file name) as Keras' iter_valid_files yields them: walked folders sorted by path,
    files by name; a followed link to a folder already walked (a loop) is not entered."""
    seen: set[str] = set()
    walked = []
    for root, dirs, files in os.walk(folder, followlinks=follow_links):
        seen.add(os.path.realpath(root))
        if follow_links:  # sorted first, so which of two links to one folder is walked does not vary
            dirs[:] = [d for d in sorted(dirs) if os.path.realpath(os.path.join(root, d)) not in seen]
            seen.update(os.path.realpath(os.path.join(root, d)) for d in dirs)
        walked.append((root, files))
    for root, files in sorted(walked, key=lambda x: x[0]):
        for fname in sorted(files):
            if fname.lower().endswith(formats):
                yield root, fname


def split(samples, labels, validation_split, subset, verbose=True):
    """Keras' get_training_or_validation_split: the last int(validation_split x n) are validation."""
    if not validation_split:
        return samples, labels
    n_val = int(validation_split * len(samples))
    n_train = len(samples) - n_val
    if subset == "training":
        if verbose:
            print(f"Using {n_train} files for training.")
        return samples[:n_train], None if labels is None else labels[:n_train]
    if subset == "validation":
        if verbose:
            print(f"Using {n_val} files for validation.")
        return samples[n_train:], None if labels is None else labels[n_train:]
    raise ValueError(f'`subset` must be either "training" or "validation", received: {subset}')


def encode_labels(labels, label_mode, num_classes: int) -> np.ndarray | None:
    """Keras' label encodings: int32 (n,); "binary" float32 (n, 1); "categorical" one-hot float32 (n, C)."""
    if label_mode is None or labels is None:
        return None
    y = np.asarray(labels)
    if label_mode == "binary":
        return y.astype("float32")[:, None]
    if label_mode == "categorical":  # tf.one_hot: an index outside [0, C) is all zeros
        return (y[:, None] == np.arange(num_classes)[None]).astype("float32")
    return y.astype("int32") if y.dtype.kind in "iub" else y


@dataclass(frozen=True)
class Reader:
    """One path -> float32 image array, the way the dataset's arguments say."""

    image_size: tuple[int, int]  # (height, width)
    channels: int
    interpolation: str
    crop: bool
    pad: bool
    data_format: str

    def __call__(self, path: str, short_side: int) -> np.ndarray:
        h, w = self.image_size
        img = open_upright(path, size=min(max(h, w), short_side))  # never upsampled before the resize
        img = img.convert({1: "L", 3: "RGB", 4: "RGBA"}[self.channels])
        a = np.asarray(self.resize(img), dtype=np.float32)
        a = a[..., None] if a.ndim == 2 else a
        return np.ascontiguousarray(a.transpose(2, 0, 1)) if self.data_format == "channels_first" else a

    def resize(self, img: Image.Image) -> Image.Image:
        """Stretch to (height, width); or crop the largest centred window of that aspect first
        (Keras' smart_resize); or fit inside and pad with zeros (tf.image.resize_with_pad)."""
        th, tw = self.image_size
        w, h = img.size
        f = FILTERS[self.interpolation]
        if self.crop:
            ch, cw = max(min(h, int(w * th / tw)), 1), max(min(w, int(h * tw / th)), 1)
            y0, x0 = int((h - ch) / 2), int((w - cw) / 2)
            return img.resize((tw, th), f, box=(x0, y0, x0 + cw, y0 + ch))
        if self.pad:
            ratio = max(w / tw, h / th)
            rw, rh = max(1, math.floor(w / ratio)), max(1, math.floor(h / ratio))
            canvas = Image.new(img.mode, (tw, th))
            canvas.paste(img.resize((rw, rh), f), (max(0, math.floor((tw - w / ratio) / 2)),
                                                   max(0, math.floor((th - h / ratio) / 2))))
            return canvas
        return img.resize((tw, th), f)


class Samples:
    """The files of one subset, their encoded labels, and the read that never stops an epoch."""

    def __init__(self, paths: list[str], labels: np.ndarray | None, sizes: list[int], reader: Reader,
                 on_error: str):
        self.paths, self.labels, self.sizes, self.reader, self.on_error = paths, labels, sizes, reader, on_error
        self._warned: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> tuple[np.ndarray, int]:
        """(image, index read): the sample at `index`, or when its pixels cannot be decoded the
        next readable one (one warning per file), so labels stay paired with their images."""
        got = next_readable(index, len(self.paths), lambda i: self.reader(self.paths[i], self.sizes[i]),
                            self.paths.__getitem__, who="upright.keras", on_error=self.on_error,
                            warned=self._warned, errors=(UnreadableImage,), stacklevel=2)
        if got is None:
            raise UprightError(f"no sample of {len(self.paths)} could be decoded")
        return got

    def sample(self, index: int):
        """(image, label), or the image alone without labels."""
        x, i = self.image(index)
        return x if self.labels is None else (x, self.labels[i])


class UprightPyDataset(keras.utils.PyDataset):
    """Batches of (images, labels) as NumPy arrays for `model.fit` on any backend; samples
    reshuffled each epoch (seeded) when `shuffle`. Without batch_size, one sample per index."""

    def __init__(self, samples: Samples, batch_size: int | None, shuffle: bool, seed: int):
        super().__init__(workers=default_workers(), use_multiprocessing=False)
        self.samples, self.batch_size, self.shuffle = samples, batch_size, shuffle
        self._rng = np.random.RandomState(seed)
        self.order = np.arange(len(samples))
        if shuffle:
            self._rng.shuffle(self.order)

    def __len__(self) -> int:
        return len(self.samples) if self.batch_size is None else math.ceil(len(self.samples) / self.batch_size)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        if self.batch_size is None:
            return self.samples.sample(self.order[index])
        got = [self.samples.sample(i) for i in self.order[index * self.batch_size:(index + 1) * self.batch_size]]
        if self.samples.labels is None:
            return np.stack(got)
        return np.stack([x for x, _ in got]), np.stack([y for _, y in got])

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self._rng.shuffle(self.order)


def _py_dataset(samples: Samples, batch_size, shuffle: bool, seed: int) -> UprightPyDataset:
    return UprightPyDataset(samples, batch_size, shuffle, seed)


def _tf_dataset(samples: Samples, batch_size, shuffle: bool, seed: int):
    """Keras' pipeline: sample indices, shuffled in a buffer of batch_size x 8 (seeded), each read
    by upright in a tf.numpy_function, batched and prefetched."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(np.arange(len(samples), dtype=np.int64))
    if shuffle:
        ds = ds.shuffle(buffer_size=batch_size * 8 if batch_size is not None else 1024, seed=seed)
    x_shape = samples.reader.image_size + (samples.reader.channels,)
    if samples.reader.data_format == "channels_first":
        x_shape = (samples.reader.channels,) + samples.reader.image_size
    if samples.labels is None:
        def read(i):
            x = tf.numpy_function(lambda j: samples.image(j)[0], [i], tf.float32)
            x.set_shape(x_shape)
            return x
    else:
        y_type = tf.as_dtype(samples.labels.dtype)

        def read(i):
            x, y = tf.numpy_function(samples.sample, [i], (tf.float32, y_type))
            x.set_shape(x_shape)
            y.set_shape(samples.labels.shape[1:])
            return x, y
    ds = ds.map(read, num_parallel_calls=tf.data.AUTOTUNE)
    if batch_size is not None:
        ds = ds.batch(batch_size)
    return ds.prefetch(tf.data.AUTOTUNE)
