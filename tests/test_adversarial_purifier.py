"""Adversarial retraining of the purifier: the config, the perturbations inside train_step, the CLI."""

import json

import keras
import numpy as np
import pytest

from lqvae_tf import LQVAE, AdversarialConfig, LQVAEConfig, preset
from lqvae_tf.classifiers import build_classifier
from lqvae_tf.cli.main import main

from conftest import tiny_config

# Every field LQVAEConfig.to_dict() had before adversarial retraining existed: model stores hash it.
FIELDS_BEFORE = {
    "image_shape", "architecture", "width", "value_range", "latent_dim", "quantizer", "band_threshold",
    "bits_per_unit", "level_range", "soft_form", "soft_sharpness", "soft_sharpness_final",
    "sample_noise_scale", "lipschitz_k", "penalty_estimator", "penalty_projections", "kl_weight",
    "reconstruction_weight", "penalty_weight", "learning_rate", "lr_decay_rate", "lr_decay_steps",
    "batch_size", "epochs", "seed",
}  # fmt: skip


def test_config_without_adversarial_serialises_as_before_it_existed():
    assert set(preset("paper").to_dict()) == FIELDS_BEFORE
    assert set(tiny_config().to_dict()) == FIELDS_BEFORE
    config = tiny_config(adversarial={"mode": "code", "eps": 0.05})
    assert config.to_dict()["adversarial"]["mode"] == "code"
    assert LQVAEConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"eps": 0.0}, "eps must be in (0, 1]"),
        ({"eps": -0.1}, "eps must be in (0, 1]"),
        ({"steps": 0}, "steps must be an integer >= 1, got 0"),
        ({"mode": "madry"}, "mode must be one of"),
        ({"fraction": 0.0}, "fraction must be in (0, 1]"),
        ({"step_size": 0.5}, "step_size must be in (0, eps=0.1]"),
        ({"classifier": "c.keras"}, "for the modes classifier and end_to_end only"),
        ({"colour": 1}, "unknown AdversarialConfig fields: ['colour']"),
    ],
)
def test_impossible_adversarial_settings_are_refused_by_name(changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        tiny_config(adversarial={"mode": "reconstruction", **changes})


def test_classifier_of_another_input_shape_is_refused():
    model = LQVAE(tiny_config(adversarial=AdversarialConfig(mode="classifier")))
    with pytest.raises(ValueError, match=r"takes images of shape \(64, 64, 3\), the purifier's are \(28, 28, 1\)"):
        model.attach_classifier(build_classifier("A", (64, 64, 3), 2))


def test_classifier_mode_without_a_classifier_says_so(fmnist_images):
    model = LQVAE(tiny_config(adversarial=AdversarialConfig(mode="classifier", steps=1)))
    model.compile()
    with pytest.raises(ValueError, match="needs a classifier"):
        model.fit(fmnist_images[:32], np.zeros(32, np.int64), batch_size=32, epochs=1, verbose=0)


@pytest.mark.parametrize("mode", ["reconstruction", "code", "classifier", "end_to_end"])
def test_perturbations_stay_in_the_eps_ball_and_the_rest_of_the_batch_stays_clean(mode, fmnist_images):
    model = LQVAE(tiny_config(adversarial=AdversarialConfig(mode=mode, eps=0.1, steps=2, fraction=0.25)))
    model.attach_classifier(build_classifier("A", (28, 28, 1), 10))
    images = fmnist_images[:16]
    inputs, count = model.perturb(images, np.zeros(16, np.int64))
    clean = model.to_internal(images)
    delta = np.abs(np.asarray(inputs) - np.asarray(clean))
    assert int(count) == 4
    assert delta.max() <= 0.2 + 1e-5  # eps 0.1 of the pixel range is 0.2 in the internal [-1, 1]
    assert delta[:4].max() > 0 and delta[4:].max() == 0
    assert np.asarray(inputs).min() >= -1.0 and np.asarray(inputs).max() <= 1.0


def test_end_to_end_mode_attacks_the_classifier_behind_the_filter(fmnist_images):
    """Mode "end_to_end" maximises the classifier's loss on the purified image; "classifier" on the
    perturbed image itself (the paper's Madry PGD)."""
    from lqvae_tf.attacks.base import logits_of

    classifier = build_classifier("A", (28, 28, 1), 10)
    logits = logits_of(classifier)
    images, labels = fmnist_images[:8], np.arange(8) % 10

    def loss(pixels):
        return float(np.mean(keras.losses.sparse_categorical_crossentropy(labels, logits(pixels), from_logits=True)))

    model = LQVAE(tiny_config(adversarial=AdversarialConfig(mode="end_to_end", steps=1)))
    model.attach_classifier(classifier)
    x = model.to_internal(images)
    behind = loss(model.from_internal(model._filter_bpda(x)))
    assert float(model._objective(x, labels)(x)) == pytest.approx(behind, rel=1e-4)
    model.config.adversarial.mode = "classifier"  # the same weights, the paper's mode
    assert float(model._objective(x, labels)(x)) == pytest.approx(loss(images), rel=1e-4)
    assert abs(behind - loss(images)) > 1e-3


def test_several_classifiers_are_attacked_through_the_mean_of_their_losses(fmnist_images):
    keras.utils.set_random_seed(4)
    first, second = build_classifier("A", (28, 28, 1), 10), build_classifier("B", (28, 28, 1), 10)
    images, labels = fmnist_images[:8], np.arange(8) % 10
    model = LQVAE(tiny_config(adversarial=AdversarialConfig(mode="end_to_end", steps=1)))
    x = model.to_internal(images)

    def objective(classifiers, targets=labels):
        model.attach_classifier(classifiers)
        return float(model._objective(x, targets)(x))

    alone = [objective(first), objective(second)]
    assert abs(alone[0] - alone[1]) > 1e-3
    assert objective([first, second]) == pytest.approx(sum(alone) / 2, rel=1e-4)
    # Unlabelled batches: each classifier is attacked at its own answers on the clean images.
    own = [objective(first, None), objective(second, None)]
    assert objective([first, second], None) == pytest.approx(sum(own) / 2, rel=1e-4)
    with pytest.raises(ValueError, match="no classifier given"):
        model.attach_classifier([])


def test_fit_reports_adversarial_metrics_and_saved_model_reloads(tmp_path, fmnist_images):
    config = tiny_config(adversarial=AdversarialConfig(mode="reconstruction", steps=2))
    model = LQVAE(config)
    model.compile()
    history = model.fit(fmnist_images[:64], batch_size=32, epochs=1, verbose=0, validation_data=fmnist_images[:32])
    logs = {name: values[-1] for name, values in history.history.items()}
    assert {"loss_adv", "loss_code", "code_flip", "val_loss_adv", "val_code_flip"} <= set(logs)
    assert 0.0 <= logs["code_flip"] <= 1.0 and np.isfinite(logs["loss_adv"])
    # The adversarial options add no weights: the purifier deploys exactly as a plain one.
    assert len(model.weights) == len(LQVAE(tiny_config()).weights)
    model.save(tmp_path / "adversarial.keras")
    loaded = keras.models.load_model(tmp_path / "adversarial.keras")
    assert loaded.config == config
    np.testing.assert_array_equal(loaded.adversary_seed.state.numpy(), model.adversary_seed.state.numpy())
    np.testing.assert_array_equal(loaded.purify(fmnist_images[:4]), model.purify(fmnist_images[:4]))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--adversarial", "code", "--adv-eps", "0"], "adversarial eps must be in (0, 1]"),
        (["--adversarial", "code", "--adv-steps", "0"], "adversarial steps must be an integer >= 1"),
        (["--adversarial", "fgsm"], "adversarial mode must be one of"),
        (["--preset", "paper", "--adv-steps", "3"], "--adv-steps need --adversarial MODE"),
        (["--adversarial", "none", "--adv-steps", "3"], "--adv-steps contradict --adversarial none"),
        # The default preset retrains after 2 clean epochs: fewer epochs are refused, saying how to fix it.
        (["--epochs", "1"], "clean_epochs (2) must be below epochs (1), or no adversarial epoch runs"),
        (["--adversarial", "classifier", "--adv-classifier", "missing.keras"], "missing.keras does not exist"),
        (
            ["--adversarial", "end_to_end"],
            "(adversarial mode 'end_to_end' attacks one) and names none: give --classifier",
        ),
    ],
)
def test_train_cli_refuses_bad_adversarial_flags_cleanly(tmp_path, capsys, flags, message):
    assert main(["train", "--out", str(tmp_path / "run"), "--limit", "32", *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "purifier.keras").exists()


def test_clean_epochs_serialise_only_when_set_and_impossible_values_are_refused():
    assert "clean_epochs" not in AdversarialConfig().to_dict()  # older adversarial configs hash as before
    config = tiny_config(epochs=3, adversarial={"mode": "code", "clean_epochs": 2})
    assert config.to_dict()["adversarial"]["clean_epochs"] == 2
    assert LQVAEConfig.from_json(config.to_json()) == config
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError, match="clean_epochs must be an integer >= 0"):
            AdversarialConfig(clean_epochs=bad)
    with pytest.raises(ValueError, match=r"clean_epochs \(2\) must be below epochs \(2\)"):
        tiny_config(epochs=2, adversarial={"mode": "code", "clean_epochs": 2})


def test_clean_epochs_come_first_then_batches_are_perturbed(tmp_path):
    from lqvae_tf.training import train_purifier

    config = tiny_config(epochs=2, adversarial={"mode": "reconstruction", "steps": 2, "eps": 0.3, "clean_epochs": 1})
    result = train_purifier(config, "fashion_mnist", str(tmp_path / "run"), limit=64, verbose=0, validation_limit=64)
    assert result.history["adversarial"] == [0.0, 1.0]
    assert result.history["code_flip"][0] == 0.0  # the first epoch's encoder saw clean images only
    assert keras.models.load_model(result.model_path).config == config


def test_train_cli_takes_adv_clean_epochs(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--limit", "32", "--epochs", "2", "--verbose", "0", "--set", "width=0.125"]
    args += ["--adversarial", "code", "--adv-steps", "1", "--adv-clean-epochs", "1"]
    assert main(args) == 0
    assert json.loads((out / "config.json").read_text())["adversarial"]["clean_epochs"] == 1
