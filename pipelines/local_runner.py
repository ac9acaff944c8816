"""Runs the pipeline on this machine: LocalDagRunner, an SQLite metadata store, Beam's DirectRunner.

    python -m pipelines.local_runner                    # the default configuration (configs.default_config)
    python -m pipelines.local_runner --output runs/pipeline --train-limit 2000 --epochs 1

    python -m pipelines.local_runner --config small --output /tmp/smoke    # the tests' tiny configuration

    python -m pipelines.local_runner --data my_images/ --classifier mine.keras --beam-workers 2
        # your own images (one subfolder per class) and classifier, the Beam components in 2 processes

The TFX CLI runs this file as a script too (`tfx pipeline create --engine local
--pipeline_path pipelines/local_runner.py`, then `tfx run create --engine local --pipeline_name
lqvae`, both from the repository root): it intercepts `LocalDagRunner().run` to record the
pipeline, and passes no arguments, so they then come from $LQVAE_PIPELINE_ARGS (the same
options, e.g. "--config small --output /tmp/smoke"), the run folder also from
$LQVAE_PIPELINE_OUTPUT (default runs/pipeline). A second run with nothing changed reuses every
cached component output.

The terminal shows one line per component (seconds, ran or cached), a line per training epoch
and per gate check, and the gate's verdict; the full log (TFX, Beam, TensorFlow, Keras) goes to
<output>/pipeline.log (`pipelines.console`). `--verbose` puts everything on the terminal instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import tempfile
import time
import warnings

if not __package__:  # run as a file (the TFX CLI does): make the repository's `pipelines` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_IMPORT_NOTICES = None  # run as the main job: what the imports below wrote to standard error
if __name__ == "__main__":  # the main job: TensorFlow's C++ INFO and WARNING lines are noise on a terminal
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Importing TensorFlow writes C++ lines to standard error that no setting silences (CUDA
    # plugins registering twice: "Unable to register cuDNN factory ..."), before the log file
    # exists: they are held in a temporary file and go into the run's log (main).
    _IMPORT_NOTICES = tempfile.TemporaryFile()
    _terminal_stderr = os.dup(2)
    os.dup2(_IMPORT_NOTICES.fileno(), 2)
try:
    from absl import logging

    with warnings.catch_warnings():  # import-time notices (google-api-core on Python 3.10), before the log file exists
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        from tfx import v1 as tfx

    from lqvae_tf.atomic import write_text
    from lqvae_tf.config import GuidanceConfig
    from lqvae_tf.pipeline_components.gate import REPORT_FILE, load_user_classifier, verdict_markdown
    from lqvae_tf.pipeline_components.records import write_fashion_mnist_records
    from lqvae_tf.training import adversarial_flags, data_flags
    from pipelines import configs, console
    from pipelines.pipeline import create_pipeline
finally:  # a failed import's traceback reaches the terminal
    if _IMPORT_NOTICES is not None:
        sys.stderr.flush()
        os.dup2(_terminal_stderr, 2)
        os.close(_terminal_stderr)

# What the TFX CLI cannot pass (it runs this file with no arguments): options, and the run folder.
ARGS_ENV = "LQVAE_PIPELINE_ARGS"
OUTPUT_ENV = "LQVAE_PIPELINE_OUTPUT"
CONFIGS = ("default", "small")
LOG_FILE = "pipeline.log"


def build(config: configs.PipelineConfig) -> tfx.dsl.Pipeline:
    """Returns the pipeline for `config`, with SQLite metadata.

    For Fashion-MNIST it first writes the input TFRecords (once); your own data (`data_path`) is
    read by the pipeline's `UserDataExampleGen` itself.
    """
    check_gate_classifier(config)
    if config.data_path is None:
        write_fashion_mnist_records(config.idx_dir, config.data_root, config.train_limit, config.eval_limit)
    os.makedirs(config.output_root, exist_ok=True)
    write_text(os.path.join(config.output_root, "pipeline_config.json"), config.to_json())
    return create_pipeline(
        **config.pipeline_arguments(),
        trainer_module_file=configs.TRAINER_MODULE_FILE,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path),
    )


def run(config: configs.PipelineConfig) -> None:
    """Runs the pipeline for `config` to completion with LocalDagRunner."""
    tfx.orchestration.LocalDagRunner().run(build(config))


def _numbered(folder: str) -> list[int]:
    """The integer-named entries of `folder` (execution ids, serving versions), ascending."""
    return sorted(int(name) for name in os.listdir(folder) if name.isdigit()) if os.path.isdir(folder) else []


def latest_report(config: configs.PipelineConfig) -> str | None:
    """Writes `<output>/robustness_report.md` from the newest robustness gate run; returns its text.

    None when the gate has not run (the data gate found an anomaly, or the Trainer failed).
    """
    folder = os.path.join(config.pipeline_root, "RobustnessGate", "evaluation")
    runs = (
        sorted((int(name) for name in os.listdir(folder) if name.isdigit()), reverse=True)
        if os.path.isdir(folder)
        else []
    )
    if not runs:
        return None
    evaluation = os.path.join(folder, str(runs[0]))
    with open(os.path.join(evaluation, REPORT_FILE), encoding="utf-8") as handle:
        text = verdict_markdown(json.load(handle))
    serving = os.path.join(config.serving_base_dir, config.serving_model_name)
    text += f"\nServing versions in {serving}: {_numbered(serving) or 'none'}. Full tables: {evaluation}/results.md\n"
    write_text(os.path.join(config.output_root, "robustness_report.md"), text)
    return text


def _value_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(value) for value in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH (e.g. 0,255), got {text!r}") from None
    return low, high


def check_gate_classifier(config: configs.PipelineConfig) -> None:
    """Refuses, before anything runs, a user classifier that does not fit the data (see
    `load_user_classifier`): the gate's, and the one adversarial retraining attacks."""
    if config.classifier_path is not None:
        load_user_classifier(config.classifier_path, config.dataset.image_shape, config.classifier_range)
    adversarial = config.trainer_adversarial
    if adversarial is not None and adversarial.classifier not in (None, os.path.abspath(config.classifier_path or "")):
        load_user_classifier(adversarial.classifier, config.dataset.image_shape, adversarial.classifier_range)


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config", choices=CONFIGS, default="default", help="default_config() or small_test_config() of configs.py"
    )
    parser.add_argument("--output", help=f"the run folder (default ${OUTPUT_ENV}, else runs/pipeline)")
    parser.add_argument("--train-limit", type=int, help="ingest the first N training images only")
    parser.add_argument("--eval-limit", type=int, help="ingest the first N test images only")
    data_flags.add_arguments(parser, instead_of="Fashion-MNIST")
    parser.add_argument(
        "--epochs", type=int, help="purifier epochs (over the preset's; warm-started: over warm_start_epochs)"
    )
    parser.add_argument(
        "--base-model",
        metavar="MODEL",
        help="warm-start the purifier from a trained preset's name or a .keras purifier; 'none' trains from "
        "random weights (default: auto, the shipped preset that fits)",
    )
    parser.add_argument("--gate-examples", type=int, help="eval images the robustness gate attacks")
    parser.add_argument("--serving-dir", help="the TF Serving base folder (default <output>/serving)")
    parser.add_argument("--classifier", help="your own .keras classifier for the robustness gate to attack")
    parser.add_argument(
        "--classifier-range",
        type=_value_range,
        metavar="LOW,HIGH",
        help="the pixel range --classifier takes (default 0,1)",
    )
    parser.add_argument(
        "--beam-arg", action="append", default=None, help="a Beam pipeline option (repeatable), e.g. --runner=..."
    )
    parser.add_argument(
        "--beam-workers",
        type=int,
        metavar="N",
        help="run the Beam components in N local processes (DirectRunner's multi_processing mode)",
    )
    parser.add_argument(
        "--adapt-epochs",
        type=int,
        metavar="N",
        help="fine-tune the Trainer's classifier N epochs on purified images (the gate reports it both ways)",
    )
    adversarial_flags.add_arguments(parser)
    guidance = parser.add_argument_group(
        "classifier guidance",
        "also train the purifier to keep a classifier's answers (see lqvae_tf.GuidanceConfig)",
    )
    guidance.add_argument(
        "--guide-weight",
        type=float,
        metavar="W",
        help="guide with weight W: by --guide-classifier, else --classifier, else the Trainer's own "
        "classifier (then trained before the purifier)",
    )
    guidance.add_argument("--guide-classifier", metavar="MODEL", help="the guiding classifier (.keras, [0, 1] images)")
    guidance.add_argument("--no-guidance", action="store_true", help="no guidance, whatever the configuration has")
    parser.add_argument("--verbose", action="store_true", help="every log line on the terminal, no log file")
    return parser.parse_args(argv or shlex.split(os.environ.get(ARGS_ENV, "")))


def _parse(argv: list[str]) -> configs.PipelineConfig:
    return _config(_arguments(argv))


def _config(args: argparse.Namespace) -> configs.PipelineConfig:
    output = args.output or os.environ.get(OUTPUT_ENV)
    if args.config == "small":
        config = configs.small_test_config(os.path.abspath(output or "runs/pipeline_small"))
    else:
        config = configs.default_config()
    changes = {
        "output_root": output and os.path.abspath(output),
        "train_limit": args.train_limit,
        "eval_limit": args.eval_limit,
        "gate_examples": args.gate_examples,
        "serving_dir": args.serving_dir and os.path.abspath(args.serving_dir),
        "beam_pipeline_args": args.beam_arg and tuple(args.beam_arg),
        "classifier_path": args.classifier and os.path.abspath(args.classifier),
        "classifier_range": args.classifier_range,
        "classifier_adapt_epochs": args.adapt_epochs,
    }
    if args.beam_workers is not None:
        if args.beam_arg:
            raise ValueError("give --beam-workers or --beam-arg, not both")
        changes["beam_pipeline_args"] = configs.direct_runner_args(args.beam_workers)
    adversarial = adversarial_flags.from_args(args, config.adversarial)  # None: clean (--adversarial none)
    guidance = _guidance(args, config.guidance)  # None: unguided (--no-guidance)
    if args.epochs is not None:
        changes["purifier_overrides"] = {**config.purifier_overrides, "epochs": args.epochs}
        changes["warm_start_epochs"] = args.epochs
    base = args.base_model
    if base is not None:
        config = config.replace(
            base_model=None if base == "none" else os.path.abspath(base) if os.path.isfile(base) else base
        )
    if args.data is None:
        if args.image_size is not None:
            raise ValueError("--image-size is for --data (Fashion-MNIST has its own size)")
    elif args.train_limit is not None or args.eval_limit is not None:
        raise ValueError("--train-limit and --eval-limit slice Fashion-MNIST; they do not apply to --data")
    config = config.replace(
        adversarial=adversarial,
        guidance=guidance,
        **{key: value for key, value in changes.items() if value is not None},
    )
    return config if args.data is None else configs.with_user_data(config, args.data, args.image_size)


def _guidance(args: argparse.Namespace, base: GuidanceConfig | None) -> GuidanceConfig | None:
    """`base` (the configuration's guidance) with the guidance flags applied."""
    if args.no_guidance:
        if args.guide_weight is not None or args.guide_classifier is not None:
            raise ValueError("--guide-weight and --guide-classifier contradict --no-guidance")
        return None
    if args.guide_weight is None and args.guide_classifier is None:
        return base
    classifier = args.guide_classifier and os.path.abspath(args.guide_classifier)
    changes = {"weight": args.guide_weight, "classifier": classifier}
    return dataclasses.replace(base or GuidanceConfig(), **{k: v for k, v in changes.items() if v is not None})


def _write_import_notices() -> None:
    """What the imports wrote to standard error (run as the main job), now on standard error."""
    if _IMPORT_NOTICES is not None and _IMPORT_NOTICES.tell():
        _IMPORT_NOTICES.seek(0)
        sys.stderr.write(_IMPORT_NOTICES.read().decode("utf-8", errors="replace"))
        sys.stderr.flush()
        _IMPORT_NOTICES.truncate(0)


def main(argv: list[str]) -> int:
    """Runs the pipeline with a quiet terminal (see the module docstring); 0 on success."""
    args = _arguments(argv)
    try:
        config = _config(args)
    except (ValueError, FileNotFoundError) as error:  # contradictory options or bad data, named
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.set_verbosity(logging.INFO)
    if args.verbose:
        _write_import_notices()
        run(config)
    else:
        log_path = os.path.join(config.output_root, LOG_FILE)
        print(f"Pipeline {config.pipeline_name} in {config.output_root}; full log: {log_path}", flush=True)
        started = time.monotonic()
        with console.quiet_terminal(log_path):
            _write_import_notices()  # into the log
            try:
                run(config)
            except Exception as error:  # shown in one line here, with its traceback in the log
                logging.exception("The pipeline failed")
                failure = error
            else:
                failure = None
        if failure is not None:
            print(f"The pipeline failed after {time.monotonic() - started:.0f} s: {type(failure).__name__}: {failure}")
            print(f"The traceback is at the end of {log_path}")
            return 1
        print(f"Finished in {time.monotonic() - started:.0f} s.\n")
    print(latest_report(config) or "The robustness gate did not run (see ExampleValidator's anomalies).")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
