"""Datasets (`fashion_mnist`, `mnist`, `celeb_a`) as tf.data pipelines in the model's value range."""

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

__all__ = [
    "DEBIAN_FASHION_MNIST",
    "LOADERS",
    "DatasetUnavailableError",
    "batched",
    "celeb_a",
    "fashion_mnist",
    "load",
    "load_idx_arrays",
    "mnist",
    "read_idx",
    "take_images",
]
