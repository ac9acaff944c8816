"""A folder of images plus a label file, read as a `tf.data` pipeline of (image, label).

The folder looks like this (CelebA's subset in `../shared/data/celeba` is one)::

    folder/
        labels.csv        # a header row, then one row per image: file name, integer label
        images/           # optional: without it, file names are relative to `folder` itself
            000001.jpg
            ...

File names in the label file are relative to `folder/images/` when that subfolder exists, else
to `folder`. Columns after the second are ignored. Images are decoded by TensorFlow (JPEG, PNG,
GIF, BMP), cropped to their central square (for a non-square `image_size`: the largest central
crop of that aspect ratio) and resized, antialiased, to `image_size`.

Train/test split: a folder usually comes as one list of images, so the split is ours. The rows
are permuted by `numpy.random.default_rng(SPLIT_SEED)`; the first `round(rows * TEST_FRACTION)`
rows of that permutation are the test split, the rest the training split, and each split keeps
the label file's order. The same label file therefore gives the same split on every run and
machine (10,000 rows: 8,000 train, 2,000 test).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

LABELS_FILE = "labels.csv"
IMAGES_SUBFOLDER = "images"
SPLITS = ("train", "test", "all")
# The seeded split, in one place: change either and every train/test split changes.
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def scale_pixels(images, value_range: Sequence[float] = (0.0, 1.0)):
    """uint8 pixels [0, 255] -> float32 in `value_range`."""
    low, high = value_range
    return tf.cast(images, tf.float32) * ((high - low) / 255.0) + low


def center_crop_resized(
    image, image_size: Sequence[int] = (64, 64), value_range: Sequence[float] = (0.0, 1.0)
) -> tf.Tensor:
    """An image's central square, resized (antialiased) to `image_size`, as float32 in `value_range`.

    Args:
        image: (height, width, channels) pixels in [0, 255], any dtype (decoded JPEG/PNG: uint8).
        image_size: (height, width) of the result. For a non-square size the crop is the largest
            central box of that aspect ratio instead of a square, so faces are never stretched.
        value_range: the pixel range to scale to (the model's `config.value_range`).
    """
    target_height, target_width = image_size
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    # As wide as the image unless that would make the crop taller than the image.
    crop_width = tf.minimum(width, height * target_width // target_height)
    crop_height = crop_width * target_height // target_width
    image = tf.image.crop_to_bounding_box(
        image, (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width
    )
    image = tf.image.resize(tf.cast(image, tf.float32), (target_height, target_width), antialias=True)
    # Antialiased resizing overshoots a little at sharp edges: clip before scaling.
    return scale_pixels(tf.clip_by_value(image, 0.0, 255.0), value_range)


def read_labels(folder: str | os.PathLike, labels_file: str = LABELS_FILE) -> tuple[list[str], np.ndarray]:
    """Every row of a folder's label file: (file names, int64 labels), in the file's order.

    Args:
        folder: the dataset folder.
        labels_file: the label file, relative to `folder` (or an absolute path).

    Raises:
        FileNotFoundError: no such folder, or no label file in it.
        ValueError: the label file lists no image, a row has fewer than two columns, or a label is
            not an integer; the message names the file and the line.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"image folder {folder} does not exist")
    path = os.path.join(folder, labels_file)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image folder {folder} has no label file {labels_file} ({path} is missing)")
    names, labels = [], []
    with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheets write a BOM
        rows = csv.reader(handle)
        next(rows, None)  # the header
        for row in rows:
            line = rows.line_num
            if not any(field.strip() for field in row):
                continue
            if len(row) < 2:
                raise ValueError(f"{path}, line {line}: expected 'file name,label', got {','.join(row)!r}")
            name, label = row[0].strip(), row[1].strip()
            try:
                labels.append(int(label))
            except ValueError:
                raise ValueError(f"{path}, line {line}: the label of {name} is {label!r}, not an integer") from None
            names.append(name)
    if not names:
        raise ValueError(f"{path} lists no images (a header row, then one 'file name,label' row per image)")
    return names, np.array(labels, dtype=np.int64)


def split_rows(count: int, split: str, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED) -> np.ndarray:
    """The row indices (ascending) of `split` among `count` rows; see the module's split rule.

    Args:
        count: how many rows the label file has.
        split: "train", "test" or "all".
        test_fraction: the share of rows in the test split, strictly between 0 and 1.
        seed: the seed of the permutation.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    if split == "all":
        return np.arange(count)
    permutation = np.random.default_rng(seed).permutation(count)
    test_count = round(count * test_fraction)
    rows = permutation[:test_count] if split == "test" else permutation[test_count:]
    return np.sort(rows)


def image_folder_files(
    folder: str | os.PathLike,
    split: str = "all",
    labels_file: str = LABELS_FILE,
    test_fraction: float = TEST_FRACTION,
    seed: int = SPLIT_SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """The image paths and int64 labels of one split of a folder, without reading any image.

    Arguments as `image_folder`. Every listed image of the split is checked to exist.

    Raises:
        FileNotFoundError: no folder, no label file, or a listed image is missing (the first one
            named, with how many are missing).
        ValueError: a malformed label file (see `read_labels`), or the split would be empty.
    """
    folder = os.fspath(folder)
    names, labels = read_labels(folder, labels_file)
    rows = split_rows(len(names), split, test_fraction, seed)
    if len(rows) == 0:
        raise ValueError(f"split {split!r} of {folder} is empty ({len(names)} images, test_fraction {test_fraction})")
    images = os.path.join(folder, IMAGES_SUBFOLDER)
    root = images if os.path.isdir(images) else folder
    paths = np.array([os.path.join(root, names[row]) for row in rows])
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(
            f"{missing[0]} is listed in {os.path.join(folder, labels_file)} but does not exist "
            f"({len(missing)} listed images of split {split!r} missing in all)"
        )
    return paths, labels[rows]


def image_folder(
    folder: str | os.PathLike,
    split: str = "all",
    labels_file: str = LABELS_FILE,
    image_size: Sequence[int] = (64, 64),
    value_range: Sequence[float] = (0.0, 1.0),
    channels: int = 3,
    test_fraction: float = TEST_FRACTION,
    seed: int = SPLIT_SEED,
    limit: int | None = None,
) -> tf.data.Dataset:
    """A folder of images plus a label file as (float32 image in `value_range`, int64 label).

    Images are read and decoded lazily, as the dataset is iterated; only their existence is
    checked up front. The dataset's `cardinality()` is its size.

    Args:
        folder: the dataset folder: a label file and the images (in `images/` or beside it).
        split: "train", "test" (the seeded split of the module docstring) or "all" rows.
        labels_file: the label file (CSV with a header; file name, integer label), relative to
            `folder`.
        image_size: (height, width) of the images, after cropping the central square.
        value_range: the pixel range to scale to (the model's `config.value_range`).
        channels: 3 (RGB) or 1 (grayscale); images are converted to it.
        test_fraction: the share of rows in the test split.
        seed: the seed of the split's permutation.
        limit: keep only the first `limit` images of the split (small real slices for tests).

    Raises:
        FileNotFoundError, ValueError: as `image_folder_files`; the message names the file.

    Example:
        >>> faces = image_folder("../shared/data/celeba", "test", limit=8)
        >>> image, label = next(iter(faces))  # (64, 64, 3) float32 in [0, 1], int64
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    paths, labels = image_folder_files(folder, split, labels_file, test_fraction, seed)
    if limit is not None:
        paths, labels = paths[:limit], labels[:limit]

    def read(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
        return center_crop_resized(image, image_size, value_range), label

    return tf.data.Dataset.from_tensor_slices((paths, labels)).map(read, num_parallel_calls=tf.data.AUTOTUNE)


__all__ = [
    "IMAGES_SUBFOLDER",
    "LABELS_FILE",
    "SPLIT_SEED",
    "TEST_FRACTION",
    "center_crop_resized",
    "image_folder",
    "image_folder_files",
    "read_labels",
    "scale_pixels",
    "split_rows",
]
