"""Runs the pipeline on this machine: LocalDagRunner, an SQLite metadata store, Beam's DirectRunner.

    python -m pipelines.local_runner                    # the default configuration (configs.default_config)
    python -m pipelines.local_runner --output runs/pipeline --train-limit 2000 --epochs 1

    python -m pipelines.local_runner --config small --output /tmp/smoke    # the tests' tiny configuration

The TFX CLI runs this file as a script too (`tfx pipeline create --engine local
--pipeline_path pipelines/local_runner.py`, then `tfx run create --engine local --pipeline_name
lqvae`, both from the repository root): it intercepts `LocalDagRunner().run` to record the
pipeline, and passes no arguments, so they then come from $LQVAE_PIPELINE_ARGS (the same
options, e.g. "--config small --output /tmp/smoke"), the run folder also from
$LQVAE_PIPELINE_OUTPUT (default runs/pipeline). A second run with nothing changed reuses every
cached component output.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

if not __package__:  # run as a file (the TFX CLI does): make the repository's `pipelines` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import logging  # noqa: E402
from tfx import v1 as tfx  # noqa: E402

from lqvae_tf.atomic import write_text  # noqa: E402
from lqvae_tf.pipeline_components.gate import REPORT_FILE, verdict_markdown  # noqa: E402
from lqvae_tf.pipeline_components.records import write_fashion_mnist_records  # noqa: E402
from pipelines import configs  # noqa: E402
from pipelines.pipeline import create_pipeline  # noqa: E402

# What the TFX CLI cannot pass (it runs this file with no arguments): options, and the run folder.
ARGS_ENV = "LQVAE_PIPELINE_ARGS"
OUTPUT_ENV = "LQVAE_PIPELINE_OUTPUT"
CONFIGS = ("default", "small")


def build(config: configs.PipelineConfig) -> tfx.dsl.Pipeline:
    """Writes the input TFRecords (once) and returns the pipeline for `config`, with SQLite metadata."""
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


def _parse(argv: list[str]) -> configs.PipelineConfig:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config", choices=CONFIGS, default="default", help="default_config() or small_test_config() of configs.py"
    )
    parser.add_argument("--output", help=f"the run folder (default ${OUTPUT_ENV}, else runs/pipeline)")
    parser.add_argument("--train-limit", type=int, help="ingest the first N training images only")
    parser.add_argument("--eval-limit", type=int, help="ingest the first N test images only")
    parser.add_argument("--epochs", type=int, help="purifier epochs (over the preset's)")
    parser.add_argument("--gate-examples", type=int, help="eval images the robustness gate attacks")
    parser.add_argument("--serving-dir", help="the TF Serving base folder (default <output>/serving)")
    parser.add_argument(
        "--beam-arg", action="append", default=None, help="a Beam pipeline option (repeatable), e.g. --runner=..."
    )
    args = parser.parse_args(argv or shlex.split(os.environ.get(ARGS_ENV, "")))
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
    }
    if args.epochs is not None:
        changes["purifier_overrides"] = {**config.purifier_overrides, "epochs": args.epochs}
    return config.replace(**{key: value for key, value in changes.items() if value is not None})


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    chosen = _parse(sys.argv[1:])
    print(json.dumps({"output_root": chosen.output_root, "serving": chosen.serving_base_dir}))
    run(chosen)
    print(latest_report(chosen) or "The robustness gate did not run (see ExampleValidator's anomalies).")
