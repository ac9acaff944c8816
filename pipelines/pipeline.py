"""The lqvae-tf TFX pipeline definition: `create_pipeline(...)` returns the `tfx.dsl.Pipeline`.

    ImportExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> DataGate
        -> [if no anomalies] Trainer -> RobustnessGate -> [if blessed] ServingPusher

On your own data (`user_data`), `UserDataExampleGen` takes ImportExampleGen's place: it reads
the folder of images, `.npz` or TFRecords inside the pipeline, with Beam, and cuts it 4:1 into
the train and eval splits by ExampleGen's hash of each example. The Trainer streams the
examples through `fn_args.data_accessor` with SchemaGen's schema.

SchemaGen infers the schema from the train split only, so the eval split (and any later data)
is validated against what training saw. The Trainer runs only if ExampleValidator found no
anomaly in any split (the DataGate's verdict), so a corrupted or mis-shaped input file stops
the pipeline with an anomaly report instead of a crash in training. The pusher runs only if the
robustness gate blessed the model. Every path and setting is an argument (TFX's penguin example and taxi
template); the runners (`local_runner.py`, `kubeflow_v2_runner.py`) build them from
`configs.PipelineConfig`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tfx import v1 as tfx

from lqvae_tf.pipeline_components.data_gate import DataGate
from lqvae_tf.pipeline_components.example_gen import COMPONENT_ID as USER_DATA_EXAMPLE_GEN_ID
from lqvae_tf.pipeline_components.example_gen import UserDataExampleGen
from lqvae_tf.pipeline_components.gate import RobustnessGate
from lqvae_tf.pipeline_components.pusher import ServingPusher

TRAIN_SPLIT, EVAL_SPLIT = "train", "eval"
# Component ids, the names they carry in the metadata store and in compiled pipeline specs.
COMPONENT_IDS = (
    "ImportExampleGen",
    "StatisticsGen",
    "SchemaGen",
    "ExampleValidator",
    "DataGate",
    "Trainer",
    "RobustnessGate",
    "ServingPusher",
)
USER_DATA_COMPONENT_IDS = (USER_DATA_EXAMPLE_GEN_ID,) + COMPONENT_IDS[1:]
# The user's dataset is one input split, cut by hash into these (about 80% train, 20% eval).
USER_DATA_SPLIT_BUCKETS = {TRAIN_SPLIT: 4, EVAL_SPLIT: 1}


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    trainer_module_file: str | None,
    purifier_settings: dict[str, Any],
    classifier_settings: dict[str, Any] | None,
    attack_suite_json: str,
    min_clean_accuracy: float,
    gate_examples: int,
    gate_batch_size: int,
    serving_base_dir: str,
    serving_model_name: str,
    metadata_connection_config=None,
    beam_pipeline_args: Sequence[str] = (),
    enable_cache: bool = True,
    trainer_run_fn: str | None = None,
    distribute: str = "auto",
    gate_classifier: dict[str, Any] | None = None,
    user_data: str | None = None,
    image_size: Sequence[int] | None = None,
) -> tfx.dsl.Pipeline:
    """Builds the pipeline.

    Args:
        pipeline_name: the pipeline's name.
        pipeline_root: where the components' artifacts are written.
        data_root: the TFRecords to ingest, in `train/` and `eval/` (see
            `lqvae_tf.pipeline_components.records.write_fashion_mnist_records`).
        trainer_module_file: the file holding the Trainer's `run_fn` (TFX packages it as a wheel
            into the pipeline root, as in penguin); None when `trainer_run_fn` is given.
        purifier_settings: the Trainer's `custom_config["purifier"]` ({"preset", "overrides"}).
        classifier_settings: the Trainer's `custom_config["classifier"]`; None trains no
            classifier (the gate then attacks `gate_classifier`'s).
        attack_suite_json: the robustness gate's checks (see `RobustnessGate`).
        min_clean_accuracy: the gate's threshold on clean purified images, in percent.
        gate_examples: eval images the gate attacks.
        gate_batch_size: images per attack call.
        serving_base_dir: the TF Serving base folder the pusher writes a new version into.
        serving_model_name: the served model's name.
        metadata_connection_config: the metadata store (None for orchestrators that bring
            their own, as Kubeflow and Vertex do).
        beam_pipeline_args: Beam options for the Beam-powered components.
        enable_cache: reuse the outputs of components whose inputs did not change.
        trainer_run_fn: instead of `trainer_module_file`, the dotted path of a `run_fn` importable
            where the Trainer runs (`pipelines.models.trainer_module.run_fn` in a container image,
            as in the taxi template).
        distribute: the Trainer's tf.distribute strategy (`custom_config["distribute"]`): "auto"
            (the workers of TF_CONFIG when it names two or more, else mirrored over every local GPU
            when there are two or more), "multi_worker", "mirrored" or "default".
        gate_classifier: the user's classifier for the gate (`RobustnessGate`'s `classifier_path`,
            `classifier_min_value`, `classifier_max_value`, `classifier_digest`); None or empty
            attacks the Trainer's classifier A. The pusher then exports the purifier alone.
        user_data: your own dataset (a folder of images, a `.npz`, TFRecords), ingested by
            `UserDataExampleGen` instead of `data_root`'s records.
        image_size: (height, width) `user_data`'s images are cropped and resized to (None: their own).
    """
    if (trainer_module_file is None) == (trainer_run_fn is None):
        raise ValueError("give exactly one of trainer_module_file and trainer_run_fn")
    if user_data is not None:
        example_gen = UserDataExampleGen(user_data, USER_DATA_SPLIT_BUCKETS, image_size)
    else:
        example_gen = tfx.components.ImportExampleGen(
            input_base=data_root,
            input_config=tfx.proto.Input(
                splits=[
                    tfx.proto.Input.Split(name=TRAIN_SPLIT, pattern=f"{TRAIN_SPLIT}/*"),
                    tfx.proto.Input.Split(name=EVAL_SPLIT, pattern=f"{EVAL_SPLIT}/*"),
                ]
            ),
        )
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True, exclude_splits=[EVAL_SPLIT]
    )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    data_gate = DataGate(anomalies=example_validator.outputs["anomalies"])
    components = [example_gen, statistics_gen, schema_gen, example_validator, data_gate]

    with tfx.dsl.Cond(data_gate.outputs["blessing"].future()[0].custom_property("blessed") == 1):
        trainer = tfx.components.Trainer(
            module_file=trainer_module_file,
            run_fn=trainer_run_fn,
            examples=example_gen.outputs["examples"],
            schema=schema_gen.outputs["schema"],
            train_args=tfx.proto.TrainArgs(splits=[TRAIN_SPLIT]),
            eval_args=tfx.proto.EvalArgs(splits=[EVAL_SPLIT]),
            custom_config={
                "purifier": purifier_settings,
                "classifier": classifier_settings,
                "distribute": distribute,
            },
        )
        gate = RobustnessGate(
            model=trainer.outputs["model"],
            examples=example_gen.outputs["examples"],
            attack_suite=attack_suite_json,
            min_clean_accuracy=float(min_clean_accuracy),
            num_examples=int(gate_examples),
            split=EVAL_SPLIT,
            batch_size=int(gate_batch_size),
            **(gate_classifier or {}),
        )
        with tfx.dsl.Cond(gate.outputs["blessing"].future()[0].custom_property("blessed") == 1):
            pusher = ServingPusher(
                model=trainer.outputs["model"],
                model_blessing=gate.outputs["blessing"],
                serving_base_dir=serving_base_dir,
                serving_model_name=serving_model_name,
                with_classifier=not gate_classifier,  # the Trainer trained none for a user's classifier
            )
    components += [trainer, gate, pusher]

    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args),
    )
