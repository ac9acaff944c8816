"""`lqvae frontier`: train a grid of purifiers and measure clean against adaptive robust accuracy.

Registered by `lqvae_tf.cli.main` with `add_parser(subparsers)` and dispatched to `run(args)`.
"""

from __future__ import annotations

import argparse
import json
import shlex

from lqvae_tf.classifiers.train import DATASET_SHAPES
from lqvae_tf.data.registry import DEFAULT_DATASET


def add_parser(subparsers) -> None:
    """Adds `frontier` to the `lqvae` command's subparsers."""
    from lqvae_tf.evaluation.frontier import FrontierAttacks

    defaults = FrontierAttacks()
    parser = subparsers.add_parser(
        "frontier",
        help="train a grid of purifiers and draw clean vs adaptive robust accuracy",
        description="Train (or reuse) one purifier per grid point, measure clean accuracy behind the filter, "
        "adaptive robust accuracy (per-image worst of BPDA, soft-path+EOT and identity PGD), a Square check "
        "and the detection score's ROC AUC; write frontier.md, frontier.json and frontier.png. Rerunning "
        "resumes: finished points and measurements are reused.",
    )
    parser.add_argument(
        "--grid",
        required=True,
        help='a JSON file or text: {"preset": ..., "base": {...}, "axes": {field: [values]}, "points": [{...}]}',
    )
    parser.add_argument("--classifier", required=True, help="the classifier behind every filter (.keras, [0, 1])")
    parser.add_argument(
        "--training-classifier",
        help="the classifier points train with where they name none: guided points keep its answers, the "
        "adversarial modes classifier and end_to_end attack it (default --classifier)",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="the frontier's folder; the README.md of the folder above it is rebuilt as the index of every "
        "frontier there (unless that README.md is hand-written)",
    )
    parser.add_argument("--dataset", choices=sorted(DATASET_SHAPES), default=DEFAULT_DATASET)
    parser.add_argument("--train-limit", type=int, help="train each purifier on the first N training images")
    parser.add_argument(
        "--validation-limit", type=int, default=2_000, help="test images of each training run's validation"
    )
    parser.add_argument("--data-dir", help="dataset folder (IDX files, or tensorflow-datasets' data_dir)")
    parser.add_argument("--n", type=int, default=defaults.n, help="test images measured")
    parser.add_argument("--eps", type=float, default=defaults.eps)
    parser.add_argument("--steps", type=int, default=defaults.steps, help="PGD steps")
    parser.add_argument("--step-size", type=float, help="PGD step (default 2.5 eps / steps)")
    parser.add_argument("--restarts", type=int, default=defaults.restarts, help="PGD random starts per image")
    parser.add_argument("--eot", type=int, default=defaults.eot_samples, help="EOT draws through the soft path")
    parser.add_argument("--square-queries", type=int, default=defaults.square_queries)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per attack call")
    parser.add_argument(
        "--adapt-epochs",
        type=int,
        default=0,
        metavar="N",
        help="adapt the classifier to each point's filter (N epochs on purified images) and measure the adapted pair",
    )
    parser.add_argument("--verbose", action="store_true")


def _grid(text: str) -> dict:
    if text.lstrip().startswith("{"):
        return json.loads(text)
    with open(text, encoding="utf-8") as handle:
        return json.load(handle)


def run(args: argparse.Namespace) -> int:
    from lqvae_tf.evaluation.frontier import FrontierAttacks, grid_configs, run_frontier

    attacks = FrontierAttacks(
        eps=args.eps,
        steps=args.steps,
        step_size=args.step_size,
        restarts=args.restarts,
        eot_samples=args.eot,
        square_queries=args.square_queries,
        n=args.n,
        batch_size=args.batch_size,
    )
    try:
        grid = _grid(args.grid)
    except json.JSONDecodeError as error:
        raise ValueError(f"--grid is not valid JSON: {error}") from None
    rows = run_frontier(
        grid_configs(grid),
        args.dataset,
        args.classifier,
        args.out,
        attacks,
        train_limit=args.train_limit,
        data_dir=args.data_dir,
        verbose=args.verbose,
        command="lqvae " + shlex.join(getattr(args, "argv", [])),
        validation_limit=args.validation_limit,
        adapt_epochs=args.adapt_epochs,
        training_classifier=args.training_classifier,
    )
    print(f"frontier: {args.out}/frontier.md ({len(rows)} points), frontier.json, frontier.png")
    return 0
