"""The `lqvae` command line: train, classifiers, eval, export, serve."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings
from collections.abc import Sequence

from lqvae_tf.cli import adapt, classifiers, evaluate, frontier, protect, reproduce
from lqvae_tf.data.registry import DEFAULT_DATASET
from lqvae_tf.serving.limits import ServingLimits
from lqvae_tf.serving.workers import WORKER_FLAG, check_workers, run_workers, worker_command
from lqvae_tf.training import adversarial_flags, data_flags

DATASETS = data_flags.DATASET_NAMES  # the registry's (lqvae_tf.data.registry)


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
    parser.add_argument("--dataset", choices=DATASETS, default=DEFAULT_DATASET)
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
    parser.add_argument(
        "--init-from",
        metavar="MODEL",
        help="fine-tune a trained purifier (a .keras file or a trained preset's name) instead of "
        "starting from random weights; its network shapes must match",
    )
    parser.add_argument("--limit", type=int, help="train on the first N training images only")
    parser.add_argument("--data-dir", help="dataset folder (IDX files, or tensorflow-datasets' data_dir)")
    parser.add_argument("--out", required=True, help="run folder for the model, logs and figures")
    parser.add_argument("--verbose", default="auto", help="Keras verbosity: auto, 0, 1 or 2")
    adversarial_flags.add_arguments(parser)
    guidance = parser.add_argument_group(
        "classifier guidance",
        "also train the reconstructions to keep a classifier's class probabilities (see lqvae_tf.GuidanceConfig)",
    )
    guidance.add_argument("--guide-classifier", metavar="MODEL", help="the guiding classifier (.keras, [0, 1] images)")
    guidance.add_argument("--guide-weight", type=float, help="weight of its KL term (default 1)")
    parser.add_argument(
        "--classifier",
        metavar="MODEL",
        help="the classifier (.keras, [0, 1] images) the purifier trains with where its config names "
        "none: the guide of the guided presets, and the target of the adversarial modes classifier "
        "and end_to_end",
    )
    data_flags.add_arguments(parser)


def _guidance(args: argparse.Namespace, base):
    """`base` (the config's `guidance`) with the guidance flags applied."""
    from lqvae_tf.config import GuidanceConfig

    if args.guide_classifier is None:
        if args.guide_weight is not None and base is None:
            if args.classifier is None:
                raise ValueError("--guide-weight needs --guide-classifier (or --classifier)")
            return GuidanceConfig(weight=args.guide_weight)  # guided by --classifier
        return base if args.guide_weight is None else dataclasses.replace(base, weight=args.guide_weight)
    weight = args.guide_weight if args.guide_weight is not None else (base.weight if base else 1.0)
    return GuidanceConfig(classifier=args.guide_classifier, weight=weight)


def _train(args: argparse.Namespace) -> int:
    from lqvae_tf.config import LQVAEConfig, preset
    from lqvae_tf.training import train_purifier

    dataset = data_flags.resolve(args)  # bad data fails here, before the run folder exists
    if args.config:
        with open(args.config, encoding="utf-8") as handle:
            config = LQVAEConfig.from_json(handle.read())
    else:
        config = preset(args.preset or dataset.preset)
    changes = dict(args.overrides)
    for field in ("epochs", "batch_size", "seed", "init_from"):
        if getattr(args, field) is not None:
            changes[field] = getattr(args, field)
    # One replace, so that --epochs and --adversarial / --adv-clean-epochs are validated together.
    changes["adversarial"] = adversarial_flags.from_args(args, config.adversarial)
    changes["guidance"] = _guidance(args, config.guidance)
    config = config.replace(**changes)
    if args.classifier is not None:
        if not config.needs_classifier:
            raise ValueError(
                f"--classifier is for a config that trains with one (a guided preset, --guide-weight, or "
                f"--adversarial classifier / end_to_end); {args.preset or args.config or dataset.preset} "
                "as given names its own or needs none"
            )
        config = config.with_classifier(args.classifier)
    elif config.needs_classifier:
        attack, reasons = config.adversarial, []
        if attack is not None and attack.attacks_classifier and not attack.classifier:
            reasons.append(f"adversarial mode {attack.mode!r} attacks one")
        if config.guidance is not None and not config.guidance.classifier:
            reasons.append("its guidance keeps one's answers")
        raise ValueError(
            f"{args.preset or args.config or dataset.preset} trains with a classifier ({' and '.join(reasons)}) "
            f"and names none: give --classifier MODEL (the preset {dataset.preset!r} needs none)"
        )
    config = data_flags.apply(dataset, config)
    verbose = args.verbose if args.verbose == "auto" else int(args.verbose)
    result = train_purifier(config, dataset, args.out, limit=args.limit, data_dir=args.data_dir, verbose=verbose)
    print(f"model:   {result.model_path}")
    print(f"figure:  {result.grid_path}")
    print(f"logs:    tensorboard --logdir {os.path.join(result.out_dir, 'logs')}")
    print("final:   " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.final.items())))
    if result.collapsed:
        print("WARNING: the code collapsed (val_distinct_codes); this purifier maps almost every input to one image")
    return 0


def _add_export(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a purifier for TF Serving",
        description="Write <base>/<name>/<version>/ (a SavedModel in TF Serving's layout), atomically.",
    )
    parser.add_argument(
        "--model",
        required=True,
        help="the purifier's .keras file, or a DefendedClassifier's (its classifier gives the classify signature)",
    )
    parser.add_argument("--base", default="serving/models", help="TF Serving's model base folder")
    parser.add_argument("--name", default="lqvae", help="model name (URL /v1/models/<name>)")
    parser.add_argument("--classifier", help="a Keras classifier (.keras) for the classify signature")
    parser.add_argument("--version", type=int, help="version number (default: newest + 1)")
    parser.add_argument("--no-warmup", action="store_true", help="ship no warm-up request")


def _export(args: argparse.Namespace) -> int:
    from lqvae_tf.serving.export import export_purifier

    path = export_purifier(
        args.model,
        args.base,
        args.name,
        classifier=args.classifier,
        version=args.version,
        warmup=not args.no_warmup,
    )
    print(f"exported: {path}")
    print(f"inspect:  saved_model_cli show --dir {path} --all")
    return 0


def _label(text: str) -> tuple[str, int]:
    name, _, version = text.partition("=")
    if not name or not version.isdigit():
        raise argparse.ArgumentTypeError(f"--label takes name=version, got {text!r}")
    return name, int(version)


# `lqvae serve`'s limit flags: (flag, ServingLimits field, flag units per field unit, what it does).
# The defaults shown in --help are read from ServingLimits, so each is written once.
LIMIT_FLAGS = (
    ("--max_body_bytes", "max_body_bytes", 1, "413 for a request body above this"),
    ("--max_images_per_request", "max_images_per_request", 1, "413 for more examples in one request"),
    ("--rest_api_timeout_in_ms", "request_read_timeout_s", 1000, "408 for a request not fully received in time"),
    (
        "--max_connections",
        "max_connections",
        1,
        "open connections; beyond it a new one replaces the one waiting longest without a request "
        "in progress, or gets 503 if every one has a request",
    ),
    ("--max_header_bytes", "max_header_bytes", 1, "431 for a request line and headers above this"),
    (
        "--linger_ms",
        "linger_s",
        1000,
        "after an answer sent before its request body arrived, how long what the client still sends "
        "is read and dropped before the connection is closed",
    ),
    ("--linger_bytes", "linger_bytes", 1, "the most bytes read and dropped so"),
)


def _add_serve(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve exported versions over TF Serving's REST API",
        description="An embedded server speaking TF Serving's REST API (for machines without "
        "TF Serving). New version folders are picked up without a restart.",
    )
    # Flag names as tensorflow_model_server's, so commands carry over.
    parser.add_argument("--model_base_path", required=True, help="<base>/<name>, holding versions")
    parser.add_argument("--model_name", default="lqvae")
    parser.add_argument(
        "--rest_api_port", "--port", dest="port", type=int, default=8501, help="the REST API's port (default 8501)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    parser.add_argument(
        "--tensorflow_intra_op_parallelism",
        type=int,
        default=0,
        help="threads one TensorFlow op may use (default 0: TensorFlow picks, one per core)",
    )
    parser.add_argument(
        "--tensorflow_inter_op_parallelism",
        type=int,
        default=0,
        help="TensorFlow ops run in parallel (default 0: TensorFlow picks)",
    )
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0)
    parser.add_argument("--version_policy", choices=("latest", "all"), default="latest")
    parser.add_argument(
        "--label",
        dest="labels",
        type=_label,
        action="append",
        default=[],
        metavar="NAME=VERSION",
        help="a version label, e.g. --label stable=1",
    )
    limits = parser.add_argument_group('limits (each refused request gets a 4xx with {"error": ...})')
    defaults = ServingLimits()
    for flag, field, per_unit, text in LIMIT_FLAGS:
        limits.add_argument(flag, type=int, help=f"{text} (default {round(getattr(defaults, field) * per_unit)})")
    batching = parser.add_argument_group("batching (as tensorflow_model_server's)")
    batching.add_argument("--enable_batching", action="store_true", help="merge concurrent predicts into batches")
    batching.add_argument(
        "--batching_parameters_file",
        help="text proto of BatchingParameters (max_batch_size, batch_timeout_micros, num_batch_threads, "
        "max_enqueued_batches); implies --enable_batching",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the port (SO_REUSEPORT), each with its own copy of the model; "
        "on a small CPU 2 overlap HTTP work with model calls (see lqvae_tf.serving.workers). Default 1",
    )
    parser.add_argument(WORKER_FLAG, action="store_true", help=argparse.SUPPRESS)  # set on each worker
    lifecycle = parser.add_argument_group("version lifecycle (as tensorflow_model_server's)")
    lifecycle.add_argument("--max_num_load_retries", type=int, default=5, help="retries of a failed version load")
    lifecycle.add_argument("--load_retry_interval_micros", type=int, default=60 * 1000 * 1000)


def _serve(args: argparse.Namespace) -> int:
    check_workers(args.workers, args.port)
    if args.workers > 1:  # a supervisor that loads no model; each worker is `lqvae serve --reuse_port`
        return run_workers(worker_command(args.argv), args.workers)
    import tensorflow as tf

    from lqvae_tf.serving.batching import BatchingParameters, parse_batching_parameters
    from lqvae_tf.serving.server import serve

    for flag in ("tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism"):
        if getattr(args, flag) < 0:
            raise ValueError(f"--{flag} must be 0 (TensorFlow picks) or a positive number of threads")
    tf.config.threading.set_intra_op_parallelism_threads(args.tensorflow_intra_op_parallelism)
    tf.config.threading.set_inter_op_parallelism_threads(args.tensorflow_inter_op_parallelism)
    batching = None
    if args.batching_parameters_file:
        with open(args.batching_parameters_file) as file:
            batching = parse_batching_parameters(file.read())
    elif args.enable_batching:
        batching = BatchingParameters()
    limits = {}
    for flag, field, per_unit, _ in LIMIT_FLAGS:
        value = getattr(args, flag.removeprefix("--"))
        if value is not None:
            limits[field] = value / per_unit if per_unit != 1 else value
    serve(
        args.model_base_path,
        args.model_name,
        host=args.host,
        port=args.port,
        poll_seconds=args.file_system_poll_wait_seconds,
        limits=ServingLimits(**limits),
        batching=batching,
        version_policy=args.version_policy,
        labels=dict(args.labels),
        max_num_load_retries=args.max_num_load_retries,
        load_retry_interval_s=args.load_retry_interval_micros / 1e6,
        reuse_port=args.reuse_port,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lqvae", description="LQ-VAE adversarial purifier")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_train(subparsers)
    adapt.add_parser(subparsers)
    classifiers.add_parser(subparsers)
    evaluate.add_parser(subparsers)
    reproduce.add_parser(subparsers)
    protect.add_parser(subparsers)
    frontier.add_parser(subparsers)
    _add_export(subparsers)
    _add_serve(subparsers)
    return parser


COMMANDS = {
    "train": _train,
    "adapt": adapt.run,
    "classifiers": classifiers.run,
    "eval": evaluate.run,
    "reproduce": reproduce.run,
    "protect": protect.run,
    "frontier": frontier.run,
    "export": _export,
    "serve": _serve,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lqvae` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command line as given, for reports that record how they were made
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
