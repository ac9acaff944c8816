"""Datasets (`fashion_mnist`, `mnist`, `celeb_a`) as tf.data pipelines in the model's value range,
the registry that knows each one's shape, classes and range (`dataset_info`), and readers of
one's own data: a folder of images, a `.npz` or TFRecords (`user_dataset`, `inspect_user_data`)."""

from lqvae_tf.data.datasets import (
    DEBIAN_FASHION_MNIST,
    LOADERS,
    DatasetUnavailableError,
    batched,
    celeb_a,
    fashion_mnist,
    first_examples,
    load,
    load_idx_arrays,
    mnist,
    split_arrays,
    take_images,
)
from lqvae_tf.data.idx import read_idx
from lqvae_tf.data.image_folder import image_folder, image_folder_files
from lqvae_tf.data.registry import DATASET_NAMES, DATASETS, DatasetInfo, dataset_info
from lqvae_tf.data.user_data import inspect_user_data, user_dataset

__all__ = [
    "DATASETS",
    "DATASET_NAMES",
    "DEBIAN_FASHION_MNIST",
    "LOADERS",
    "DatasetInfo",
    "DatasetUnavailableError",
    "batched",
    "celeb_a",
    "dataset_info",
    "fashion_mnist",
    "first_examples",
    "image_folder",
    "image_folder_files",
    "inspect_user_data",
    "load",
    "load_idx_arrays",
    "mnist",
    "read_idx",
    "split_arrays",
    "take_images",
    "user_dataset",
]
