"""Image datasets as TFRecords of `tf.train.Example`, the form TFX's `Examples` artifacts hold.

One example per image: `image` (int64, height * width * channels pixel values in [0, 255], row
major) and `label` (int64). Flat pixel lists, not encoded bytes, so that TFX's StatisticsGen
sees one value per pixel and SchemaGen infers the image's shape: a mis-shaped image then shows
up as an anomaly in ExampleValidator instead of as a crash in the trainer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from lqvae_tf.atomic import atomic_path
from lqvae_tf.data import load_idx_arrays

IMAGE_KEY = "image"
LABEL_KEY = "label"
# The ExampleGen split names and the IDX split each is read from.
SPLITS = {"train": "train", "eval": "test"}
RECORD_FILE = "data.tfrecord"


def to_example(image: np.ndarray, label: int) -> tf.train.Example:
    """One image (any shape, uint8 values) and its label as a `tf.train.Example`."""
    pixels = np.asarray(image).reshape(-1).astype(np.int64)
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                IMAGE_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=pixels)),
                LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
            }
        )
    )


def write_records(path: str, images: np.ndarray, labels: Sequence[int]) -> str:
    """Writes `images` and `labels` to one uncompressed TFRecord file, atomically."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_path(path) as temporary:
        with tf.io.TFRecordWriter(temporary) as writer:
            for image, label in zip(images, labels):
                writer.write(to_example(image, label).SerializeToString())
    return path


def write_fashion_mnist_records(
    idx_dir: str, data_root: str, train_limit: int | None = None, eval_limit: int | None = None
) -> dict[str, str]:
    """Converts the Fashion-MNIST IDX files into `<data_root>/<split>/data.tfrecord`.

    The layout ImportExampleGen reads with the split patterns `train/*` and `eval/*`. Files
    already there are kept (the conversion is deterministic), so re-running a pipeline does not
    change its input fingerprint and cached components stay cached.

    Args:
        idx_dir: the folder of the IDX files (Debian's `/usr/share/datasets/fashion-mnist`).
        data_root: where the split folders are written.
        train_limit: keep the first `train_limit` training images only (quick runs).
        eval_limit: keep the first `eval_limit` test images only.

    Returns:
        split name -> record file path.
    """
    limits = {"train": train_limit, "eval": eval_limit}
    paths = {}
    for split, idx_split in SPLITS.items():
        path = os.path.join(data_root, split, RECORD_FILE)
        if not os.path.isfile(path):
            images, labels = load_idx_arrays(idx_dir, idx_split)
            stop = limits[split]
            write_records(path, images[:stop], labels[:stop])
        paths[split] = path
    return paths


def _record_files(file_patterns: Sequence[str]) -> list[str]:
    files = sorted(name for pattern in file_patterns for name in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no record files match {list(file_patterns)}")
    return files


def read_arrays(
    file_patterns: Sequence[str], image_shape: Sequence[int], limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Reads the examples of TFRecord files (gzipped as ExampleGen writes them, or not).

    Args:
        file_patterns: glob patterns of the files (a Trainer's `fn_args.train_files`, or a split
            folder of an `Examples` artifact followed by `/*`).
        image_shape: the images' (height, width, channels).
        limit: read the first `limit` examples only.

    Returns:
        uint8 images of shape (n, *image_shape) and int64 labels (n,).
    """
    files = _record_files(file_patterns)
    compression = "GZIP" if files[0].endswith(".gz") else None
    pixels = int(np.prod(image_shape))
    spec = {
        IMAGE_KEY: tf.io.FixedLenFeature([pixels], tf.int64),
        LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    }
    dataset = tf.data.TFRecordDataset(files, compression_type=compression)
    if limit is not None:
        dataset = dataset.take(limit)
    images, labels = [], []
    for batch in dataset.batch(4096).map(lambda records: tf.io.parse_example(records, spec)):
        images.append(batch[IMAGE_KEY].numpy().astype(np.uint8))
        labels.append(batch[LABEL_KEY].numpy())
    return np.concatenate(images).reshape(-1, *image_shape), np.concatenate(labels).astype(np.int64)
