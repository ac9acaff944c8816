"""`lqvae reproduce DATASET [--quick]`: the paper's study with every baseline, in one command."""

from __future__ import annotations

import argparse
import shlex
from typing import TYPE_CHECKING

from lqvae_tf.data.registry import DATASET_NAMES

if TYPE_CHECKING:
    from lqvae_tf.study.config import StudyConfig


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "reproduce",
        help="train or reuse every model, run every table with every defense, write the report",
        description=(
            "Trains (or reuses, by the hash of their settings) the purifier, classifiers A-C, their Madry and FGSM "
            "adversarially trained versions and Defense-GAN's generator; runs the paper's tables for the dataset "
            "with columns no defense / lq-vae / defense-gan / madry / adv-tr; writes <out>/results.md beside the "
            "paper's numbers, with the figures and full tables in <out>/results/<dataset>/."
        ),
    )
    parser.add_argument("dataset", choices=DATASET_NAMES)
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny models, 16 images, minutes")
    parser.add_argument("--out", help="the report's folder (default docs, or runs/reproduce_quick with --quick)")
    parser.add_argument("--models", default="runs/reproduce/models", help="the model store (trained models, by hash)")
    parser.add_argument("--n", type=int, help="evaluation images (over the study's)")
    parser.add_argument("--data-dir", help="the dataset's folder")
    parser.add_argument("--models-only", action="store_true", help="train (or find) the models, run no table")
    parser.add_argument(
        "--only",
        action="append",
        metavar="MODEL",
        help="with --models-only, train (or find) this model alone, e.g. 'purifier', 'classifier A (madry)', 'gan' "
        "(repeatable; the models it needs come with it)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars or stage times")


def sized_config(config: StudyConfig, n: int | None) -> StudyConfig:
    """The study's config scoring `n` images (None: its own n). The subsampled columns' limits
    (Defense-GAN's, the authors' purifier's) shrink with a smaller sample: on fewer images than
    its own limit such a column is scored on all of them."""
    if n is None:
        return config
    if n < 1:
        raise ValueError(f"--n must be a positive number of evaluation images, got {n}")
    return config.replace(
        n=n,
        defense_gan_n=None if config.defense_gan_n is None else min(config.defense_gan_n, n),
        paper_purifier_n=None if config.paper_purifier_n is None else min(config.paper_purifier_n, n),
    )


def run(args: argparse.Namespace) -> int:
    """Runs `lqvae reproduce`."""
    from lqvae_tf.study import run_study, study_config

    if args.only and not args.models_only:
        raise ValueError("--only trains models and runs no table: give it with --models-only")
    config = sized_config(study_config(args.dataset, quick=args.quick), args.n)
    out = args.out or ("runs/reproduce_quick" if args.quick else "docs")
    written = run_study(
        config,
        out,
        args.models,
        data_dir=args.data_dir,
        command="lqvae " + shlex.join(args.argv),
        verbose=not args.quiet,
        models_only=args.models_only,
        only=tuple(args.only) if args.only else None,
    )
    if args.models_only:
        print("\n".join(f"{name}: {path}" for name, path in written.items()))
        return 0
    print(f"report: {written['report']}")
    return 0
