"""`lqvae adapt`: fine-tune a classifier on purified training images, so the filter costs it no clean accuracy.

Registered by `lqvae_tf.cli.main` with `add_parser(subparsers)` and dispatched to `run(args)`.
"""

from __future__ import annotations

import argparse
import json

from lqvae_tf.classifiers.train import DATASET_SHAPES
from lqvae_tf.data.registry import DEFAULT_DATASET
from lqvae_tf.training.adapt import BATCH_SIZE, EPOCHS, LEARNING_RATE


def add_parser(subparsers) -> None:
    """Adds `adapt` to the `lqvae` command's subparsers."""
    parser = subparsers.add_parser(
        "adapt",
        help="fine-tune a classifier on purified images",
        description="Fine-tune a Keras classifier (.keras, images in [0, 1]) for a few epochs on the purified "
        "training images of a dataset; write the adapted classifier and a JSON summary beside it with the test "
        "accuracy alone and behind the filter, before and after.",
    )
    parser.add_argument("--classifier", required=True, help="the classifier to adapt (.keras)")
    parser.add_argument("--purifier", required=True, help="the purifier it will sit behind (.keras)")
    parser.add_argument("--out", required=True, help="the adapted classifier's file (.keras)")
    parser.add_argument("--dataset", choices=sorted(DATASET_SHAPES), default=DEFAULT_DATASET)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--learning-rate", type=float, default=LEARNING_RATE, help="Adam's (fine-tuning) rate")
    parser.add_argument("--limit", type=int, help="fine-tune on the first N training images only")
    parser.add_argument("--test-limit", type=int, help="measure on the first N test images only")
    parser.add_argument("--data-dir", help="dataset folder (IDX files, or tensorflow-datasets' data_dir)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", default="auto", help="Keras verbosity: auto, 0, 1 or 2")


def run(args: argparse.Namespace) -> int:
    from lqvae_tf.training.adapt import adapt_classifier

    summary = adapt_classifier(
        args.classifier,
        args.purifier,
        args.dataset,
        args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        limit=args.limit,
        test_limit=args.test_limit,
        data_dir=args.data_dir,
        seed=args.seed,
        verbose=args.verbose if args.verbose == "auto" else int(args.verbose),
    )
    print(f"adapted: {args.out}")
    print(json.dumps(summary["test_accuracy"], indent=2))
    return 0
