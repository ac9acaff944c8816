"""Compiles the same pipeline definition for Kubeflow Pipelines v2 / Vertex AI Pipelines (offline).

    python -m pipelines.kubeflow_v2_runner --output-root gs://BUCKET/lqvae \\
        --serving-dir gs://BUCKET/lqvae/serving \\
        --image gcr.io/PROJECT/lqvae-tf-pipeline --output lqvae_pipeline.json \\
        --beam-arg=--runner=DataflowRunner --beam-arg=--project=PROJECT --beam-arg=--region=REGION \\
        --beam-arg=--temp_location=gs://BUCKET/tmp

writes a JSON `PipelineJob` spec to submit with `google.cloud.aiplatform.PipelineJob(
template_path="lqvae_pipeline.json", ...)` or the KFP v2 client. Nothing is contacted: compiling
needs no cluster. The image must hold this repository on its Python path (the Trainer imports
`pipelines.models.trainer_module`, the custom components `lqvae_tf`); the data root must already hold the TFRecords
(`lqvae_tf.pipeline_components.records.write_fashion_mnist_records`). Beam arguments pass through
to the Beam-powered components (the ExampleGen, StatisticsGen), so they run on Dataflow, Flink
or Spark.

On your own data, `--data PATH` (and `--classifier model.keras`) compile the user-data pipeline
(`UserDataExampleGen` reads the files inside the pipeline). The dataset is inspected here, to
size the purifier; the components read it with file APIs, so on Vertex give a path they see
too, such as a Cloud Storage FUSE mount (`/gcs/BUCKET/my_images`).
"""

from __future__ import annotations

import argparse
import os
import sys

from tfx import v1 as tfx

from lqvae_tf.training import data_flags
from pipelines import configs
from pipelines.pipeline import create_pipeline

DEFAULT_IMAGE = "gcr.io/tfx-oss-public/tfx:1.16.0"  # replace with an image holding lqvae-tf
# The Trainer imports its `run_fn` inside the image (which must hold this repository on its
# Python path), as the taxi template does; a module file would be packaged into the pipeline
# root at compile time, which needs that (remote) root to be writable from here.
TRAINER_RUN_FN = "pipelines.models.trainer_module.run_fn"


def compile_pipeline(
    config: configs.PipelineConfig,
    output_path: str,
    image: str = DEFAULT_IMAGE,
) -> str:
    """Writes the KFP v2 / Vertex JSON pipeline spec of `config`'s pipeline to `output_path`.

    The config's `output_root` (pipeline root, data and serving folders under it) is usually a
    `gs://` path; its `beam_pipeline_args` go to the Beam-powered components.
    """
    pipeline = create_pipeline(
        **config.pipeline_arguments(),
        trainer_module_file=None,
        trainer_run_fn=TRAINER_RUN_FN,
        metadata_connection_config=None,  # Kubeflow and Vertex bring their own metadata store
    )
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=os.path.dirname(os.path.abspath(output_path)),
        output_filename=os.path.basename(output_path),
    )
    runner.run(pipeline)
    return output_path


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-root", required=True, help="the run folder, e.g. gs://BUCKET/lqvae")
    parser.add_argument("--serving-dir", help="the TF Serving base folder (default <output-root>/serving)")
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="the container image the components run in")
    parser.add_argument("--output", default="lqvae_pipeline.json", help="the JSON spec to write")
    parser.add_argument("--beam-arg", action="append", default=[], help="a Beam pipeline option (repeatable)")
    # Read here and by the components: a path both see, e.g. a Cloud Storage FUSE mount /gcs/BUCKET/...
    data_flags.add_arguments(parser, instead_of="Fashion-MNIST")
    parser.add_argument("--classifier", help="your own .keras classifier for the robustness gate (same path rule)")
    args = parser.parse_args(argv)
    changes = {"output_root": args.output_root, "serving_dir": args.serving_dir, "classifier_path": args.classifier}
    if args.beam_arg:
        changes["beam_pipeline_args"] = tuple(args.beam_arg)
    config = configs.default_config().replace(**{key: value for key, value in changes.items() if value is not None})
    if args.data is not None:
        config = configs.with_user_data(config, args.data, args.image_size)
    print(compile_pipeline(config, args.output, image=args.image))


if __name__ == "__main__":
    main(sys.argv[1:])
