"""The TFX pipeline end to end (LocalDagRunner, SQLite metadata, DirectRunner) on a small slice.

One pipeline root is shared by two runs, as TFX's penguin e2e test re-runs its pipeline: first
with a gate threshold no model can meet (nothing may be pushed), then with thresholds met and
the user's own classifier in the gate (the data components come from the cache; the Trainer
re-runs without classifier A, the gate re-runs and the pusher writes version 1, which the
embedded server then serves). A third, separate run ingests a mis-shaped
eval file and must stop at ExampleValidator with an anomaly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow

MODEL_NAME = "lqvae"


@pytest.fixture(scope="module")
def pipelines_api():
    """The pipeline modules (importing TFX takes most of a minute on a busy 2-core machine)."""
    from pipelines import configs, local_runner, pipeline

    return configs, local_runner, pipeline


def _store(config):
    from ml_metadata.metadata_store import metadata_store
    from tfx import v1 as tfx

    return metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    )


def _versions(config) -> list[str]:
    folder = os.path.join(config.serving_base_dir, MODEL_NAME)
    return sorted(name for name in os.listdir(folder) if name.isdigit()) if os.path.isdir(folder) else []


def _node_id(store, execution) -> str:
    """The pipeline node (component id) an execution ran for."""
    contexts = store.get_contexts_by_execution(execution.id)
    names = [c.name for c in contexts if store.get_context_types_by_id([c.type_id])[0].name == "node"]
    return names[0].rsplit(".", 1)[-1] if names else ""


@pytest.fixture(scope="module")
def refused_run(pipelines_api, tmp_path_factory):
    """A run whose gate demands 100% accuracy under FGSM: the model must not be pushed. Its
    Trainer trains classifier A first, guides the purifier with it (`guidance` without a
    classifier) and retrains the purifier against it (mode end_to_end, one PGD step), then adapts
    it to the purifier for one epoch, so the gate reports it both ways."""
    configs, local_runner, _ = pipelines_api
    root = str(tmp_path_factory.mktemp("pipeline"))
    strict = configs.small_test_config(root)
    impossible = (configs.AttackCheck("fgsm", min_accuracy=100.0, params={"eps": 0.3}),) + strict.attack_suite[1:]
    config = strict.replace(
        attack_suite=impossible,
        min_clean_accuracy=100.0,
        classifier_adapt_epochs=1,
        guidance={"weight": 1.0},
        adversarial={"mode": "end_to_end", "steps": 1},
    )
    local_runner.run(config)
    return config, _versions(config)


def small_classifier(image_shape=(28, 28, 1), classes=10, rescale=None, name="users_classifier"):
    """A user's own classifier as one might write it: a Sequential `keras.Model` ending in a softmax."""
    import keras

    layers = [keras.Input(shape=image_shape)]
    layers += [keras.layers.Rescaling(rescale)] if rescale else []
    layers += [
        keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(classes, activation="softmax"),
    ]
    return keras.Sequential(layers, name=name)


@pytest.fixture(scope="module")
def user_classifier(tmp_path_factory) -> str:
    """A user's `.keras` classifier for the pushed run's gate (untrained: the thresholds are 0)."""
    path = str(tmp_path_factory.mktemp("classifier") / "mine.keras")
    small_classifier().save(path)
    return path


@pytest.fixture(scope="module")
def pushed_run(pipelines_api, refused_run, user_classifier):
    """The same pipeline root re-run with thresholds that are met, and the user's own classifier
    in the gate (the refused run's was the Trainer's classifier A): version 1 is pushed."""
    configs, local_runner, _ = pipelines_api
    config = configs.small_test_config(refused_run[0].output_root, classifier_path=user_classifier)
    local_runner.run(config)
    return config


def test_every_component_leaves_its_artifacts(pipelines_api, pushed_run):
    _, _, pipeline = pipelines_api
    store = _store(pushed_run)
    for type_name in (
        "Examples",
        "ExampleStatistics",
        "Schema",
        "ExampleAnomalies",
        "lqvae.DataBlessing",
        "Model",
        "ModelRun",
        "ModelEvaluation",
        "ModelBlessing",
        "PushedModel",
    ):
        artifacts = store.get_artifacts_by_type(type_name)
        assert artifacts, f"no {type_name} artifact in the metadata store"
        for artifact in artifacts:
            assert os.path.exists(artifact.uri) and os.listdir(artifact.uri), f"{type_name} at {artifact.uri} is empty"
    for component_id in pipeline.COMPONENT_IDS:
        assert os.path.isdir(os.path.join(pushed_run.pipeline_root, component_id)), component_id
    # The refused run's Trainer trained classifier A for the gate; the pushed run's, whose gate
    # attacks the user's classifier, trained the purifier only.
    refused, pushed = (
        set(os.listdir(os.path.join(model.uri, "Format-Serving")))
        for model in sorted(store.get_artifacts_by_type("Model"), key=lambda a: a.id)
    )
    assert {"purifier.keras", "classifier.keras", "classifier_unadapted.keras", "config.json"} <= refused
    assert {"purifier.keras", "config.json"} <= pushed and "classifier.keras" not in pushed
    # The refused run's purifier was guided by, and retrained against, the classifier its Trainer
    # trained: the guidance and adversarial losses are in its history; the pushed run's has neither.
    histories = [
        json.load(open(os.path.join(model.uri, "Format-Serving", "history.json"), encoding="utf-8"))
        for model in sorted(store.get_artifacts_by_type("Model"), key=lambda a: a.id)
    ]
    assert {"guide_hard", "loss_adv"} <= set(histories[0]["purifier"]) and "classifier" in histories[0]
    assert not {"guide_hard", "loss_adv"} & set(histories[1]["purifier"]) and "classifier" not in histories[1]
    for run in store.get_artifacts_by_type("ModelRun"):
        assert any("tfevents" in name for _, _, files in os.walk(run.uri) for name in files), "no TensorBoard logs"


def test_unmet_threshold_is_not_blessed_and_leaves_the_serving_folder_untouched(refused_run, pushed_run):
    from lqvae_tf.pipeline_components.gate import verdict_markdown

    config, versions_after_refusal = refused_run
    assert versions_after_refusal == []
    blessings = sorted(_store(config).get_artifacts_by_type("ModelBlessing"), key=lambda a: a.id)
    refused = blessings[0].custom_properties
    assert refused["blessed"].int_value == 0
    assert refused["accuracy_fgsm"].double_value < 100.0  # the measured accuracy is in MLMD
    evaluation = min(_store(config).get_artifacts_by_type("ModelEvaluation"), key=lambda a: a.id)
    with open(os.path.join(evaluation.uri, "robustness.json"), encoding="utf-8") as handle:
        report = json.load(handle)
    assert report["classifier"] == "the Trainer's classifier.keras"  # classifier A, the default
    assert "accuracy_bpda-pgd" in refused and "clean" in refused
    # Adapted (classifier_adapt_epochs=1): the unadapted classifier's clean accuracy is reported beside.
    n = config.gate_examples
    assert report["unadapted"]["clean"]["n"] == n and report["unadapted"]["clean_alone"]["n"] == n
    assert report["clean_alone"]["n"] == n
    assert "Before adapting:" in verdict_markdown(report)


def test_met_threshold_pushes_a_version_the_embedded_server_serves(pushed_run, fmnist_images):
    from lqvae_tf.serving import RestClient
    from lqvae_tf.serving.server import running_server

    assert _versions(pushed_run) == ["1"]
    (pushed,) = _store(pushed_run).get_artifacts_by_type("PushedModel")
    assert pushed.custom_properties["pushed"].int_value == 1
    assert pushed.custom_properties["pushed_version"].int_value == 1
    with running_server(os.path.join(pushed_run.serving_base_dir, MODEL_NAME), MODEL_NAME) as url:
        purified = RestClient(url, MODEL_NAME).predict(fmnist_images[:4])
    assert purified.shape == (4, 28, 28, 1)
    assert np.all((purified >= 0.0) & (purified <= 1.0))


def test_gate_records_every_accuracy_in_its_artifact_and_metadata(pushed_run):
    store = _store(pushed_run)
    evaluation = max(store.get_artifacts_by_type("ModelEvaluation"), key=lambda a: a.id)
    with open(os.path.join(evaluation.uri, "robustness.json"), encoding="utf-8") as handle:
        report = json.load(handle)
    assert report["blessed"] is True and report["n"] == pushed_run.gate_examples
    assert report["classifier"] == pushed_run.classifier_path  # the user's, attacked white-box and end to end
    assert os.path.isfile(os.path.join(evaluation.uri, "results.md"))
    assert [check["check"] for check in report["checks"]] == ["clean", "accuracy_fgsm", "accuracy_bpda-pgd"]
    for check in report["checks"]:
        assert check["accuracy"]["n"] == pushed_run.gate_examples
        assert evaluation.custom_properties[check["check"]].double_value == check["accuracy"]["accuracy"]
    blessing = max(store.get_artifacts_by_type("ModelBlessing"), key=lambda a: a.id)
    assert blessing.custom_properties["blessed"].int_value == 1


def test_run_ends_with_a_robustness_report(pipelines_api, pushed_run):
    _, local_runner, _ = pipelines_api
    text = local_runner.latest_report(pushed_run)
    assert "**blessed**" in text and "| clean | none | 0.0% |" in text and "[1]" in text
    with open(os.path.join(pushed_run.output_root, "robustness_report.md"), encoding="utf-8") as handle:
        assert handle.read() == text


def test_rerun_reuses_the_cached_data_and_retrains_without_classifier_a(pushed_run):
    """The second run changed the gate's classifier only: the data components come from the
    cache; the Trainer runs again, now without training classifier A."""
    from ml_metadata.proto import metadata_store_pb2

    store = _store(pushed_run)
    executions = sorted(store.get_executions(), key=lambda e: e.id)
    complete, cached = metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED
    for component, second in (("StatisticsGen", cached), ("SchemaGen", cached), ("Trainer", complete)):
        states = [e.last_known_state for e in executions if _node_id(store, e) == component]
        assert states[:2] == [complete, second], component


def test_tfx_cli_runs_the_pipeline_from_cache_with_make_runs_short_terminal(pipelines_api, pushed_run, tmp_path):
    """`tfx pipeline create` then `tfx run create` (the TFX CLI, local engine) on the same root.

    Nothing changed since the last run, so every component's output comes from the cache: no
    new training, no new serving version. `tfx run create` runs `python pipelines/local_runner.py`
    (options from $LQVAE_PIPELINE_ARGS), the main `make run` calls, so its terminal is make run's:
    under 60 lines, one per component, the verdict, and the full log in <output>/pipeline.log.
    """
    from ml_metadata.proto import metadata_store_pb2

    _, local_runner, pipeline = pipelines_api
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tfx_cli = os.path.join(os.path.dirname(sys.executable), "tfx")
    env = {
        **os.environ,
        "LOCAL_HOME": str(tmp_path / "tfx_home"),  # the CLI's record of pipelines, kept out of $HOME
        "LQVAE_PIPELINE_ARGS": (
            f"--config small --output {pushed_run.output_root} --classifier {pushed_run.classifier_path}"
        ),
        "TF_CPP_MIN_LOG_LEVEL": "2",  # as the Makefile sets it
    }
    for command in (
        ["pipeline", "create", "--engine", "local", "--pipeline_path", "pipelines/local_runner.py"],
        ["run", "create", "--engine", "local", "--pipeline_name", pushed_run.pipeline_name],
    ):
        completed = subprocess.run([tfx_cli, *command], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
        assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    assert os.listdir(tmp_path / "tfx_home")  # the CLI recorded the pipeline

    store = _store(pushed_run)
    latest = {}
    for execution in sorted(store.get_executions(), key=lambda e: e.id):
        latest[_node_id(store, execution)] = execution.last_known_state
    for component in ("ImportExampleGen", "StatisticsGen", "Trainer", "RobustnessGate", "ServingPusher"):
        assert latest[component] == metadata_store_pb2.Execution.CACHED, component
    assert _versions(pushed_run) == ["1"]

    lines = (completed.stdout + completed.stderr).splitlines()  # the run's terminal, and the CLI's own lines
    assert len(lines) < 60, "\n".join(lines)
    for component in pipeline.COMPONENT_IDS:
        assert any(line.startswith(component + " ") and line.endswith("cached") for line in lines), component
    assert any(line.startswith("Robustness gate on") for line in lines)
    log = os.path.join(pushed_run.output_root, local_runner.LOG_FILE)
    assert any(f"full log: {log}" in line for line in lines), lines[:5]
    with open(log, encoding="utf-8") as handle:
        assert "Component Trainer is running." in handle.read()  # TFX's INFO lines went to the file


def test_example_validator_reports_a_misshaped_input_and_training_never_starts(pipelines_api, tmp_path):
    configs, local_runner, _ = pipelines_api
    from lqvae_tf.data import DEBIAN_FASHION_MNIST, load_idx_arrays
    from lqvae_tf.pipeline_components.records import RECORD_FILE, write_records

    config = configs.small_test_config(str(tmp_path))
    images, labels = load_idx_arrays(DEBIAN_FASHION_MNIST, "test")
    # A corrupted eval file: a quarter of its images lost their last row (27x28 pixels).
    count = config.eval_limit
    broken = [image if i % 4 else image[:27] for i, image in enumerate(images[:count])]
    write_records(os.path.join(config.data_root, "eval", RECORD_FILE), broken, labels[:count])

    local_runner.run(config)

    store = _store(config)
    (anomalies,) = store.get_artifacts_by_type("ExampleAnomalies")
    per_split = anomalies.custom_properties["blessed"].struct_value.fields  # ExampleValidator's own verdict
    assert (per_split["train"].number_value, per_split["eval"].number_value) == (1, 0)
    (data_blessing,) = store.get_artifacts_by_type("lqvae.DataBlessing")
    assert data_blessing.custom_properties["blessed"].int_value == 0
    assert data_blessing.custom_properties["anomalous_splits"].string_value == "eval"
    with open(os.path.join(data_blessing.uri, "anomalies.json"), encoding="utf-8") as handle:
        summary = json.load(handle)
    assert summary["train"] == {}
    assert "image" in summary["eval"], summary
    assert store.get_artifacts_by_type("Model") == []  # the Trainer was skipped, not crashed
    assert _versions(config) == []


def test_kubeflow_v2_compile_names_every_component(pipelines_api, tmp_path):
    configs, _, pipeline = pipelines_api
    from pipelines import kubeflow_v2_runner

    config = configs.default_config().replace(
        output_root="gs://example-bucket/lqvae",
        beam_pipeline_args=("--runner=DataflowRunner", "--project=example-project", "--region=europe-west4"),
    )
    path = kubeflow_v2_runner.compile_pipeline(config, str(tmp_path / "lqvae_pipeline.json"))
    with open(path, encoding="utf-8") as handle:
        spec = json.load(handle)["pipelineSpec"]
    assert set(spec["root"]["dag"]["tasks"]) == set(pipeline.COMPONENT_IDS)
    executors = json.dumps(spec["deploymentSpec"]["executors"]["StatisticsGen_executor"])
    assert "--runner=DataflowRunner" in executors
    conditions = {
        name: task.get("triggerPolicy", {}).get("condition", "") for name, task in spec["root"]["dag"]["tasks"].items()
    }
    assert "DataGate.blessing" in conditions["Trainer"]
    assert "RobustnessGate.blessing" in conditions["ServingPusher"]


@pytest.mark.parametrize(
    "suite, message",
    [
        ("[]", "non-empty JSON list"),
        ('[{"attack": "fgsm"}]', "min_accuracy"),
        ('[{"attack": "fgsm", "min_accuracy": 1, "params": {"steps": 3}}]', "no parameter steps"),
        ('[{"attack": "transfer-fgsm", "min_accuracy": 1}]', "not 'transfer-fgsm'"),
    ],
)
def test_gate_rejects_a_malformed_attack_suite(pipelines_api, suite, message):
    from lqvae_tf.pipeline_components.gate import parse_suite

    with pytest.raises(ValueError, match=message):
        parse_suite(suite)


def test_gate_takes_a_users_classifier_in_its_own_pixel_range(pipelines_api, tmp_path, fmnist_images):
    from lqvae_tf.pipeline_components.gate import load_user_classifier

    classifier = small_classifier(rescale=1 / 255.0)
    path = str(tmp_path / "pixels_0_255.keras")
    classifier.save(path)
    wrapped = load_user_classifier(path, (28, 28, 1), value_range=(0.0, 255.0))
    images = fmnist_images[:4]
    expected = np.log(classifier.predict(images * 255.0, verbose=0))  # the softmax's logits, up to a constant
    got = wrapped.predict(images, verbose=0)  # [0, 1] images in, logits out
    np.testing.assert_allclose(
        got - got.mean(-1, keepdims=True), expected - expected.mean(-1, keepdims=True), atol=1e-4
    )


@pytest.mark.parametrize(
    "classifier, value_range, message",
    [
        (
            dict(image_shape=(32, 32, 3)),
            (0.0, 1.0),
            r"takes inputs of shape \(32, 32, 3\); the data's images are \(28, 28, 1\)",
        ),
        (dict(rescale=1 / 255.0), (0.0, 1.0), r"starts with Rescaling\(scale=0\.003922\).*--classifier-range 0,255"),
    ],
)
def test_gate_refuses_a_classifier_that_does_not_fit_the_data(
    pipelines_api, tmp_path, classifier, value_range, message
):
    from lqvae_tf.pipeline_components.gate import load_user_classifier

    path = str(tmp_path / "theirs.keras")
    small_classifier(**classifier).save(path)
    with pytest.raises(ValueError, match=message) as refused:
        load_user_classifier(path, (28, 28, 1), value_range)
    assert path in str(refused.value)
    configs, local_runner, _ = pipelines_api
    config = configs.small_test_config(str(tmp_path / "run"), classifier_path=path, classifier_range=value_range)
    with pytest.raises(ValueError, match=message):
        local_runner.build(config)  # refused before the pipeline starts
    assert not os.path.exists(config.output_root)


def test_the_users_classifier_reaches_the_gate_as_parameters(pipelines_api, tmp_path, user_classifier):
    configs, _, pipeline = pipelines_api
    config = configs.small_test_config(str(tmp_path), classifier_path=user_classifier, classifier_range=(0.0, 255.0))
    built = pipeline.create_pipeline(**config.pipeline_arguments(), trainer_module_file=configs.TRAINER_MODULE_FILE)
    (gate,) = [component for component in built.components if component.id == "RobustnessGate"]
    assert gate.exec_properties["classifier_path"] == user_classifier
    assert (gate.exec_properties["classifier_min_value"], gate.exec_properties["classifier_max_value"]) == (0.0, 255.0)
    assert len(gate.exec_properties["classifier_digest"]) == 64
