"""Fine-tuning a trained purifier (`init_from`) and the collapsed-code check."""

import json
import os
import warnings

import keras
import numpy as np
import pytest

from lqvae_tf import LQVAE, LQVAEConfig
from lqvae_tf.classifiers import build_classifier
from lqvae_tf.cli.main import main
from lqvae_tf.evaluation.frontier import markdown_table, point_key, resolve_point_references
from lqvae_tf.training import train_purifier
from lqvae_tf.training.warm_start import (
    CodeCollapseCheck,
    CollapsedCodeWarning,
    distinct_code_fraction,
    warm_start,
)

from conftest import tiny_config


@pytest.fixture(scope="module")
def source_path(tmp_path_factory) -> str:
    """A tiny purifier with non-initial weights, saved as a .keras file."""
    model = LQVAE(tiny_config(seed=7))
    for part in (model.encoder, model.decoder_hard, model.decoder_soft):
        part.set_weights([w + 0.01 for w in part.get_weights()])
    path = str(tmp_path_factory.mktemp("source") / "purifier.keras")
    model.save(path)
    return path


def _same_networks(a, b) -> bool:
    return all(
        all(np.array_equal(x, y) for x, y in zip(getattr(a, p).get_weights(), getattr(b, p).get_weights()))
        for p in ("encoder", "decoder_hard", "decoder_soft")
    )


def test_init_from_is_left_out_of_the_dict_unless_set_and_round_trips():
    assert "init_from" not in tiny_config().to_dict()
    config = tiny_config(init_from="run/purifier.keras")
    assert config.to_dict()["init_from"] == "run/purifier.keras"
    assert LQVAEConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize("value", ["", "  ", 3])
def test_an_empty_or_non_string_init_from_is_refused(value):
    with pytest.raises(ValueError, match="init_from must be a .keras file or a trained preset"):
        tiny_config(init_from=value)


def test_warm_start_copies_every_network_and_keeps_the_new_settings(source_path):
    source = keras.models.load_model(source_path)
    model = LQVAE(tiny_config(band_threshold=0.2, learning_rate=1e-4))
    assert not _same_networks(model, source)
    warm_start(model, source_path)
    assert _same_networks(model, source)
    assert model.config.band_threshold == 0.2  # a threshold is not a weight shape: it may change


def test_a_source_of_another_shape_is_refused_naming_the_field(source_path):
    with pytest.raises(ValueError, match=r"latent_dim=16 there, 32 here"):
        warm_start(LQVAE(tiny_config(latent_dim=32)), source_path)


def test_a_missing_source_and_a_classifier_file_are_refused(source_path, tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a .keras file nor a trained preset"):
        warm_start(LQVAE(tiny_config()), str(tmp_path / "nothing.keras"))
    classifier_path = str(tmp_path / "classifier.keras")
    build_classifier("A", (28, 28, 1), 10).save(classifier_path)
    with pytest.raises(ValueError, match="not an LQVAE purifier"):
        warm_start(LQVAE(tiny_config()), classifier_path)


def test_training_from_a_source_starts_from_its_weights(source_path, tmp_path):
    # A learning rate so small that one short epoch barely moves the weights: the trained model
    # must sit next to the source, far from the untrained model of the same seed.
    config = tiny_config(init_from=source_path, learning_rate=1e-9)
    result = train_purifier(config, "fashion_mnist", str(tmp_path / "run"), limit=64, verbose=0, validation_limit=64)
    trained = keras.models.load_model(result.model_path)
    source = keras.models.load_model(source_path)
    fresh = LQVAE(config.replace(init_from=None))
    kernel = lambda model: model.encoder.get_layer("mu").get_weights()[0]  # noqa: E731
    assert np.abs(kernel(trained) - kernel(source)).max() < 1e-4
    assert np.abs(kernel(fresh) - kernel(source)).max() > 1e-3
    assert trained.config.init_from == source_path
    assert 0.0 < result.final["val_distinct_codes"] <= 1.0


def test_training_reads_the_source_once_and_a_loaded_source_is_still_checked(source_path, tmp_path, monkeypatch):
    from lqvae_tf.training import warm_start as warm_start_module

    reads = []
    real_load_source = warm_start_module.load_source
    monkeypatch.setattr(warm_start_module, "load_source", lambda name: reads.append(name) or real_load_source(name))
    config = tiny_config(init_from=source_path, learning_rate=1e-9)
    train_purifier(config, "fashion_mnist", str(tmp_path / "run"), limit=64, verbose=0, validation_limit=64)
    assert reads == [source_path]
    with pytest.raises(ValueError, match=r"latent_dim=16 there, 32 here"):
        warm_start(LQVAE(tiny_config(latent_dim=32)), source_path, keras.models.load_model(source_path))


def test_a_bad_init_from_fails_before_the_run_folder_is_written(tmp_path):
    with pytest.raises(FileNotFoundError, match="init_from"):
        train_purifier(tiny_config(init_from=str(tmp_path / "none.keras")), "fashion_mnist", str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")


def test_cli_init_from_flag_reaches_the_config(source_path, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--limit", "64", "--epochs", "1", "--verbose", "0", "--init-from", source_path]
    args += ["--adversarial", "none"]
    args += [f"--set={name}={json.dumps(value)}" for name, value in (("width", 0.125), ("latent_dim", 16))]
    assert main(args) == 0
    assert json.loads((out / "config.json").read_text())["init_from"] == source_path


class _FixedCodes:
    """Stands in for a purifier whose codes are given."""

    def __init__(self, codes):
        self._codes = np.asarray(codes, np.float32)

    def codes(self, images):
        return self._codes[: len(images)]


def test_distinct_code_fraction_tells_a_collapsed_code_from_a_working_one():
    images = np.zeros((4, 28, 28, 1), np.float32)
    assert distinct_code_fraction(_FixedCodes(np.ones((4, 8))), images) == 0.25
    working = np.where(np.eye(4, 8) > 0, -1.0, 1.0)
    assert distinct_code_fraction(_FixedCodes(working), images) == 1.0


def test_the_collapse_check_logs_each_epoch_and_warns_only_for_a_collapsed_code():
    images = np.zeros((40, 28, 28, 1), np.float32)
    check = CodeCollapseCheck(images)
    check.set_model(_FixedCodes(np.ones((40, 8))))
    logs = {}
    check.on_epoch_end(0, logs)
    assert logs["val_distinct_codes"] == pytest.approx(1 / 40)
    with pytest.warns(CollapsedCodeWarning, match="code collapsed"):
        check.on_train_end()
    check.set_model(_FixedCodes(np.where(np.arange(40 * 8).reshape(40, 8) % 41 == 0, -1.0, 1.0)))
    check.on_epoch_end(1, logs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check.on_train_end()


def test_frontier_point_references_resolve_to_an_earlier_points_purifier(tmp_path):
    configs = [tiny_config(), tiny_config(init_from="point:0", learning_rate=1e-4)]
    resolved = resolve_point_references(configs, str(tmp_path), "fashion_mnist", 100)
    key = point_key(resolved[0], "fashion_mnist", 100)
    assert resolved[1].init_from == os.path.abspath(tmp_path / "points" / key / "purifier.keras")
    for bad in ("point:1", "point:x", "point:-1"):
        with pytest.raises(ValueError, match="must name an earlier point"):
            resolve_point_references([tiny_config(), tiny_config(init_from=bad)], str(tmp_path), "fashion_mnist", None)


def test_the_frontier_table_names_a_fine_tuned_point_by_its_source_and_flags_collapse():
    accuracy = {"accuracy": 50.0}
    measured = {
        "square": accuracy, "square_beats_gradient": False, "clean_alone": accuracy, "clean_filtered": accuracy,
        "pgd_alone": accuracy, "pgd": {"bpda": accuracy, "soft": accuracy, "identity": accuracy},
        "adaptive": accuracy, "worst": accuracy, "detection_auc": {"fgsm": 0.5, "bpda_pgd": 0.5},
    }  # fmt: skip
    row = {
        "key": "abc",
        "changed": {"init_from": "/x/points/0123456789ab/purifier.keras"},
        "trained": {"seconds": 1.0},
        "measured": measured,
        "distinct_codes": 0.002,
    }
    table = markdown_table([row])
    assert "init_from=point 0123456789ab" in table
    assert "0.00 (collapsed)" in table
