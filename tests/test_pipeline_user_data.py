"""The pipeline on a user's own data and classifier, as a new user arrives with them.

A folder of 32x32 RGB PNGs in 5 class subfolders, written here, is ingested inside the pipeline
(`UserDataExampleGen`, its Beam steps in two local processes: DirectRunner's multi_processing
mode); the purifier trains on it through the Trainer's `data_accessor`; the robustness gate
attacks the user's own `.keras` classifier behind it (so the Trainer trains none); the pushed
version is then served by the embedded server. The Kubeflow v2 spec of the same pipeline
compiles, and bad data or a classifier that does not fit is refused before anything runs.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from test_image_folder import write_image

pytestmark = pytest.mark.slow

CLASSES = 5
PER_CLASS = 24  # 120 images: about 96 train, 24 eval by ExampleGen's hash split
SIZE = 32
MODEL_NAME = "lqvae"


@pytest.fixture(scope="module")
def pipelines_api():
    """The pipeline modules (importing TFX takes most of a minute on a busy 2-core machine)."""
    from pipelines import configs, local_runner, pipeline

    return configs, local_runner, pipeline


def write_class_folders(folder: Path, classes=CLASSES, per_class=PER_CLASS, size=SIZE, seed=0) -> str:
    """PNGs in one subfolder per class: each class a colour of its own under noise, so a small
    classifier can learn them."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(40, 215, size=(classes, 3))
    for label in range(classes):
        for index in range(per_class):
            noise = rng.normal(0.0, 30.0, size=(size, size, 3))
            image = np.clip(colours[label] + noise, 0, 255).astype(np.uint8)
            write_image(folder / f"class_{label}" / f"{index:03d}.png", image)
    return str(folder)


@pytest.fixture(scope="module")
def user_images(tmp_path_factory) -> str:
    return write_class_folders(tmp_path_factory.mktemp("my_images"))


def users_classifier(image_shape=(SIZE, SIZE, 3), classes=CLASSES):
    """A classifier as a user might write one: Sequential, softmax output, [0, 1] pixels in."""
    import keras

    return keras.Sequential(
        [
            keras.Input(shape=image_shape),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(classes, activation="softmax"),
        ],
        name="users_classifier",
    )


@pytest.fixture(scope="module")
def user_classifier(tmp_path_factory, user_images) -> str:
    """The user's classifier, trained a few epochs on their images and saved as `.keras`."""
    import keras

    from lqvae_tf.data import user_dataset

    keras.utils.set_random_seed(0)
    model = users_classifier()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    model.fit(user_dataset(user_images, "all").shuffle(256, seed=0).batch(32), epochs=3, verbose=0)
    path = str(tmp_path_factory.mktemp("classifier") / "mine.keras")
    model.save(path)
    return path


@pytest.fixture(scope="module")
def user_data_run(pipelines_api, tmp_path_factory, user_images, user_classifier):
    """The tiny pipeline on the user's folder and classifier, the Beam steps in two processes."""
    configs, local_runner, _ = pipelines_api
    small = configs.small_test_config(
        str(tmp_path_factory.mktemp("pipeline")),
        classifier_path=user_classifier,
        gate_examples=16,
        gate_batch_size=16,
        beam_pipeline_args=configs.direct_runner_args(2),
    )
    config = configs.with_user_data(small, user_images)
    local_runner.run(config)
    return config


def _store(config):
    from ml_metadata.metadata_store import metadata_store
    from tfx import v1 as tfx

    return metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    )


def _count_examples(split_uri: str) -> int:
    import tensorflow as tf

    files = tf.io.gfile.glob(os.path.join(split_uri, "*"))
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def test_the_users_folder_is_ingested_inside_the_pipeline(pipelines_api, user_data_run):
    _, _, pipeline = pipelines_api
    assert "--direct_running_mode=multi_processing" in user_data_run.beam_pipeline_args
    assert not os.path.exists(user_data_run.data_root)  # nothing converted before the pipeline started
    for component_id in pipeline.USER_DATA_COMPONENT_IDS:
        assert os.path.isdir(os.path.join(user_data_run.pipeline_root, component_id)), component_id
    store = _store(user_data_run)
    (examples,) = store.get_artifacts_by_type("Examples")
    counts = {split: _count_examples(os.path.join(examples.uri, f"Split-{split}")) for split in ("train", "eval")}
    assert sum(counts.values()) == CLASSES * PER_CLASS
    assert counts["eval"] >= user_data_run.gate_examples and counts["train"] > 3 * counts["eval"] // 2
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx import v1 as tfx

    (schema_artifact,) = store.get_artifacts_by_type("Schema")
    schema = tfx.utils.parse_pbtxt_file(os.path.join(schema_artifact.uri, "schema.pbtxt"), schema_pb2.Schema())
    image = next(feature for feature in schema.feature if feature.name == "image")
    assert [dim.size for dim in image.shape.dim] == [SIZE * SIZE * 3]  # SchemaGen saw the images' shape


def test_the_trainer_fits_the_purifier_to_the_data_and_trains_no_classifier(user_data_run):
    (model,) = _store(user_data_run).get_artifacts_by_type("Model")
    serving = os.path.join(model.uri, "Format-Serving")
    assert "classifier.keras" not in os.listdir(serving)  # the gate attacks the user's instead
    with open(os.path.join(serving, "config.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    assert config["image_shape"] == [SIZE, SIZE, 3] and config["architecture"] == "conv"
    with open(os.path.join(serving, "history.json"), encoding="utf-8") as handle:
        assert set(json.load(handle)) == {"purifier"}


def test_the_gate_attacks_the_users_classifier_and_the_model_is_pushed(user_data_run):
    store = _store(user_data_run)
    (evaluation,) = store.get_artifacts_by_type("ModelEvaluation")
    with open(os.path.join(evaluation.uri, "robustness.json"), encoding="utf-8") as handle:
        report = json.load(handle)
    assert report["classifier"] == user_data_run.classifier_path
    assert report["blessed"] is True and report["n"] == user_data_run.gate_examples
    assert [check["check"] for check in report["checks"]] == ["clean", "accuracy_fgsm", "accuracy_bpda-pgd"]
    (pushed,) = store.get_artifacts_by_type("PushedModel")
    assert pushed.custom_properties["pushed"].int_value == 1
    assert os.listdir(os.path.join(user_data_run.serving_base_dir, MODEL_NAME)) == ["1"]


def test_the_embedded_server_purifies_the_users_images_with_the_pushed_version(user_data_run, user_images):
    import keras

    from lqvae_tf.data import user_dataset
    from lqvae_tf.serving import RestClient
    from lqvae_tf.serving.server import running_server

    images = np.stack([image for image, _ in user_dataset(user_images, "all", limit=4).as_numpy_iterator()])
    (model,) = _store(user_data_run).get_artifacts_by_type("Model")
    purifier = keras.models.load_model(os.path.join(model.uri, "Format-Serving", "purifier.keras"))
    with running_server(os.path.join(user_data_run.serving_base_dir, MODEL_NAME), MODEL_NAME) as url:
        purified = RestClient(url, MODEL_NAME).predict(images)
    assert purified.shape == (4, SIZE, SIZE, 3)
    np.testing.assert_allclose(purified, np.asarray(purifier.purify(images)), atol=1e-4)


def test_the_user_data_pipeline_compiles_for_kubeflow_v2(pipelines_api, tmp_path, user_images, user_classifier):
    configs, _, pipeline = pipelines_api
    from pipelines import kubeflow_v2_runner

    config = configs.default_config().replace(
        output_root="gs://example-bucket/lqvae",
        classifier_path=user_classifier,
        beam_pipeline_args=("--runner=DataflowRunner", "--project=example-project", "--region=europe-west4"),
    )
    config = configs.with_user_data(config, user_images)
    path = kubeflow_v2_runner.compile_pipeline(config, str(tmp_path / "lqvae_pipeline.json"))
    with open(path, encoding="utf-8") as handle:
        spec = json.load(handle)["pipelineSpec"]
    assert set(spec["root"]["dag"]["tasks"]) == set(pipeline.USER_DATA_COMPONENT_IDS)
    executors = spec["deploymentSpec"]["executors"]
    example_gen = json.dumps(executors["UserDataExampleGen_executor"])
    assert "lqvae_tf.pipeline_components.example_gen.Executor" in example_gen
    assert "--runner=DataflowRunner" in example_gen
    parameters = spec["root"]["dag"]["tasks"]["Trainer"]["inputs"]["parameters"]
    custom_config = json.loads(parameters["custom_config"]["runtimeValue"]["constantValue"]["stringValue"])
    assert custom_config["classifier"] is None  # the gate attacks the user's classifier
    assert custom_config["purifier"]["overrides"]["image_shape"] == [SIZE, SIZE, 3]
    gate = spec["root"]["dag"]["tasks"]["RobustnessGate"]["inputs"]["parameters"]
    assert gate["classifier_path"]["runtimeValue"]["constantValue"]["stringValue"] == user_classifier


def test_the_example_gen_finds_each_form_of_dataset_and_reads_it_in_disjoint_shards(tmp_path, user_images):
    from lqvae_tf.data import user_dataset
    from lqvae_tf.pipeline_components.example_gen import dataset_path, input_source

    npz = tmp_path / "mine.npz"
    np.savez(npz, x=np.zeros((4, 8, 8), np.uint8), y=np.arange(4) % 2)
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "labels.csv").write_text("file,label\n")
    for path, expected in (
        (user_images, (user_images, "*/*")),  # class subfolders: every image is in the input fingerprint
        (str(npz), (str(tmp_path), "mine.npz")),
        (str(tmp_path / "flat"), (str(tmp_path / "flat"), "*")),
    ):
        assert input_source(path) == expected
        assert dataset_path(*expected) == path

    whole = list(user_dataset(user_images, "all").as_numpy_iterator())
    shards = [list(user_dataset(user_images, "all", shard=(index, 3)).as_numpy_iterator()) for index in range(3)]
    assert [len(shard) for shard in shards] == [len(whole[index::3]) for index in range(3)]
    for index, shard in enumerate(shards):
        for (image, label), (expected_image, expected_label) in zip(shard, whole[index::3]):
            np.testing.assert_array_equal(image, expected_image)
            assert label == expected_label
    with pytest.raises(ValueError, match="shard must be"):
        user_dataset(user_images, "all", shard=(3, 3))


def test_the_example_gen_reads_and_resizes_the_images_in_beam(user_images):
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from lqvae_tf.pipeline_components import example_gen

    component = example_gen.UserDataExampleGen(user_images, {"train": 4, "eval": 1}, image_size=(16, 12))
    # As the launcher hands them to the executor (the component already holds its protos as JSON).
    exec_properties = {key: component.exec_properties[key] for key in ("input_base", "custom_config")}
    with beam.Pipeline() as pipeline:
        records = pipeline | example_gen._UserDataToExample(exec_properties, "*/*")
        shapes = records | beam.Map(
            lambda example: (
                len(example.features.feature["image"].int64_list.value),
                example.features.feature["label"].int64_list.value[0],
            )
        )
        expected = [(16 * 12 * 3, label) for label in range(CLASSES) for _ in range(PER_CLASS)]
        assert_that(shapes, equal_to(expected))


def test_bad_data_is_refused_before_the_run_naming_the_file(pipelines_api, tmp_path, user_images):
    _, local_runner, _ = pipelines_api
    folder = write_class_folders(tmp_path / "images", classes=2, per_class=2)
    broken = os.path.join(folder, "class_1", "001.png")
    with open(broken, "wb") as handle:
        handle.write(b"not a png")
    output = tmp_path / "run"
    assert local_runner.main(["--config", "small", "--output", str(output), "--data", folder]) == 2
    assert not output.exists()

    with pytest.raises(ValueError, match=re.escape(broken)):
        local_runner._parse(["--config", "small", "--output", str(output), "--data", folder])


def test_a_classifier_that_does_not_fit_the_data_is_refused_before_the_run(pipelines_api, tmp_path, user_images):
    configs, local_runner, _ = pipelines_api
    path = str(tmp_path / "grey_28.keras")
    users_classifier(image_shape=(28, 28, 1)).save(path)
    config = configs.with_user_data(configs.small_test_config(str(tmp_path / "run"), classifier_path=path), user_images)
    with pytest.raises(ValueError, match=r"takes inputs of shape \(28, 28, 1\); the data's images are \(32, 32, 3\)"):
        local_runner.build(config)
    assert not os.path.exists(config.output_root)
