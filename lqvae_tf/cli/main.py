"""The `lqvae` command line: `lqvae train ...` (later: eval, export, serve)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence

DATASETS = ("fashion_mnist", "mnist", "celeb_a")


def _override(text: str) -> tuple[str, object]:
    """Parses one `--set name=value` (value read as JSON where it parses, else as a string)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set takes name=value, got {text!r}")
    name, raw = text.split("=", 1)
    try:
        return name.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return name.strip(), raw


def _add_train(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a purifier on a dataset",
        description="Train an LQ-VAE purifier. Re-running the same command resumes an interrupted run.",
    )
    parser.add_argument("--dataset", choices=DATASETS, default="fashion_mnist")
    parser.add_argument("--preset", help="named configuration (default: the dataset's)")
    parser.add_argument("--config", help="a config.json to start from instead of a preset")
    parser.add_argument(
        "--set",
        dest="overrides",
        type=_override,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change one config field, e.g. --set latent_dim=32",
    )
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--limit", type=int, help="train on the first N training images only")
    parser.add_argument("--data-dir", help="dataset folder (IDX files, or tensorflow-datasets' data_dir)")
    parser.add_argument("--out", required=True, help="run folder for the model, logs and figures")
    parser.add_argument("--verbose", default="auto", help="Keras verbosity: auto, 0, 1 or 2")


def _train(args: argparse.Namespace) -> int:
    from lqvae_tf.config import LQVAEConfig, preset
    from lqvae_tf.training import train_purifier

    if args.config:
        with open(args.config, encoding="utf-8") as handle:
            config = LQVAEConfig.from_json(handle.read())
    else:
        config = preset(args.preset or args.dataset)
    changes = dict(args.overrides)
    for field in ("epochs", "batch_size", "seed"):
        if getattr(args, field) is not None:
            changes[field] = getattr(args, field)
    config = config.replace(**changes)
    verbose = args.verbose if args.verbose == "auto" else int(args.verbose)
    result = train_purifier(
        config, args.dataset, args.out, limit=args.limit, data_dir=args.data_dir, verbose=verbose
    )
    print(f"model:   {result.model_path}")
    print(f"figure:  {result.grid_path}")
    print(f"logs:    tensorboard --logdir {os.path.join(result.out_dir, 'logs')}")
    print("final:   " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.final.items())))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lqvae", description="LQ-VAE adversarial purifier")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_train(subparsers)
    return parser


COMMANDS = {"train": _train}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lqvae` console script."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # google-api-core (pulled in by tensorflow-datasets) warns about Python 3.10 on every start.
    warnings.filterwarnings("ignore", category=FutureWarning, module="google.api_core")
    from lqvae_tf.data import DatasetUnavailableError

    try:
        return COMMANDS[args.command](args)
    except (ValueError, DatasetUnavailableError, FileNotFoundError) as error:
        print(f"lqvae {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
