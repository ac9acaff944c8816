"""`lqvae protect`: the filter for your own classifier, fine-tuned from the shipped preset, with its report.

Registered by `lqvae_tf.cli.main` with `add_parser(subparsers)` and dispatched to `run(args)`.
"""

from __future__ import annotations

import argparse
import os
import shlex

from lqvae_tf.data.registry import DEFAULT_DATASET
from lqvae_tf.protection import DEFENDED_FILE, FINE_TUNE_IMAGES, PURIFIER_FILE
from lqvae_tf.protection.protect import EVAL_IMAGES, FINE_TUNE_EPOCHS
from lqvae_tf.training import data_flags


def add_parser(subparsers) -> None:
    """Adds `protect` to the `lqvae` command's subparsers."""
    parser = subparsers.add_parser(
        "protect",
        help="fine-tune the shipped filter for your classifier and report its robustness",
        description="Warm-start from the shipped preset of the data, fine-tune it guided by your classifier and "
        f"against PGD through it, and write {PURIFIER_FILE}, {DEFENDED_FILE} (purifier then classifier, for "
        "keras.models.load_model and lqvae export) and report.md / report.json (clean accuracy alone and behind "
        "the filter, adaptive and Square attacks, 95%% intervals). Re-running the same command resumes.",
    )
    parser.add_argument("--classifier", required=True, metavar="MODEL", help="your classifier (.keras, [0, 1] images)")
    parser.add_argument("--out", required=True, help="the output folder")
    parser.add_argument("--dataset", choices=data_flags.DATASET_NAMES, default=DEFAULT_DATASET)
    parser.add_argument("--preset", help="the trained preset to start from (default: the dataset's)")
    parser.add_argument(
        "--images", type=int, default=FINE_TUNE_IMAGES, help="fine-tune on the first N training images (0: all)"
    )
    parser.add_argument("--epochs", type=int, default=FINE_TUNE_EPOCHS, help="epochs over them")
    parser.add_argument("--eval-images", type=int, default=EVAL_IMAGES, help="test images the report measures")
    parser.add_argument(
        "--eps", type=float, nargs="+", help="L-inf radii in [0, 1] pixels (default 0.1; MNIST 0.1 and 0.3)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", help="dataset folder (IDX files, or tensorflow-datasets' data_dir)")
    parser.add_argument("--verbose", default="auto", help="Keras verbosity: auto, 0, 1 or 2")
    data_flags.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from lqvae_tf.protection import protect

    if args.images < 0:
        raise ValueError(f"--images must be >= 0 (0: the whole training split), got {args.images}")
    dataset = data_flags.resolve(args)  # bad data fails here, before anything is written
    report = protect(
        args.classifier,
        args.out,
        dataset=dataset,
        preset=args.preset,
        images=args.images or None,
        epochs=args.epochs,
        eval_images=args.eval_images,
        eps=args.eps,
        data_dir=args.data_dir,
        seed=args.seed,
        verbose=args.verbose if args.verbose == "auto" else int(args.verbose),
        command="lqvae " + shlex.join(args.argv),
    )
    clean = report["clean"]
    print(f"purifier: {os.path.join(args.out, PURIFIER_FILE)}")
    print(f"defended: {os.path.join(args.out, DEFENDED_FILE)}")
    print(f"report:   {os.path.join(args.out, 'report.md')}")
    print(
        f"clean:    {clean['alone']['accuracy']}% alone, {clean['behind_filter']['accuracy']}% behind the filter "
        f"(cost {clean['cost_points']} points)"
    )
    for radius, measured in report["robustness"].items():
        print(f"eps {radius}: adaptive {measured['adaptive']['accuracy']}%, Square {measured['square']['accuracy']}%")
    return 0
