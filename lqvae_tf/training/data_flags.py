"""A training run's data flags: a registered dataset (`--dataset`) or one's own (`--data PATH`).

Shared by the front ends that train a purifier: `lqvae train` and the pipeline's runners.
"""

from __future__ import annotations

import argparse

from lqvae_tf.config import LQVAEConfig
from lqvae_tf.data.registry import DATASET_NAMES, DatasetInfo, dataset_info


def image_size(text: str) -> tuple[int, int]:
    """Parses `--image-size HxW` (or N for NxN)."""
    height, _, width = text.lower().partition("x")
    width = width or height
    if not (height.isdigit() and width.isdigit() and int(height) > 0 and int(width) > 0):
        raise argparse.ArgumentTypeError(f"--image-size takes HxW (e.g. 32x32), got {text!r}")
    return int(height), int(width)


def add_arguments(parser: argparse.ArgumentParser, instead_of: str = "--dataset") -> None:
    """Adds `--data` and `--image-size` to a training command's parser (`--dataset` is its own).

    Args:
        parser: the command's parser.
        instead_of: what `--data` replaces, for the help text (the pipeline's runners: Fashion-MNIST).
    """
    group = parser.add_argument_group(
        "your own data", f"instead of {instead_of}; every image is read and checked before anything is written"
    )
    group.add_argument(
        "--data",
        metavar="PATH",
        help="a folder of PNG/JPEG images (labels.csv, or one subfolder per class), a .npz (x, y) or "
        "TFRecords of tf.train.Example (image, label); any size, 1 or 3 channels",
    )
    group.add_argument(
        "--image-size", type=image_size, metavar="HxW", help="crop and resize every image of --data to HxW"
    )


def resolve(args: argparse.Namespace) -> DatasetInfo:
    """The dataset the command trains on: the registry's `--dataset`, or `--data` inspected.

    Raises:
        ValueError: contradictory flags, or bad data (naming the file; see `lqvae_tf.data.user_data`).
    """
    if not args.data:
        if args.image_size:
            raise ValueError("--image-size is for --data (the built-in datasets have their own size)")
        return dataset_info(args.dataset)
    if args.data_dir:
        raise ValueError("--data-dir is for --dataset; --data names your dataset itself")
    from lqvae_tf.data import inspect_user_data

    info = inspect_user_data(args.data, args.image_size)
    print(f"data:    {args.data}: {info.image_shape} images, {info.num_classes} classes ({info.reader})")
    return info


def apply(dataset: DatasetInfo, config: LQVAEConfig) -> LQVAEConfig:
    """`config` at the dataset's image shape, with the architecture for that size (the paper's
    `conv28`/`conv64` where it fits, else the adaptive `conv`)."""
    from lqvae_tf.models.architectures import architecture_for

    return config.replace(image_shape=dataset.image_shape, architecture=architecture_for(dataset.image_shape))


__all__ = ["DATASET_NAMES", "add_arguments", "apply", "image_size", "resolve"]
