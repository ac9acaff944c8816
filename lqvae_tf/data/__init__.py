"""Datasets (`fashion_mnist`, `mnist`, `celeb_a`) as tf.data pipelines in the model's value range,
and the reader of a folder of images plus a label file (`image_folder`) for one's own data."""

from lqvae_tf.data.datasets import (
    DEBIAN_FASHION_MNIST,
    LOADERS,
    DatasetUnavailableError,
    batched,
    celeb_a,
    fashion_mnist,
    load,
    load_idx_arrays,
    mnist,
    take_images,
)
from lqvae_tf.data.idx import read_idx
from lqvae_tf.data.image_folder import image_folder, image_folder_files

__all__ = [
    "DEBIAN_FASHION_MNIST",
    "LOADERS",
    "DatasetUnavailableError",
    "batched",
    "celeb_a",
    "fashion_mnist",
    "image_folder",
    "image_folder_files",
    "load",
    "load_idx_arrays",
    "mnist",
    "read_idx",
    "take_images",
]
