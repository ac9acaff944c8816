"""Datasets as `tf.data` pipelines of (image in the model's value range, label).

* `fashion_mnist` and `mnist` read IDX files from a folder (for Fashion-MNIST, Debian's
  `dataset-fashion-mnist` at `/usr/share/datasets/fashion-mnist` by default) or come from
  tensorflow-datasets;
* `celeb_a` comes from tensorflow-datasets as 64x64x3 faces labelled by gender (`Male`).

tensorflow-datasets needs a network the first time; offline, a missing dataset raises
`DatasetUnavailableError` saying how to get it, instead of a deep download traceback.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from lqvae_tf.data.idx import find_idx_file, read_idx

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
SOURCES = ("auto", "idx", "tfds")
SPLITS = ("train", "test")
_IDX_PREFIX = {"train": "train", "test": "t10k"}
CELEB_A_SIZE = 64
CELEB_A_CROP = 178  # the aligned faces are 218x178: crop the central 178x178 square


class DatasetUnavailableError(RuntimeError):
    """The dataset is not on this machine and could not be fetched."""


def scale_pixels(images, value_range: Sequence[float] = (0.0, 1.0)):
    """uint8 pixels [0, 255] -> float32 in `value_range`."""
    low, high = value_range
    return tf.cast(images, tf.float32) * ((high - low) / 255.0) + low


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _limited(dataset: tf.data.Dataset, limit: int | None) -> tf.data.Dataset:
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        dataset = dataset.take(limit)
    return dataset


def load_idx_arrays(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28, 1), labels int64 (N,)) of one split of an IDX folder."""
    _check_split(split)
    prefix = _IDX_PREFIX[split]
    paths = [find_idx_file(folder, f"{prefix}-{kind}-idx{dims}-ubyte") for kind, dims in (("images", 3), ("labels", 1))]
    if None in paths:
        raise DatasetUnavailableError(f"no {prefix}-images/-labels IDX files in {folder}")
    images, labels = (read_idx(path) for path in paths)
    if images.ndim != 3 or len(images) != len(labels):
        raise ValueError(f"IDX files in {folder} disagree: images {images.shape}, labels {labels.shape}")
    return images[..., None], labels.astype(np.int64)


TFDS_HOST = ("storage.googleapis.com", 443)  # where tensorflow-datasets downloads from
NETWORK_TIMEOUT_S = 5.0


def network_reachable(address: tuple[str, int] = TFDS_HOST, timeout: float = NETWORK_TIMEOUT_S) -> bool:
    """Whether a TCP connection to `address` opens within `timeout` seconds."""
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def _tfds_load(name: str, split: str, data_dir: str | None, download: bool, how_to_get: str):
    """`tfds.load`, preferring data already prepared; offline, fails fast with `how_to_get`."""
    import tensorflow_datasets as tfds

    def attempt(allow_download: bool):
        return tfds.load(
            name,
            split=split,
            data_dir=data_dir,
            download=allow_download,
            as_supervised=False,
            shuffle_files=False,
        )

    try:
        return attempt(False)
    except Exception as error:  # tfds raises several types for "not prepared"
        missing = error
    if not download:
        raise DatasetUnavailableError(
            f"tensorflow-datasets has no prepared {name!r} ({missing}). {how_to_get}"
        ) from missing
    if not network_reachable():
        raise DatasetUnavailableError(
            f"{name!r} is not prepared and there is no network to download it "
            f"({TFDS_HOST[0]} unreachable). {how_to_get}"
        )
    try:
        return attempt(True)
    except Exception as error:  # network failures surface as many types
        raise DatasetUnavailableError(
            f"tensorflow-datasets could not download {name!r} ({type(error).__name__}: {error}). {how_to_get}"
        ) from error


def _digits(
    name: str,
    default_folder: str | None,
    how_to_get: str,
    split: str,
    value_range: Sequence[float],
    source: str,
    data_dir: str | None,
    download: bool,
    limit: int | None,
) -> tf.data.Dataset:
    _check_split(split)
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    # "auto": a folder the user names is read as IDX; else the default folder where it has the
    # files; else tensorflow-datasets. A named folder never silently turns into a download.
    folder = data_dir or default_folder
    use_idx = source == "idx" or (
        source == "auto"
        and (data_dir is not None or (folder is not None and find_idx_file(folder, "t10k-labels-idx1-ubyte")))
    )
    if use_idx:
        if folder is None:
            raise DatasetUnavailableError(f"no IDX folder given for {name}. {how_to_get}")
        try:
            images, labels = load_idx_arrays(folder, split)
        except DatasetUnavailableError as error:
            raise DatasetUnavailableError(f"{error}. {how_to_get}") from None
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    else:
        tfds_dir = data_dir if source == "tfds" else None
        dataset = _tfds_load(name, split, tfds_dir, download, how_to_get)
        dataset = _limited(dataset, limit).map(lambda ex: (ex["image"], ex["label"]))
    return dataset.map(
        lambda image, label: (scale_pixels(image, value_range), tf.cast(label, tf.int64)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def fashion_mnist(
    split: str = "train",
    value_range: Sequence[float] = (0.0, 1.0),
    source: str = "auto",
    data_dir: str | None = None,
    download: bool = True,
    limit: int | None = None,
) -> tf.data.Dataset:
    """Fashion-MNIST as (28x28x1 float32 image in `value_range`, int64 label 0-9).

    Args:
        split: "train" (60k) or "test" (10k).
        value_range: the pixel range to scale to (the model's `config.value_range`).
        source: "idx" (a folder of IDX files), "tfds", or "auto" (IDX where the folder has them,
            else tensorflow-datasets).
        data_dir: the IDX folder (default: Debian's `/usr/share/datasets/fashion-mnist`), or
            tensorflow-datasets' data_dir when `source="tfds"`.
        download: let tensorflow-datasets download when the data is missing.
        limit: keep only the first `limit` examples (small real slices for tests).

    Raises:
        DatasetUnavailableError: the data is not here and cannot be fetched; says how to get it.
    """
    how = (
        "Install Debian's package (apt-get install dataset-fashion-mnist), point data_dir at a "
        "folder of Fashion-MNIST IDX files, or run once with a network so tensorflow-datasets "
        "can download it."
    )
    return _digits("fashion_mnist", DEBIAN_FASHION_MNIST, how, split, value_range, source, data_dir, download, limit)


def mnist(
    split: str = "train",
    value_range: Sequence[float] = (0.0, 1.0),
    source: str = "auto",
    data_dir: str | None = None,
    download: bool = True,
    limit: int | None = None,
) -> tf.data.Dataset:
    """MNIST as (28x28x1 float32 image in `value_range`, int64 label 0-9).

    Same arguments as `fashion_mnist`; with no `data_dir` it comes from tensorflow-datasets.
    """
    how = (
        "Run once with a network so tensorflow-datasets can download it, or point data_dir at a "
        "folder of MNIST IDX files (train-images-idx3-ubyte[.gz], ...)."
    )
    return _digits("mnist", None, how, split, value_range, source, data_dir, download, limit)


def celeb_a_image(image, value_range: Sequence[float] = (0.0, 1.0)):
    """An aligned 218x178 CelebA face -> central square, resized to 64x64, in `value_range`."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    crop = tf.minimum(tf.minimum(height, width), CELEB_A_CROP)
    image = tf.image.crop_to_bounding_box(image, (height - crop) // 2, (width - crop) // 2, crop, crop)
    image = tf.image.resize(tf.cast(image, tf.float32), (CELEB_A_SIZE, CELEB_A_SIZE), antialias=True)
    low, high = value_range
    return tf.clip_by_value(image, 0.0, 255.0) * ((high - low) / 255.0) + low


def celeb_a(
    split: str = "train",
    value_range: Sequence[float] = (0.0, 1.0),
    data_dir: str | None = None,
    download: bool = True,
    limit: int | None = None,
) -> tf.data.Dataset:
    """CelebA gender as (64x64x3 float32 face in `value_range`, int64 label: 1 male, 0 female).

    Args:
        split: "train" or "test".
        data_dir: tensorflow-datasets' data_dir.
        download: let tensorflow-datasets download when the data is missing.
        limit: keep only the first `limit` examples.
    """
    _check_split(split)
    how = "Run once with a network so tensorflow-datasets can download and prepare 'celeb_a'."
    dataset = _limited(_tfds_load("celeb_a", split, data_dir, download, how), limit)
    return dataset.map(
        lambda ex: (celeb_a_image(ex["image"], value_range), tf.cast(ex["attributes"]["Male"], tf.int64)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


LOADERS = {"fashion_mnist": fashion_mnist, "mnist": mnist, "celeb_a": celeb_a}


def load(name: str, split: str = "train", **kwargs) -> tf.data.Dataset:
    """The named dataset (`fashion_mnist`, `mnist`, `celeb_a`); kwargs as that loader's."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(LOADERS)}")
    return LOADERS[name](split, **kwargs)


def batched(
    dataset: tf.data.Dataset, batch_size: int, shuffle: bool = False, seed: int = 0, buffer_size: int = 10_000
) -> tf.data.Dataset:
    """Shuffled (seeded, reshuffled each epoch) and batched, with prefetch."""
    if shuffle:
        dataset = dataset.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def take_images(dataset: tf.data.Dataset, count: int) -> np.ndarray:
    """The first `count` images of an unbatched (image, label) dataset as one numpy array."""
    return np.stack([image for image, _ in dataset.take(count).as_numpy_iterator()])


__all__ = [
    "DEBIAN_FASHION_MNIST",
    "DatasetUnavailableError",
    "batched",
    "celeb_a",
    "celeb_a_image",
    "fashion_mnist",
    "load",
    "load_idx_arrays",
    "mnist",
    "scale_pixels",
    "take_images",
]
