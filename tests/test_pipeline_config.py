"""The pipeline's configuration (`pipelines/configs.py`): the named configurations and what it rejects."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from lqvae_tf.config import preset
from pipelines import configs


def test_default_and_small_test_configurations_sit_side_by_side(tmp_path):
    default = configs.default_config()
    small = configs.small_test_config(str(tmp_path))
    assert default.train_limit is None and default.eval_limit is None  # the full dataset
    assert small.train_limit < 1000 and small.purifier_overrides["epochs"] == 1
    assert [check.attack for check in default.attack_suite] == ["fgsm", "bpda-pgd"]
    assert small.serving_base_dir == str(tmp_path / "serving")
    assert json.loads(default.attack_suite_json)[0] == {"attack": "fgsm", "min_accuracy": 68.0, "params": {"eps": 0.1}}
    assert json.loads(small.to_json())["output_root"] == str(tmp_path)
    arguments = default.pipeline_arguments()  # what both runners hand create_pipeline
    assert arguments["distribute"] == "auto" and arguments["pipeline_root"] == default.pipeline_root


def test_local_runner_options_reach_the_configuration(tmp_path, monkeypatch):
    from pipelines import local_runner

    chosen = local_runner._parse(["--output", str(tmp_path), "--epochs", "3", "--beam-arg=--direct_num_workers=2"])
    assert chosen.output_root == str(tmp_path) and chosen.purifier_overrides["epochs"] == 3
    # The default retrains and guides the purifier as its preset (`fashion_mnist_guided`) does,
    # and the Trainer is told so: with no classifier given, its own, trained first, for both.
    guided = preset("fashion_mnist_guided")
    assert chosen.purifier_preset == "fashion_mnist_guided" and chosen.adversarial == guided.adversarial
    assert chosen.adversarial.mode == "end_to_end" and chosen.guidance == guided.guidance is not None
    assert chosen.trainer_guidance.classifier is None and chosen.trainer_adversarial.classifier is None
    assert chosen.classifier_settings is not None  # the Trainer's own classifier
    # Warm-started from the shipped preset by default: --epochs is then the fine-tune's, adversarial from the first.
    assert chosen.warm_start_from == "fashion_mnist" and chosen.warm_start_epochs == 3
    assert "clean_epochs" not in chosen.purifier_settings["overrides"]["adversarial"]
    scratch = local_runner._parse(["--output", str(tmp_path), "--epochs", "3", "--base-model", "none"])
    assert scratch.warm_start_from is None and "init_from" not in scratch.purifier_settings["overrides"]
    assert scratch.purifier_settings["overrides"]["adversarial"]["clean_epochs"] == 2
    with pytest.raises(ValueError, match=r"clean_epochs \(2\) must be below epochs \(2\)"):
        # Refused before any run.
        local_runner._parse(["--output", str(tmp_path), "--epochs", "2", "--base-model", "none"])
    clean = local_runner._parse(["--output", str(tmp_path), "--epochs", "2", "--adversarial", "none"])
    assert clean.adversarial is None and clean.purifier_settings["overrides"]["adversarial"] is None
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
    assert users.classifier_settings is None  # the Trainer trains no classifier A for the gate


def _write_npz(path, count=10, shape=(12, 12, 3), classes=2):
    import numpy as np

    images = np.random.default_rng(0).integers(0, 256, size=(count, *shape), dtype=np.uint8)
    np.savez(path, x=images, y=np.arange(count) % classes)
    return str(path)


def test_your_own_data_reaches_the_configuration_inspected(tmp_path):
    from pipelines import local_runner

    data = _write_npz(tmp_path / "mine.npz")
    config = local_runner._parse(
        ["--config", "small", "--output", str(tmp_path), "--data", data, "--beam-workers", "2"]
    )
    assert (config.data_path, config.image_shape, config.num_classes) == (data, (12, 12, 3), 2)
    assert config.train_limit is None and config.eval_limit is None  # Fashion-MNIST's slices do not apply
    assert config.beam_pipeline_args == ("--direct_running_mode=multi_processing", "--direct_num_workers=2")
    overrides = config.purifier_settings["overrides"]
    assert overrides["image_shape"] == [12, 12, 3] and overrides["architecture"] == "conv"
    assert config.purifier_overrides == configs.small_test_config(str(tmp_path)).purifier_overrides  # as given
    assert config.classifier_settings["image_shape"] == [12, 12, 3] and config.classifier_settings["num_classes"] == 2
    arguments = config.pipeline_arguments()
    assert arguments["user_data"] == data and arguments["image_size"] is None
    resized = local_runner._parse(["--output", str(tmp_path), "--data", data, "--image-size", "16x8"])
    assert resized.image_shape == (16, 8, 3) and resized.image_size == (16, 8)
    assert json.loads(resized.to_json())["image_shape"] == [16, 8, 3]  # recorded beside the run
    default = configs.default_config()
    assert default.dataset.image_shape == (28, 28, 1) and default.classifier_settings["num_classes"] == 10


@pytest.mark.parametrize(
    "options, message",
    [
        (["--image-size", "16x16"], "--image-size is for --data"),
        (["--data", "DATA", "--train-limit", "5"], "do not apply to --data"),
        (["--beam-workers", "2", "--beam-arg=--runner=DirectRunner"], "not both"),
        (["--data", "/nonexistent/images"], "/nonexistent/images does not exist"),
    ],
)
def test_contradictory_or_missing_data_options_are_refused(tmp_path, capsys, options, message):
    from pipelines import local_runner

    data = _write_npz(tmp_path / "mine.npz")
    options = [data if option == "DATA" else option for option in options]
    assert local_runner.main(["--output", str(tmp_path / "run"), *options]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


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
        ({"image_shape": (32, 32, 3)}, "describe data_path, which is not set"),
        ({"data_path": "/data", "train_limit": None, "eval_limit": None}, "build the config with with_user_data"),
        (
            {"data_path": "/data", "image_shape": (32, 32, 3), "num_classes": 5},
            "train_limit and eval_limit slice Fashion-MNIST",
        ),
    ],
)
def test_impossible_settings_are_rejected(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        configs.small_test_config(str(tmp_path), **changes)


def test_adversarial_retraining_is_a_typed_option_the_trainer_receives(tmp_path):
    from lqvae_tf import AdversarialConfig, preset
    from pipelines import local_runner

    chosen = local_runner._parse(["--output", str(tmp_path), "--adversarial", "code", "--adv-eps", "0.05"])
    # The flags change the default's retraining (the preset's), keeping what they do not name.
    wanted = dataclasses.replace(preset("fashion_mnist_guided").adversarial, mode="code", eps=0.05)
    assert chosen.adversarial == wanted
    settings = chosen.pipeline_arguments()["purifier_settings"]
    # What the Trainer's run_fn builds from its custom_config: the preset with the adversarial settings.
    # (warm-started from the shipped preset: retrained from its first epoch, of WARM_START_EPOCHS).
    trained = preset(settings["preset"]).replace(**settings["overrides"])
    assert trained.adversarial == dataclasses.replace(wanted, clean_epochs=0)
    assert trained.epochs == configs.WARM_START_EPOCHS
    clean = local_runner._parse(["--output", str(tmp_path), "--adversarial", "none"])
    assert preset("fashion_mnist_guided").replace(**clean.purifier_settings["overrides"]).adversarial is None
    # From scratch (a preset without retraining), the flags build the whole setting.
    small = configs.small_test_config(str(tmp_path), adversarial=AdversarialConfig(mode="code", eps=0.05))
    assert small.adversarial == AdversarialConfig(mode="code", eps=0.05)
    # A dict works as the dataclass does (a config written as JSON), and is checked the same way.
    assert configs.small_test_config(str(tmp_path), adversarial={"mode": "reconstruction"}).adversarial.steps == 5

    # Mode "classifier" attacks the gate's classifier unless told otherwise, by absolute path and digest.
    mine = tmp_path / "mine.keras"
    mine.write_bytes(b"a model")
    madry = local_runner._parse(
        ["--classifier", str(mine), "--classifier-range", "0,255", "--adversarial", "classifier"]
    )
    adversarial = madry.pipeline_arguments()["purifier_settings"]["overrides"]["adversarial"]
    assert adversarial["classifier"] == str(mine) and adversarial["classifier_range"] == [0.0, 255.0]
    assert len(madry.purifier_settings["adversarial_classifier_digest"]) == 64
    # Without any file, the modes that attack a classifier attack the one the Trainer trains first.
    own = local_runner._parse(["--output", str(tmp_path), "--adversarial", "end_to_end"])
    adversarial = own.purifier_settings["overrides"]["adversarial"]
    assert (adversarial["mode"], adversarial["classifier"], adversarial["classifier_range"]) == (
        "end_to_end",
        None,
        [0.0, 1.0],
    )
    assert own.classifier_settings is not None and "adversarial_classifier_digest" not in own.purifier_settings


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--adversarial", "none", "--adv-eps", "0.05"], "--adv-eps contradict --adversarial none"),
        (["--epochs", "2"], r"clean_epochs \(2\) must be below epochs \(2\).*--adversarial none"),
        (["--adversarial", "code", "--adv-eps", "0"], r"adversarial eps must be in \(0, 1\]"),
        (["--adversarial", "code", "--adv-steps", "0"], "adversarial steps must be an integer >= 1"),
        (["--adversarial", "madry"], "adversarial mode must be one of"),
        (["--adversarial", "classifier", "--adv-classifier", "nowhere.keras"], "nowhere.keras does not exist"),
        (["--adapt-epochs", "-1"], "classifier_adapt_epochs must be an integer >= 0, got -1"),
    ],
)
def test_impossible_adversarial_settings_are_refused_by_name(tmp_path, argv, message, capsys):
    from pipelines import local_runner

    assert local_runner.main(["--output", str(tmp_path / "run"), *argv]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and re.search(message, error), error
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_the_main_job_refuses_a_bad_option_in_one_line_without_import_noise(tmp_path):
    """`make run`'s command with an impossible option: one error line on the terminal, not the C++
    lines TensorFlow's import writes to standard error ("Unable to register cuDNN factory")."""
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [sys.executable, "-m", "pipelines.local_runner", "--output", str(tmp_path / "run"), "--train-limit", "0"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}  # as the Makefile sets it
    completed = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 2
    assert completed.stdout == "" and completed.stderr.splitlines() == [
        "error: train_limit must be positive or None, got 0"
    ], completed.stderr[-2000:]


def test_adapting_the_trainers_classifier_is_an_option_it_receives(tmp_path):
    from pipelines import local_runner

    adapted = local_runner._parse(["--output", str(tmp_path), "--adapt-epochs", "2"])
    assert adapted.classifier_adapt_epochs == 2
    assert adapted.pipeline_arguments()["classifier_settings"]["adapt_epochs"] == 2
    assert local_runner._parse(["--output", str(tmp_path)]).classifier_settings["adapt_epochs"] == 0  # default: off
    mine = tmp_path / "mine.keras"
    mine.write_bytes(b"a model")
    with pytest.raises(ValueError, match="adapt your own with `lqvae adapt`"):
        configs.small_test_config(str(tmp_path), classifier_path=str(mine), classifier_adapt_epochs=1)
    with pytest.raises(ValueError, match="classifier_adapt_epochs must be an integer >= 0, got 1.5"):
        configs.small_test_config(str(tmp_path), classifier_adapt_epochs=1.5)


def test_classifier_guidance_is_an_option_the_trainer_receives(tmp_path):
    from lqvae_tf import GuidanceConfig
    from pipelines import local_runner

    unguided = local_runner._parse(["--output", str(tmp_path), "--no-guidance"])
    assert unguided.purifier_settings["overrides"]["guidance"] is None  # written, so a preset's guidance never leaks in
    # The default is guided (weight 3) by the Trainer's own classifier: no file; the Trainer trains it first, in [0, 1].
    assert local_runner._parse(["--output", str(tmp_path)]).guidance == GuidanceConfig(weight=3.0)
    own = local_runner._parse(["--output", str(tmp_path), "--guide-weight", "3"])
    assert own.guidance == GuidanceConfig(weight=3.0)
    guidance = own.pipeline_arguments()["purifier_settings"]["overrides"]["guidance"]
    assert guidance == {"classifier": None, "weight": 3.0, "classifier_range": [0.0, 1.0]}
    assert own.classifier_settings is not None
    # Guided by the user's gate classifier (in its own pixel range), by absolute path and digest.
    mine = tmp_path / "mine.keras"
    mine.write_bytes(b"a model")
    users = local_runner._parse(["--classifier", str(mine), "--classifier-range", "0,255", "--guide-weight", "2"])
    guidance = users.purifier_settings["overrides"]["guidance"]
    assert (guidance["classifier"], guidance["classifier_range"]) == (str(mine), [0.0, 255.0])
    assert len(users.purifier_settings["guidance_classifier_digest"]) == 64
    # Or by a file of its own; the Trainer's config is the preset with that guidance.
    other = tmp_path / "other.keras"
    other.write_bytes(b"another model")
    named = local_runner._parse(["--output", str(tmp_path), "--guide-classifier", str(other)])
    settings = named.purifier_settings
    assert preset(settings["preset"]).replace(**settings["overrides"]).guidance == GuidanceConfig(str(other), 3.0)
    # --no-guidance turns off the guidance of a configuration that has one; the weight flag keeps its classifier.
    guided = GuidanceConfig(str(other), 3.0)
    assert local_runner._guidance(local_runner._arguments(["--no-guidance"]), guided) is None
    reweighted = local_runner._guidance(local_runner._arguments(["--guide-weight", "5"]), guided)
    assert reweighted == GuidanceConfig(str(other), 5.0)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--guide-weight", "0"], "guidance weight must be > 0, got 0.0"),
        (["--guide-weight", "2", "--no-guidance"], "--guide-weight and --guide-classifier contradict --no-guidance"),
        (["--guide-classifier", "nowhere.keras"], "the guidance classifier .*nowhere.keras does not exist"),
    ],
)
def test_impossible_guidance_settings_are_refused_by_name(tmp_path, argv, message, capsys):
    from pipelines import local_runner

    assert local_runner.main(["--output", str(tmp_path / "run"), *argv]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and re.search(message, error), error
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="set guidance with the pipeline's guidance field"):
        configs.small_test_config(str(tmp_path), purifier_overrides={"guidance": {"weight": 1.0}})


def test_the_trainer_warm_starts_from_the_shipped_preset_by_default(tmp_path):
    from lqvae_tf import LQVAE
    from lqvae_tf.config import config_from_settings
    from lqvae_tf.presets import trained_config

    default = configs.default_config()
    assert default.base_model == configs.AUTO_BASE and default.warm_start_from == "fashion_mnist"
    trainer = config_from_settings(default.purifier_settings)  # what the Trainer builds
    assert trainer.init_from == "fashion_mnist" and trainer.epochs == configs.WARM_START_EPOCHS == 1
    assert trainer.adversarial.clean_epochs == 0 and trainer.adversarial.mode == "end_to_end"
    assert trainer.guidance.weight == 3.0  # the blessing recipe is unchanged, only its start and length
    for field in ("width", "latent_dim", "architecture", "image_shape"):
        assert getattr(trainer, field) == getattr(trainer_config := trained_config("fashion_mnist"), field)
    assert len(default.purifier_settings["base_model_digest"]) > 16  # new shipped weights re-run the Trainer
    # From random weights: the recipe's own schedule (4 epochs, 2 of them clean).
    scratch = config_from_settings(default.replace(base_model=None).purifier_settings)
    assert scratch.init_from is None and (scratch.epochs, scratch.adversarial.clean_epochs) == (4, 2)
    # "auto" warm-starts only where the networks fit: the tests' tiny purifier trains from random weights.
    assert configs.small_test_config(str(tmp_path)).warm_start_from is None
    assert trainer_config.width != configs.small_test_config(str(tmp_path)).purifier_overrides["width"]
    # A .keras base of the right shapes is taken by absolute path, its digest in the settings.
    small = configs.small_test_config(str(tmp_path))
    base = tmp_path / "base.keras"
    LQVAE(config_from_settings(small.purifier_settings)).save(base)
    named = small.replace(base_model=str(base))
    assert named.purifier_settings["overrides"]["init_from"] == str(base)
    assert named.purifier_settings["overrides"]["epochs"] == named.warm_start_epochs
    assert len(named.purifier_settings["base_model_digest"]) == 64


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"base_model": "nowhere"}, "base_model 'nowhere' is neither a trained preset"),
        ({"base_model": "fashion_mnist"}, "init_from 'fashion_mnist' has networks of another shape: width=0.5 there"),
        ({"warm_start_epochs": 0}, "warm_start_epochs must be an integer >= 1, got 0"),
        ({"purifier_overrides": {"init_from": "mnist"}}, "set init_from with the pipeline's base_model field"),
    ],
)
def test_impossible_warm_starts_are_refused_by_name(tmp_path, changes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        configs.small_test_config(str(tmp_path), **changes)
