"""`lqvae classifiers train`: train the Defense-GAN classifiers (A-E) that the evaluation attacks.

Plainly, or adversarially (`--adversarial pgd|fgsm`) for the adversarial-training baselines.

Registered by `lqvae_tf.cli.main` with `add_parser(subparsers)` and dispatched to `run(args)`.
"""

from __future__ import annotations

import argparse
import os

from lqvae_tf.classifiers.adversarial import EPS, PGD_STEP_SIZE, PGD_STEPS
from lqvae_tf.classifiers.train import ADVERSARIAL_METHODS, BATCH_SIZE, DATASET_SHAPES, EPOCHS
from lqvae_tf.data.registry import DEFAULT_DATASET

NO_ADVERSARIAL = "none"


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
        "and <out>/classifier_<name>.json (its test accuracy and settings). With --adversarial pgd or "
        "fgsm, train it on adversarial examples instead (Madry et al. 2018; Goodfellow et al. 2015) and "
        "write <out>/classifier_<name>_<method>.keras and .json.",
    )
    train.add_argument("--dataset", choices=sorted(DATASET_SHAPES), default=DEFAULT_DATASET)
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
    # Defaults of None: the trainer's own (Madry's MNIST settings), and a flag given without an
    # adversarial method can be refused instead of silently ignored.
    train.add_argument(
        "--adversarial",
        choices=(NO_ADVERSARIAL, *ADVERSARIAL_METHODS),
        default=NO_ADVERSARIAL,
        help="adversarial training: pgd (Madry et al. 2018), fgsm (Goodfellow et al. 2015), or none",
    )
    train.add_argument(
        "--eps", type=float, help=f"L-inf radius of the training attack in [0, 1] pixels (default {EPS})"
    )
    train.add_argument("--pgd-steps", type=int, help=f"PGD iterations (default {PGD_STEPS})")
    train.add_argument("--pgd-step-size", type=float, help=f"PGD step (default {PGD_STEP_SIZE})")
    train.add_argument(
        "--eps-ramp-epochs",
        type=int,
        help="grow the training attack's eps linearly over the first N epochs (default 0: none; "
        "from scratch at a large eps, e.g. MNIST's 0.3, PGD training can otherwise collapse)",
    )


def _adversarial_settings(args: argparse.Namespace) -> dict:
    """The adversarial-training arguments given on the command line, refusing those that would be ignored."""
    given = {
        "eps": ("--eps", args.eps),
        "steps": ("--pgd-steps", args.pgd_steps),
        "step_size": ("--pgd-step-size", args.pgd_step_size),
        "eps_ramp_epochs": ("--eps-ramp-epochs", args.eps_ramp_epochs),
    }
    applicable = {"pgd": ("eps", "steps", "step_size", "eps_ramp_epochs"), "fgsm": ("eps", "eps_ramp_epochs")}
    applicable = applicable.get(args.adversarial, ())
    ignored = [flag for key, (flag, value) in given.items() if value is not None and key not in applicable]
    if ignored:
        raise ValueError(f"--adversarial {args.adversarial} does not use {', '.join(ignored)}")
    return {key: value for key, (_, value) in given.items() if value is not None}


def _train(args: argparse.Namespace) -> int:
    from lqvae_tf.classifiers import (
        CLASSIFIERS,
        GENDER_CLASSIFIERS,
        classifier_filename,
        train_adversarial_classifier,
        train_classifier,
    )

    names = args.names or (GENDER_CLASSIFIERS if args.dataset == "celeb_a" else tuple(CLASSIFIERS))
    unknown = [name for name in names if name not in CLASSIFIERS]
    if unknown:  # before any training, so a typo does not cost the earlier models' time
        raise ValueError(f"unknown classifier(s) {', '.join(unknown)}; choose from {', '.join(CLASSIFIERS)}")
    adversarial = None if args.adversarial == NO_ADVERSARIAL else args.adversarial
    # Bad values stop the first call before it reads any data, and every call has the same.
    settings = _adversarial_settings(args)
    verbose = args.verbose if args.verbose == "auto" else int(args.verbose)
    for name in names:
        path = os.path.join(args.out, classifier_filename(name, adversarial))
        common = dict(
            epochs=args.epochs,
            batch_size=args.batch_size,
            limit=args.limit,
            seed=args.seed,
            data_dir=args.data_dir,
            test_limit=args.test_limit,
            verbose=verbose,
        )
        if adversarial is None:
            summary = train_classifier(name, args.dataset, path, **common)
            print(f"{name}: test accuracy {summary['test_accuracy']:.4f}  {path}")
        else:
            # Backed up after every epoch: the same command resumes an interrupted training.
            backup = os.path.splitext(path)[0] + ".backup"
            summary = train_adversarial_classifier(
                name, args.dataset, path, method=adversarial, backup_dir=backup, **settings, **common
            )
            print(
                f"{name}: test accuracy {summary['test_accuracy']:.4f}, under {adversarial} (eps "
                f"{summary['adversarial']['eps']}) {summary['test_adversarial_accuracy']:.4f}  {path}"
            )
    return 0


ACTIONS = {"train": _train}


def run(args: argparse.Namespace) -> int:
    """Runs the parsed `lqvae classifiers ...` command; returns the exit status.

    Args:
        args: the namespace `add_parser`'s parser produced.
    """
    return ACTIONS[args.action](args)
