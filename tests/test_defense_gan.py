"""Defense-GAN: the WGAN-GP it projects onto, and the projection as a `Defense`.

A small WGAN-GP is trained once per module (200 critic steps, seconds) on real Fashion-MNIST
test images; the projection is then judged on 32 other images: more descent steps and more
random restarts must each lower the reconstruction error, BPDA must hand back the classifier's
gradient at the purified image, and bad input must fail with a message naming the problem.
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from lqvae_tf.defenses import DefenseGANDefense, defense_gan_from_path
from lqvae_tf.models import WGANGP
from lqvae_tf.training.gan import DefenseGANTarget, GANTrainingConfig, summary_path_of, train_gan

TRAIN, HELD_OUT = slice(0, 448), slice(448, 480)
# A quarter-width network with latent 32, at a higher learning rate (2e-3, not 1e-4) and 2 critic
# steps per generator step (not 5), so that 200 critic steps give a generator that beats the
# dataset's mean image by far; the reference settings need hours, not seconds.
TEST_TRAINING = GANTrainingConfig(
    width=0.25, latent_dim=32, batch_size=32, steps_per_epoch=200, learning_rate=2e-3, critic_steps=2
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fmnist_images):
    """The trained WGAN-GP run: model, `.keras` file and JSON summary."""
    out_path = str(tmp_path_factory.mktemp("gan") / "gan.keras")
    return train_gan(TEST_TRAINING, out_path, images=fmnist_images[TRAIN], verbose=0)


@pytest.fixture(scope="module")
def held_out(fmnist_images) -> np.ndarray:
    return fmnist_images[HELD_OUT]


def _weights(network: keras.Model) -> list[np.ndarray]:
    return [v.numpy().copy() for v in network.trainable_variables]


def _moved(before: list[np.ndarray], network: keras.Model) -> bool:
    return any(not np.array_equal(a, b) for a, b in zip(before, _weights(network)))


# ------------------------------------------------------------------ WGAN-GP
def test_train_gan_writes_the_model_and_a_json_summary_beside_it(trained):
    folder = os.path.dirname(trained.model_path)
    assert sorted(os.listdir(folder)) == ["gan.json", "gan.keras"]  # no scratch left by the atomic write
    with open(summary_path_of(trained.model_path), encoding="utf-8") as handle:
        summary = json.load(handle)
    assert GANTrainingConfig.from_dict(summary["config"]) == TEST_TRAINING
    assert summary["critic_steps_taken"] == 200 and summary["generator_steps_taken"] == 100
    assert all(np.isfinite(values).all() for values in summary["history"].values())


def test_saved_gan_loads_with_identical_generator_outputs_and_optimizer_state(trained):
    restored = keras.models.load_model(trained.model_path)
    assert isinstance(restored, WGANGP) and restored.get_config() == trained.model.get_config()
    latents = tf.random.stateless_normal((8, TEST_TRAINING.latent_dim), seed=(1, 2))
    np.testing.assert_array_equal(restored(latents).numpy(), trained.model(latents).numpy())
    assert int(restored.generator_optimizer.iterations.numpy()) == 100
    assert int(restored.critic_optimizer.iterations.numpy()) == 200


def test_generator_steps_only_after_every_critic_steps_critic_steps_with_finite_losses(fmnist_images):
    model = WGANGP(width=0.125, latent_dim=16, critic_steps=3)
    model.compile()
    batch = tf.constant(fmnist_images[:16])
    for step in (1, 2, 3):
        generator_before, critic_before = _weights(model.generator), _weights(model.critic)
        losses = model.train_step(batch)
        assert all(np.isfinite(float(value)) for value in losses.values()), losses
        assert _moved(critic_before, model.critic)
        assert _moved(generator_before, model.generator) == (step == 3)
    assert int(model.generator_optimizer.iterations.numpy()) == 1
    assert float(losses["gradient_penalty"]) >= 0.0


def test_64x64x3_networks_and_bad_shapes():
    model = WGANGP((64, 64, 3), latent_dim=8, width=0.125, value_range=(-1.0, 1.0))
    images = model(tf.zeros((2, 8))).numpy()
    assert images.shape == (2, 64, 64, 3) and images.min() >= -1.0 and images.max() <= 1.0
    assert model.critic(images).shape == (2,)
    with pytest.raises(ValueError, match="image_shape must be one of"):
        WGANGP((32, 32, 3))


# ------------------------------------------------------------------ the projection
def test_reconstruction_error_falls_with_more_descent_steps(trained, fmnist_images, held_out):
    few = DefenseGANDefense(trained.model, steps=2, restarts=4).reconstruction_error(held_out)
    many = DefenseGANDefense(trained.model, steps=30, restarts=4).reconstruction_error(held_out)
    assert many.mean() < 0.8 * few.mean(), (few.mean(), many.mean())
    # ... and the generator is trained: its best fit is far closer than the mean training image.
    mean_image_error = np.mean(np.square(held_out - fmnist_images[TRAIN].mean(axis=0)))
    assert many.mean() < 0.6 * mean_image_error, (many.mean(), mean_image_error)


def test_more_restarts_never_hurt_an_image_and_lower_the_mean_error(trained, held_out):
    one = DefenseGANDefense(trained.model, steps=30, restarts=1).reconstruction_error(held_out)
    eight = DefenseGANDefense(trained.model, steps=30, restarts=8).reconstruction_error(held_out)
    # Restart 0 of each image is the same start in both, and the best of eight is kept.
    assert (eight <= one + 1e-5).all(), (eight - one).max()
    assert eight.mean() < 0.95 * one.mean(), (one.mean(), eight.mean())


def test_purify_keeps_shape_and_range_and_repeats_for_a_fixed_seed(trained, held_out):
    defense = DefenseGANDefense(trained.model, steps=10, restarts=3, seed=7)
    purified = defense.purify(held_out)
    assert purified.shape == held_out.shape and purified.dtype == np.float32
    assert purified.min() >= 0.0 and purified.max() <= 1.0
    # The same seed gives the same images, whatever the batching and however many images follow.
    again = DefenseGANDefense(trained.model, steps=10, restarts=3, seed=7)
    np.testing.assert_allclose(again.purify(held_out, batch_size=5), purified, atol=1e-5)
    np.testing.assert_allclose(again.purify(held_out[:3]), purified[:3], atol=1e-5)
    other_seed = DefenseGANDefense(trained.model, steps=10, restarts=3, seed=8).purify(held_out)
    assert np.abs(other_seed - purified).max() > 1e-2
    # Images in [-1, 1] are mapped onto the generator's [0, 1] and back.
    signed = DefenseGANDefense(trained.model, steps=10, restarts=3, seed=7, value_range=(-1.0, 1.0))
    np.testing.assert_allclose(signed.purify(held_out * 2 - 1), purified * 2 - 1, atol=1e-4)


def test_stochastic_defense_draws_new_starts_on_every_call(trained, held_out):
    defense = DefenseGANDefense(trained.model, steps=2, restarts=2, stochastic=True)
    assert defense.stochastic
    assert np.abs(defense.purify(held_out[:4]) - defense.purify(held_out[:4])).max() > 1e-3


def test_bpda_gradient_is_the_classifiers_gradient_at_the_purified_image(trained, held_out):
    keras.utils.set_random_seed(0)
    # Smooth (tanh, not ReLU), so that the float round-off of the straight-through sum cannot
    # flip a unit and change the gradient.
    classifier = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3, strides=2, activation="tanh"), keras.layers.Flatten()]
        + [keras.layers.Dense(10)]
    )
    defense = DefenseGANDefense(trained.model, steps=5, restarts=2)
    x = tf.constant(held_out[:8])
    labels = tf.range(8) % 10

    def loss_of(images):
        logits = classifier(images)
        return tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))

    purified = tf.constant(defense.purify(held_out[:8]))
    with tf.GradientTape() as tape:
        tape.watch(purified)
        at_purified = loss_of(purified)
    expected = tape.gradient(at_purified, purified).numpy()
    assert np.abs(expected).max() > 0

    for mode in ("bpda", "identity"):
        with tf.GradientTape() as tape:
            tape.watch(x)
            filtered = defense.differentiable(x, mode)
            loss = loss_of(filtered)
        gradient = tape.gradient(loss, x).numpy()
        np.testing.assert_allclose(filtered.numpy(), purified.numpy(), atol=1e-5)  # forward = purify
        assert np.isfinite(gradient).all() and np.abs(gradient).max() > 0
        np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-6)

    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = loss_of(defense.differentiable(x, "naive"))
    naive = tape.gradient(loss, x)
    assert naive is not None and not np.any(naive.numpy())  # z* held constant: no path from x
    # The defense in front of the classifier, as one Keras model.
    assert defense.protect(classifier)(x).shape == (8, 10)


# ------------------------------------------------------------------ bad input and settings
@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((4, 28, 28), np.float32), "rank 3"),
        (np.zeros((28, 28, 1), np.float32), "single image"),
        (np.zeros((4, 28, 28, 3), np.float32), "3 channels"),
        (np.zeros((4, 28, 28, 1), np.uint8), "x / 255"),
        (np.full((4, 28, 28, 1), np.nan, np.float32), "NaN"),
        (np.full((4, 28, 28, 1), 255.0, np.float32), "outside the model's value range"),
        (np.zeros((0, 28, 28, 1), np.float32), "empty batch"),
    ],
)
def test_bad_images_raise_a_value_error_naming_the_problem(trained, images, message):
    defense = DefenseGANDefense(trained.model, steps=1, restarts=1)
    for method in (defense.purify, defense.reconstruction_error):
        with pytest.raises(ValueError, match=message) as error:
            method(images)
        assert "expected float images of shape (batch, 28, 28, 1) in [0, 1]" in str(error.value)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(steps=0), "steps must be a positive integer, got 0"),
        (dict(steps=2.5), "steps must be a positive integer, got 2.5"),
        (dict(restarts=-1), "restarts must be a positive integer, got -1"),
        (dict(restarts=True), "restarts must be a positive integer, got True"),
        (dict(learning_rate=0.0), "learning_rate must be a positive finite number"),
        (dict(momentum=1.0), "momentum must be in \\[0, 1\\)"),
        (dict(batch_size=0), "batch_size must be a positive integer"),
        (dict(value_range=(1.0, 0.0)), "value_range must be \\(low, high\\) with low < high"),
        (dict(generator_range=(-1.0, 1.0)), "disagrees with the WGANGP's value_range"),
    ],
)
def test_bad_settings_raise_a_value_error_naming_the_setting(trained, settings, message):
    with pytest.raises(ValueError, match=message):
        DefenseGANDefense(trained.model, **settings)


def test_bad_generators_mode_and_files_are_refused(trained, tmp_path, held_out):
    with pytest.raises(ValueError, match="generator must be a WGANGP or a keras.Model"):
        DefenseGANDefense("gan.keras")
    with pytest.raises(ValueError, match="latents \\(batch, latent_dim\\) to images"):
        DefenseGANDefense(trained.model.critic)
    with pytest.raises(ValueError, match="gradient mode must be one of"):
        DefenseGANDefense(trained.model, steps=1, restarts=1).differentiable(held_out[:2], "exact")
    other = str(tmp_path / "critic.keras")
    trained.model.critic.save(other)
    with pytest.raises(ValueError, match="not a WGANGP"):
        defense_gan_from_path(other)
    with pytest.raises(ValueError, match="must end in .keras"):
        train_gan(TEST_TRAINING, str(tmp_path / "gan.h5"), images=held_out)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        GANTrainingConfig(batch_size=0).validate()


def test_defense_gan_from_path_projects_with_the_saved_generator(trained, held_out):
    loaded = defense_gan_from_path(trained.model_path, steps=5, restarts=2, seed=3)
    in_memory = DefenseGANDefense(trained.model, steps=5, restarts=2, seed=3)
    assert (loaded.steps, loaded.restarts, loaded.latent_dim) == (5, 2, TEST_TRAINING.latent_dim)
    np.testing.assert_allclose(loaded.purify(held_out[:4]), in_memory.purify(held_out[:4]), atol=1e-6)


# ------------------------------------------------------------------ training toward a target
def _always(label: int) -> keras.Model:
    """A classifier that answers `label` for every image, whatever Defense-GAN makes of it."""
    bias = np.zeros(10, np.float32)
    bias[label] = 1.0
    dense = keras.layers.Dense(10, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(bias))
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), dense])


SEARCH = {"steps": 2, "restarts": 1}
QUICK = dataclasses.replace(TEST_TRAINING, steps_per_epoch=4)


def _target(held_out, label, accuracy=0.9, every_epochs=2, cls=DefenseGANTarget):
    return cls(_always(0), held_out[:4], np.full(4, label), accuracy, every_epochs=every_epochs, search=SEARCH)


def test_a_generator_trained_toward_a_target_stops_once_defense_gan_reaches_it(tmp_path, fmnist_images, held_out):
    config = dataclasses.replace(QUICK, epochs=6)
    result = train_gan(config, str(tmp_path / "gan.keras"), images=fmnist_images[TRAIN], target=_target(held_out, 0))
    with open(summary_path_of(result.model_path), encoding="utf-8") as handle:
        summary = json.load(handle)
    target = summary["target"]
    assert target["reached"] and target["curve"] == [{"epoch": 2, "accuracy": 1.0}]  # checked after epoch 2
    assert summary["epochs_trained"] == 2 and summary["critic_steps_taken"] == 2 * 4  # stopped there
    assert (target["accuracy"], target["images"], target["search"]) == (0.9, 4, SEARCH)


def test_a_target_out_of_reach_trains_the_whole_budget_and_measures_the_last_epoch(tmp_path, fmnist_images, held_out):
    config = dataclasses.replace(QUICK, epochs=3)
    result = train_gan(config, str(tmp_path / "gan.keras"), images=fmnist_images[TRAIN], target=_target(held_out, 1))
    with open(summary_path_of(result.model_path), encoding="utf-8") as handle:
        summary = json.load(handle)
    assert summary["epochs_trained"] == 3 and not summary["target"]["reached"]
    assert summary["target"]["curve"] == [{"epoch": 2, "accuracy": 0.0}, {"epoch": 3, "accuracy": 0.0}]
    with pytest.raises(ValueError, match="target accuracy must be in \\(0, 1\\]"):
        _target(held_out, 0, accuracy=1.5)
    with pytest.raises(ValueError, match="every_epochs must be a positive integer"):
        _target(held_out, 0, every_epochs=0)


def test_an_interrupted_generator_training_resumes_from_its_last_finished_epoch(tmp_path, fmnist_images, held_out):
    class Interruption(Exception):
        pass

    class InterruptedOnce(DefenseGANTarget):
        armed = True

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2 and InterruptedOnce.armed:
                InterruptedOnce.armed = False
                raise Interruption

    config, out, backup = dataclasses.replace(QUICK, epochs=4), str(tmp_path / "gan.keras"), str(tmp_path / "backup")
    arguments = dict(images=fmnist_images[TRAIN], backup_dir=backup)
    with pytest.raises(Interruption):
        train_gan(config, out, target=_target(held_out, 1, cls=InterruptedOnce), **arguments)
    assert not os.path.exists(out) and os.path.isdir(backup)
    result = train_gan(config, out, target=_target(held_out, 1, cls=InterruptedOnce), **arguments)
    with open(summary_path_of(out), encoding="utf-8") as handle:
        summary = json.load(handle)
    assert summary["epochs_trained"] == 4 and len(summary["history"]["critic_loss"]) == 4
    assert summary["critic_steps_taken"] == 4 * 4  # no epoch repeated, none lost
    assert [point["epoch"] for point in summary["target"]["curve"]] == [2, 4]  # the check before the break kept
    assert result.earlier_seconds > 0 and not os.path.exists(backup)
