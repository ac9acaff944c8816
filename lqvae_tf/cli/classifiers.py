"""`lqvae classifiers train`: train the Defense-GAN classifiers (A-E) that the evaluation attacks.

Registered by `lqvae_tf.cli.main` with `add_parser(subparsers)` and dispatched to `run(args)`.
"""

from __future__ import annotations

import argparse
import os

from lqvae_tf.classifiers.train import BATCH_SIZE, DATASET_SHAPES, EPOCHS


def _names(text: str) -> tuple[str, ...]:
    """Parses `--names A,B,C` (any case) into ("A", "B", "C")."""
    names = tuple(part.strip().upper() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"--names takes letters separated by commas, got {text!r}")
    return names


def add_parser(subparsers) -> None:
    """Adds `classifiers` (with its `train` action) to the `lqvae` command's subparsers.

    Args:
        subparsers: the object `ArgumentParser.add_subparsers` returned.
    """
    parser = subparsers.add_parser(
        "classifiers",
        help="train the classifiers that the robustness evaluation attacks",
        description="Defense-GAN's classifiers A-E (Samangouei et al. 2018, Table 1), outputting logits.",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    train = actions.add_parser(
        "train",
        help="train classifiers on a dataset",
        description="Train each named classifier and write <out>/classifier_<name>.keras (atomically) "
        "and <out>/classifier_<name>.json (its test accuracy and settings).",
    )
    train.add_argument("--dataset", choices=sorted(DATASET_SHAPES), default="fashion_mnist")
    train.add_argument(
        "--names",
        type=_names,
        help="classifiers to train, e.g. A,B,C (default: A-E, or A-C for celeb_a)",
    )
    train.add_argument("--epochs", type=int, default=EPOCHS)
    train.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--limit", type=int, help="train on the first N training examples only")
    train.add_argument("--test-limit", type=int, help="evaluate on the first N test examples only")
    train.add_argument("--data-dir", help="dataset folder (IDX files, or tensorflow-datasets' data_dir)")
    train.add_argument("--out", required=True, help="folder for the models and their summaries")
    train.add_argument("--verbose", default="auto", help="Keras verbosity: auto, 0, 1 or 2")


def _train(args: argparse.Namespace) -> int:
    from lqvae_tf.classifiers import CLASSIFIERS, GENDER_CLASSIFIERS, classifier_filename, train_classifier

    names = args.names or (GENDER_CLASSIFIERS if args.dataset == "celeb_a" else tuple(CLASSIFIERS))
    unknown = [name for name in names if name not in CLASSIFIERS]
    if unknown:  # before any training, so a typo does not cost the earlier models' time
        raise ValueError(f"unknown classifier(s) {', '.join(unknown)}; choose from {', '.join(CLASSIFIERS)}")
    verbose = args.verbose if args.verbose == "auto" else int(args.verbose)
    for name in names:
        path = os.path.join(args.out, classifier_filename(name))
        summary = train_classifier(
            name,
            args.dataset,
            path,
            epochs=args.epochs,
            batch_size=args.batch_size,
            limit=args.limit,
            seed=args.seed,
            data_dir=args.data_dir,
            test_limit=args.test_limit,
            verbose=verbose,
        )
        print(f"{name}: test accuracy {summary['test_accuracy']:.4f}  {path}")
    return 0


ACTIONS = {"train": _train}


def run(args: argparse.Namespace) -> int:
    """Runs the parsed `lqvae classifiers ...` command; returns the exit status.

    Args:
        args: the namespace `add_parser`'s parser produced.
    """
    return ACTIONS[args.action](args)
