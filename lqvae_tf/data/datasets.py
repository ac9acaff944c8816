"""Datasets as `tf.data` pipelines of (image in the model's value range, label).

* `fashion_mnist` and `mnist` read IDX files from a folder or come from tensorflow-datasets.
  The folder is `data_dir`, else the environment variable `LQVAE_FASHION_MNIST_DIR` /
  `LQVAE_MNIST_DIR`, else (Fashion-MNIST only) Debian's `dataset-fashion-mnist` at
  `/usr/share/datasets/fashion-mnist`;
* `celeb_a` gives 64x64x3 faces labelled by gender (`Male`), from a folder of images plus a
  label file (`data_dir` or `LQVAE_CELEBA_DIR`; see `lqvae_tf.data.image_folder`) or from
  tensorflow-datasets.

tensorflow-datasets needs a network the first time; offline, a missing dataset raises
`DatasetUnavailableError` saying how to get it, instead of a deep download traceback.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from lqvae_tf.data.idx import find_idx_file, read_idx
from lqvae_tf.data.image_folder import LABELS_FILE, center_crop_resized, image_folder, scale_pixels
from lqvae_tf.data.registry import CLASSIFIER_VALUE_RANGE, DATASETS, DatasetInfo, dataset_info
from lqvae_tf.data.user_data import user_dataset

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
# Environment variables naming a dataset's folder when no `data_dir` is given.
DATA_DIR_VARIABLES = {
    "fashion_mnist": "LQVAE_FASHION_MNIST_DIR",
    "mnist": "LQVAE_MNIST_DIR",
    "celeb_a": "LQVAE_CELEBA_DIR",
}
SOURCES = ("auto", "idx", "tfds")
CELEB_A_SOURCES = ("auto", "folder", "tfds")
SPLITS = ("train", "test")
_IDX_PREFIX = {"train": "train", "test": "t10k"}
# The aligned faces (218x178, or 109x89 in our subset) -> central square -> the registry's 64x64.
CELEB_A_SIZE = DATASETS["celeb_a"].image_shape[:2]


class DatasetUnavailableError(RuntimeError):
    """The dataset is not on this machine and could not be fetched."""


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


def default_folder(name: str) -> str | None:
    """The folder a dataset is read from when no `data_dir` is given: its environment variable
    (`DATA_DIR_VARIABLES`), else Debian's folder for Fashion-MNIST, else None (tensorflow-datasets)."""
    variable = DATA_DIR_VARIABLES.get(name)
    if variable and os.environ.get(variable):
        return os.environ[variable]
    return DEBIAN_FASHION_MNIST if name == "fashion_mnist" else None


def _digits(
    name: str,
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
    # "auto": a folder the user names (data_dir or the environment variable) is read as IDX; else
    # Debian's folder where it has the files; else tensorflow-datasets. A named folder never
    # silently turns into a download.
    named = data_dir or os.environ.get(DATA_DIR_VARIABLES[name]) or None
    folder = named or default_folder(name)
    use_idx = source == "idx" or (
        source == "auto"
        and (named is not None or (folder is not None and find_idx_file(folder, "t10k-labels-idx1-ubyte")))
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
        data_dir: the IDX folder (default: `$LQVAE_FASHION_MNIST_DIR`, else Debian's
            `/usr/share/datasets/fashion-mnist`), or tensorflow-datasets' data_dir when
            `source="tfds"`.
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
    return _digits("fashion_mnist", how, split, value_range, source, data_dir, download, limit)


def mnist(
    split: str = "train",
    value_range: Sequence[float] = (0.0, 1.0),
    source: str = "auto",
    data_dir: str | None = None,
    download: bool = True,
    limit: int | None = None,
) -> tf.data.Dataset:
    """MNIST as (28x28x1 float32 image in `value_range`, int64 label 0-9).

    Same arguments as `fashion_mnist`. The IDX folder is `data_dir`, else `$LQVAE_MNIST_DIR`
    (this project's machines: `../shared/data/mnist`, which `make` sets); with neither, MNIST
    comes from tensorflow-datasets.
    """
    how = (
        "Point data_dir (--data-dir) or the environment variable LQVAE_MNIST_DIR at a folder of "
        "MNIST IDX files (train-images-idx3-ubyte[.gz], ...), or run once with a network so "
        "tensorflow-datasets can download it."
    )
    return _digits("mnist", how, split, value_range, source, data_dir, download, limit)


def celeb_a_image(image, value_range: Sequence[float] = (0.0, 1.0)):
    """An aligned CelebA face (218x178, or any size) -> central square, resized to 64x64, in `value_range`."""
    return center_crop_resized(image, CELEB_A_SIZE, value_range)


def celeb_a(
    split: str = "train",
    value_range: Sequence[float] = (0.0, 1.0),
    data_dir: str | None = None,
    download: bool = True,
    limit: int | None = None,
    source: str = "auto",
) -> tf.data.Dataset:
    """CelebA gender as (64x64x3 float32 face in `value_range`, int64 label: 1 male, 0 female).

    Two sources. A folder of images plus a label file (`image_folder`: `labels.csv` with
    `image,male` rows, the faces in `images/`), split seeded 80/20 into train/test as
    `image_folder` documents, since such a subset usually comes from one official partition.
    Or tensorflow-datasets' `celeb_a`, with its official train/test partitions.

    With `source="auto"` the folder is read when `data_dir` holds a `labels.csv`, or, with no
    `data_dir`, when `$LQVAE_CELEBA_DIR` is set (this project's machines: `../shared/data/celeba`,
    which `make` sets); a named folder never silently turns into a download. Otherwise CelebA
    comes from tensorflow-datasets, with `data_dir` as its data_dir.

    Args:
        split: "train" or "test".
        value_range: the pixel range to scale to (the model's `config.value_range`).
        data_dir: a folder of images plus `labels.csv`, or tensorflow-datasets' data_dir.
        download: let tensorflow-datasets download when the data is missing.
        limit: keep only the first `limit` examples.
        source: "folder", "tfds", or "auto" (see above).

    Raises:
        DatasetUnavailableError: the data is not here and cannot be fetched, or the folder lacks
            its label file or a listed image; says how to get it.
        ValueError: the folder's label file is malformed (names the file and line).
    """
    _check_split(split)
    if source not in CELEB_A_SOURCES:
        raise ValueError(f"source must be one of {CELEB_A_SOURCES}, got {source!r}")
    folder = data_dir or default_folder("celeb_a")
    use_folder = source == "folder" or (
        source == "auto"
        and folder is not None
        and (data_dir is None or os.path.isfile(os.path.join(data_dir, LABELS_FILE)))
    )
    if use_folder:
        how = (
            "Point data_dir (--data-dir) or the environment variable LQVAE_CELEBA_DIR at a folder "
            "holding labels.csv (image,male) and the aligned faces in images/, or use "
            "source='tfds' on a machine with a network."
        )
        if folder is None:
            raise DatasetUnavailableError(f"no CelebA folder given. {how}")
        try:
            return image_folder(folder, split, value_range=value_range, limit=limit)
        except FileNotFoundError as error:
            raise DatasetUnavailableError(f"{error}. {how}") from None
    how = "Run once with a network so tensorflow-datasets can download and prepare 'celeb_a'."
    dataset = _limited(_tfds_load("celeb_a", split, data_dir, download, how), limit)
    return dataset.map(
        lambda ex: (celeb_a_image(ex["image"], value_range), tf.cast(ex["attributes"]["Male"], tf.int64)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


# How each registered dataset is read (its shape, classes and range: `lqvae_tf.data.registry`).
LOADERS = {"fashion_mnist": fashion_mnist, "mnist": mnist, "celeb_a": celeb_a}
if set(LOADERS) != set(DATASETS):
    raise ImportError(f"datasets registered {sorted(DATASETS)} and loaders {sorted(LOADERS)} disagree")


def load(name: str | DatasetInfo, split: str = "train", **kwargs) -> tf.data.Dataset:
    """A dataset as (float32 image in `value_range`, int64 label).

    Args:
        name: a registered dataset (`fashion_mnist`, `mnist`, `celeb_a`; kwargs as that loader's),
            the path of a user's dataset (a folder of images, a `.npz`, TFRecords; kwargs as
            `user_dataset`'s), or a `DatasetInfo` (a user's one is read at its `image_shape`).
        split: "train" or "test".
    """
    if isinstance(name, DatasetInfo):
        if name.name in DATASETS:
            return LOADERS[name.name](split, **kwargs)
        return user_dataset(name.name, split, image_size=name.image_shape[:2], channels=name.image_shape[2], **kwargs)
    if name not in DATASETS and os.path.exists(name):
        return user_dataset(name, split, **kwargs)
    return LOADERS[dataset_info(name).name](split, **kwargs)


def batched(
    dataset: tf.data.Dataset, batch_size: int, shuffle: bool = False, seed: int = 0, buffer_size: int = 10_000
) -> tf.data.Dataset:
    """Shuffled (seeded, reshuffled each epoch) and batched, with prefetch."""
    if shuffle:
        dataset = dataset.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def take_images(dataset: tf.data.Dataset, count: int) -> np.ndarray:
    """The first `count` images of an unbatched dataset of images or (image, label) pairs, as one array."""
    items = dataset.take(count).as_numpy_iterator()
    return np.stack([item[0] if isinstance(item, tuple) else item for item in items])


def split_arrays(
    name: str | DatasetInfo,
    split: str,
    limit: int | None = None,
    value_range=CLASSIFIER_VALUE_RANGE,
    data_dir: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A split (its first `limit` examples, or all of it) as arrays: float32 images in
    `value_range`, int64 labels. Read in batches, so a whole training split is one stack."""
    kwargs = {"value_range": value_range, "limit": limit}
    if data_dir is not None:
        kwargs["data_dir"] = data_dir
    batches = list(load(name, split, **kwargs).batch(10_000).as_numpy_iterator())
    if not batches:
        raise ValueError(f"the {split} split of {name!r} holds no examples")
    images = np.concatenate([batch[0] for batch in batches]).astype(np.float32, copy=False)
    return images, np.concatenate([batch[1] for batch in batches]).astype(np.int64)


def first_examples(
    name: str | DatasetInfo, split: str, count: int, value_range=CLASSIFIER_VALUE_RANGE, data_dir: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` examples of a split as arrays: float32 images in `value_range`, int64 labels.

    The test sample that the presets' metrics, `lqvae protect`'s report and the benches measure on.
    """
    return split_arrays(name, split, limit=count, value_range=value_range, data_dir=data_dir)


__all__ = [
    "DEBIAN_FASHION_MNIST",
    "DatasetUnavailableError",
    "batched",
    "celeb_a",
    "celeb_a_image",
    "fashion_mnist",
    "first_examples",
    "load",
    "load_idx_arrays",
    "mnist",
    "scale_pixels",
    "split_arrays",
    "take_images",
]
