"""Classifier guidance of the purifier: the config, the KL terms inside the losses, training, the CLI."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from lqvae_tf import LQVAE, GuidanceConfig, LQVAEConfig, preset
from lqvae_tf.classifiers import build_classifier
from lqvae_tf.cli.main import main
from lqvae_tf.models.lqvae import guidance_divergence

from conftest import tiny_config


@pytest.fixture(scope="module")
def guide_path(tmp_path_factory) -> str:
    keras.utils.set_random_seed(3)
    path = str(tmp_path_factory.mktemp("guide") / "guide.keras")
    build_classifier("A", (28, 28, 1), 10).save(path)
    return path


def test_guidance_serialises_only_when_set_and_round_trips(guide_path):
    assert "guidance" not in tiny_config().to_dict()  # stored models hash as they did before guidance
    config = tiny_config(guidance={"classifier": guide_path, "weight": 0.5})
    assert config.guidance == GuidanceConfig(classifier=guide_path, weight=0.5)
    assert config.to_dict()["guidance"] == {"classifier": guide_path, "weight": 0.5, "classifier_range": [0.0, 1.0]}
    assert LQVAEConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"weight": 0.0}, "guidance weight must be > 0, got 0.0"),
        ({"weight": -1.0}, "guidance weight must be > 0"),
        ({"weight": float("nan")}, "guidance weight must be > 0"),
        ({"classifier": ""}, "guidance classifier must be a .keras file or None"),
        ({"classifier_range": (1.0, 0.0)}, "guidance classifier_range must be (low, high) with low < high"),
        ({"temperature": 2.0}, "unknown GuidanceConfig fields: ['temperature']"),
    ],
)
def test_impossible_guidance_settings_are_refused_by_name(changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        tiny_config(guidance={"weight": 1.0, **changes})


def test_divergence_is_zero_for_the_same_answer_and_positive_otherwise():
    clean = tf.constant([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    assert abs(float(guidance_divergence(clean, clean))) < 1e-6
    assert float(guidance_divergence(clean, clean[::-1])) > 0.5


def test_the_guided_terms_enter_each_path_s_loss_and_reach_the_encoder(fmnist_images):
    images = fmnist_images[:16]
    plain = LQVAE(tiny_config())
    guided = LQVAE(tiny_config(guidance={"weight": 2.0}))
    guided.set_weights(plain.get_weights())
    with pytest.raises(ValueError, match="call attach_guide first"):
        guided._algorithm_losses(images, training=False)
    with pytest.raises(ValueError, match="attach_guide needs config.guidance"):
        plain.attach_guide(build_classifier("A", (28, 28, 1), 10))
    with pytest.raises(ValueError, match=r"the purifier's are \(28, 28, 1\)"):
        guided.attach_guide(build_classifier("A", (64, 64, 3), 2))
    guided.attach_guide(build_classifier("A", (28, 28, 1), 10))

    def losses_and_encoder_gradient(model):
        with tf.GradientTape() as tape:
            values = model._algorithm_losses(images, training=False)
        return values, tape.gradient(values["loss_f"], model.encoder.trainable_variables)

    base, base_gradient = losses_and_encoder_gradient(plain)
    values, gradient = losses_and_encoder_gradient(guided)
    assert float(values["guide_soft"]) > 0.0 and float(values["guide_hard"]) > 0.0
    for path, term in (("loss_h", "guide_soft"), ("loss_g", "guide_hard")):
        expected = float(base[path]) + 2.0 * float(values[term])
        np.testing.assert_allclose(float(values[path]), expected, rtol=1e-5)
    # The soft path carries the classifier's gradient back to the encoder: its code learns the classes.
    assert max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(gradient, base_gradient)) > 0.0


def test_train_cli_trains_a_guided_purifier_and_the_guide_is_not_saved_with_it(tmp_path, guide_path, fmnist_images):
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--limit", "32", "--epochs", "1", "--verbose", "0", "--set", "width=0.125"]
    args += ["--adversarial", "none", "--guide-classifier", guide_path, "--guide-weight", "0.5"]
    assert main(args) == 0
    assert json.loads((out / "config.json").read_text())["guidance"]["weight"] == 0.5
    history = json.loads((out / "history.json").read_text())
    assert {"guide_hard", "guide_soft", "val_guide_hard"} <= set(history)
    loaded = keras.models.load_model(out / "purifier.keras")
    assert loaded.config.guidance.classifier == guide_path
    assert len(loaded.weights) == len(LQVAE(loaded.config.replace(guidance=None)).weights)  # deploys as a plain one
    assert loaded.purify(fmnist_images[:2]).shape == (2, 28, 28, 1)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--guide-weight", "0.5"], "--guide-weight needs --guide-classifier (or --classifier)"),
        (["--classifier", "GUIDE"], "--classifier is for a config that trains with one"),
        (["--guide-classifier", "missing.keras"], "guidance classifier file missing.keras does not exist"),
        (["--guide-classifier", "GUIDE", "--guide-weight", "0"], "guidance weight must be > 0"),
    ],
)
def test_train_cli_refuses_bad_guidance_flags_cleanly(tmp_path, capsys, guide_path, flags, message):
    flags = [guide_path if flag == "GUIDE" else flag for flag in flags]
    assert main(["train", "--out", str(tmp_path / "run"), "--limit", "32", *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_train_cli_trains_a_guided_preset_with_the_classifier_it_is_given(tmp_path, capsys, guide_path):
    out = tmp_path / "run"
    args = ["train", "--preset", "fashion_mnist_guided", "--out", str(out), "--limit", "32", "--verbose", "0"]
    assert main(args) == 2  # no classifier: refused before the run folder exists, saying what to give
    reasons = "adversarial mode 'end_to_end' attacks one and its guidance keeps one's answers"
    message = f"fashion_mnist_guided trains with a classifier ({reasons}) and names none: give --classifier MODEL"
    assert message in capsys.readouterr().err
    assert not out.exists()
    args += ["--classifier", guide_path, "--epochs", "3", "--set", "width=0.125", "--set", "latent_dim=16"]
    assert main(args) == 0
    config = LQVAEConfig.from_json((out / "config.json").read_text())
    assert config.guidance.classifier == guide_path and config.guidance.weight == 3.0
    assert config.adversarial.classifier == guide_path and config.adversarial.mode == "end_to_end"
    history = json.loads((out / "history.json").read_text())
    assert {"guide_hard", "guide_soft", "loss_adv"} <= set(history) and len(history["loss_f"]) == 3


def test_guide_weight_with_classifier_guides_by_that_classifier(tmp_path):
    import argparse

    from lqvae_tf.cli.main import _guidance

    flags = argparse.Namespace(guide_classifier=None, guide_weight=2.0, classifier=str(tmp_path / "c.keras"))
    guidance = _guidance(flags, None)
    assert guidance == GuidanceConfig(weight=2.0)  # no file yet: --classifier fills it in
    filled = tiny_config(guidance=guidance).with_classifier(flags.classifier)
    assert filled.guidance.classifier == flags.classifier


def test_with_classifier_fills_in_the_guide_and_the_adversary_only_where_the_config_names_none(tmp_path):
    classifier = str(tmp_path / "A.keras")
    filled = tiny_config(guidance={"weight": 3.0}).with_classifier(classifier)
    assert filled.guidance == GuidanceConfig(classifier=classifier, weight=3.0)
    assert not filled.needs_classifier
    named = tiny_config(guidance={"classifier": "/elsewhere/B.keras"})
    assert named.with_classifier(classifier) == named
    point = tiny_config(guidance={"weight": 3.0}, adversarial={"mode": "end_to_end"})
    assert point.needs_classifier
    both = point.with_classifier(classifier, classifier_range=(-1.0, 1.0))
    assert both.guidance == GuidanceConfig(classifier=classifier, weight=3.0, classifier_range=(-1.0, 1.0))
    assert both.adversarial.classifier == classifier and both.adversarial.classifier_range == (-1.0, 1.0)
    # A mode that attacks no classifier gets none (AdversarialConfig would refuse one).
    free = tiny_config(adversarial={"mode": "reconstruction"})
    assert not free.needs_classifier and free.with_classifier(classifier) == free


def test_the_guided_presets_need_a_classifier_and_differ_from_theirs_only_by_it():
    for name in ("fashion_mnist", "mnist"):
        guided = preset(f"{name}_guided")
        assert guided.needs_classifier and not preset(name).needs_classifier
        assert guided.adversarial.mode == "end_to_end" and guided.guidance.weight == 3.0
        assert guided.replace(adversarial=preset(name).adversarial, guidance=None) == preset(name)
    # No two presets share a mutable part.
    assert preset("mnist_guided").guidance is not preset("fashion_mnist_guided").guidance


def test_frontier_cli_refuses_a_missing_training_classifier(tmp_path, capsys, guide_path):
    grid = json.dumps({"preset": "fashion_mnist", "points": [{"guidance": {"weight": 1.0}}]})
    args = ["frontier", "--grid", grid, "--classifier", guide_path, "--training-classifier", "nowhere.keras"]
    assert main([*args, "--out", str(tmp_path / "frontier")]) == 2
    assert "training classifier file nowhere.keras does not exist" in capsys.readouterr().err


def test_several_guides_give_the_mean_of_their_divergences(fmnist_images):
    keras.utils.set_random_seed(5)
    first, second = build_classifier("A", (28, 28, 1), 10), build_classifier("C", (28, 28, 1), 10)
    guided = LQVAE(tiny_config(guidance={"weight": 1.0}))
    x = guided.to_internal(fmnist_images[:16])
    # Two fixed "reconstructions": the terms are then a function of the guides alone.
    x_soft, x_hard = tf.clip_by_value(x + 0.3, -1.0, 1.0), tf.reverse(x, axis=[2])

    def terms(guides):
        guided.attach_guide(guides)
        values = guided._guidance_terms(x, x_soft, x_hard)
        return np.array([float(values["guide_soft"]), float(values["guide_hard"])])

    alone = [terms(first), terms(second)]
    assert not np.allclose(alone[0], alone[1], rtol=0.05)  # two guides that disagree: the mean is neither
    np.testing.assert_allclose(terms([first, second]), (alone[0] + alone[1]) / 2, rtol=1e-5)
    np.testing.assert_allclose(terms((first,)), alone[0], rtol=1e-6)  # a list of one is that classifier
    with pytest.raises(ValueError, match="no classifier given"):
        guided.attach_guide([])
    with pytest.raises(ValueError, match=r"the purifier's are \(28, 28, 1\)"):
        guided.attach_guide([first, build_classifier("A", (64, 64, 3), 2)])
