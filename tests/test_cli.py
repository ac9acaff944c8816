"""`lqvae train`: a tiny run on real Fashion-MNIST writes every artifact, and errors are clear."""

import json
import os

import keras
import numpy as np
import pytest

from lqvae_tf import LQVAE, LQVAEConfig
from lqvae_tf.cli.main import main

TINY = [
    "--set",
    "width=0.125",
    "--set",
    "latent_dim=8",
    "--epochs",
    "1",
    "--batch-size",
    "32",
    "--limit",
    "96",
    "--verbose",
    "0",
    "--adversarial",  # one clean epoch: the default preset's retraining needs 3 or more
    "none",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--dataset", "fashion_mnist", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_model_config_history_figure_and_logs(run_dir):
    config = LQVAEConfig.from_json((run_dir / "config.json").read_text())
    assert (config.width, config.latent_dim, config.epochs) == (0.125, 8, 1)
    model = keras.models.load_model(run_dir / "purifier.keras")
    assert isinstance(model, LQVAE) and model.config == config
    history = json.loads((run_dir / "history.json").read_text())
    assert {"loss_f", "loss_g", "loss_h", "kl", "penalty", "grad_norm", "active_bits", "val_loss_g"} <= set(history)
    assert (run_dir / "purified.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for sub in ("train", "validation", "images"):
        assert any(name.startswith("events.out.tfevents") for name in os.listdir(run_dir / "logs" / sub))
    assert not (run_dir / "backup").exists()  # a finished run leaves no resume state


def test_tensorboard_logs_hold_scalars_and_purified_images(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    images = EventAccumulator(str(run_dir / "logs" / "images"), size_guidance={"tensors": 0}).Reload()
    assert "input_vs_purified" in images.Tags()["tensors"]
    scalars = EventAccumulator(str(run_dir / "logs" / "train")).Reload()
    assert "epoch_loss_g" in scalars.Tags()["tensors"] + scalars.Tags()["scalars"]


def test_purified_output_of_saved_model_is_deterministic(run_dir, fmnist_images):
    model = keras.models.load_model(run_dir / "purifier.keras")
    np.testing.assert_array_equal(model.purify(fmnist_images[:8]), model.purify(fmnist_images[:8]))


def test_unfinished_run_with_other_settings_is_refused(tmp_path, capsys):
    (tmp_path / "backup").mkdir()
    LQVAE  # noqa: B018 (imported for the registered serializables)
    (tmp_path / "config.json").write_text(LQVAEConfig().to_json())
    assert main(["train", "--out", str(tmp_path), *TINY]) == 2
    assert "unfinished run with another configuration" in capsys.readouterr().err


def test_bad_override_and_missing_data_are_reported_not_raised(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "a"), "--set", "latent_dim=0", *TINY[4:]]) == 2
    assert "latent_dim must be >= 1" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "b"), "--data-dir", str(tmp_path), *TINY]) == 2
    assert "dataset-fashion-mnist" in capsys.readouterr().err
