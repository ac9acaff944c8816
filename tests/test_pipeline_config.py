"""The pipeline's configuration (`pipelines/configs.py`): the named configurations and what it rejects."""

from __future__ import annotations

import json

import pytest

from pipelines import configs


def test_default_and_small_test_configurations_sit_side_by_side(tmp_path):
    default = configs.default_config()
    small = configs.small_test_config(str(tmp_path))
    assert default.train_limit is None and default.eval_limit is None  # the full dataset
    assert small.train_limit < 1000 and small.purifier_overrides["epochs"] == 1
    assert [check.attack for check in default.attack_suite] == ["fgsm", "bpda-pgd"]
    assert small.serving_base_dir == str(tmp_path / "serving")
    assert json.loads(default.attack_suite_json)[0] == {"attack": "fgsm", "min_accuracy": 50.0, "params": {"eps": 0.1}}
    assert json.loads(small.to_json())["output_root"] == str(tmp_path)
    arguments = default.pipeline_arguments()  # what both runners hand create_pipeline
    assert arguments["distribute"] == "auto" and arguments["pipeline_root"] == default.pipeline_root


def test_local_runner_options_reach_the_configuration(tmp_path, monkeypatch):
    from pipelines import local_runner

    chosen = local_runner._parse(["--output", str(tmp_path), "--epochs", "3", "--beam-arg=--direct_num_workers=2"])
    assert chosen.output_root == str(tmp_path) and chosen.purifier_overrides["epochs"] == 3
    assert chosen.purifier_overrides["batch_size"] == 64  # the default's other overrides are kept
    assert chosen.beam_pipeline_args == ("--direct_num_workers=2",)
    monkeypatch.setenv(local_runner.ARGS_ENV, f"--config small --output {tmp_path}")
    from_env = local_runner._parse([])  # as the TFX CLI runs the file: no arguments
    assert from_env.train_limit == 256 and from_env.output_root == str(tmp_path)
    (tmp_path / "mine.keras").write_bytes(b"a model")
    users = local_runner._parse(["--classifier", str(tmp_path / "mine.keras"), "--classifier-range", "0,255"])
    assert (users.classifier_path, users.classifier_range) == (str(tmp_path / "mine.keras"), (0.0, 255.0))
    gate = users.pipeline_arguments()["gate_classifier"]  # the gate's parameters, the file's digest among them
    assert gate["classifier_max_value"] == 255.0 and len(gate["classifier_digest"]) == 64
    assert configs.small_test_config(str(tmp_path)).pipeline_arguments()["gate_classifier"] == {}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"attack_suite": ()}, "attack suite is empty"),
        ({"min_clean_accuracy": 101.0}, "percentages"),
        ({"gate_examples": 10_000}, "exceeds the eval split"),
        ({"purifier_preset": "imagenet"}, "unknown purifier preset"),
        ({"train_limit": 0}, "must be positive"),
        ({"distribute": "tpu"}, "unknown distribution strategy 'tpu'"),
        ({"classifier_range": (1.0, 0.0)}, "classifier_range must be"),
        ({"classifier_path": "/nonexistent/mine.keras"}, "classifier_path /nonexistent/mine.keras does not exist"),
    ],
)
def test_impossible_settings_are_rejected(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        configs.small_test_config(str(tmp_path), **changes)
