"""LQVAE: Algorithm 1's training step, the filter, serialization and input checks."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from lqvae_tf import LQVAE

from conftest import tiny_config


def _weights(network):
    return [v.numpy().copy() for v in network.trainable_variables]


def test_decoder_soft_starts_as_a_copy_of_decoder_hard():
    model = LQVAE(tiny_config())
    for soft, hard in zip(_weights(model.decoder_soft), _weights(model.decoder_hard)):
        np.testing.assert_array_equal(soft, hard)


def test_each_parameter_group_moves_only_by_its_own_loss(fmnist_images):
    # Noise off, so the step's losses equal the ones computed here; plain SGD, so the move of
    # every weight is exactly -lr * gradient of the loss that is meant to move it.
    model = LQVAE(tiny_config(sample_noise_scale=0.0))
    lr = 0.01
    model.compile(
        encoder_optimizer=keras.optimizers.SGD(lr),
        decoder_hard_optimizer=keras.optimizers.SGD(lr),
        decoder_soft_optimizer=keras.optimizers.SGD(lr),
    )
    x = tf.constant(fmnist_images[:32])
    groups = {
        "encoder": model.encoder,
        "decoder_hard": model.decoder_hard,
        "decoder_soft": model.decoder_soft,
    }
    with tf.GradientTape(persistent=True) as tape:
        losses = model._algorithm_losses(x, training=True)
    gradients = {
        (loss, group): tape.gradient(losses[loss], network.trainable_variables)
        for loss in ("loss_f", "loss_g", "loss_h")
        for group, network in groups.items()
    }
    before = {group: _weights(network) for group, network in groups.items()}
    model.train_step(x)

    own_loss = {"encoder": "loss_f", "decoder_hard": "loss_g", "decoder_soft": "loss_h"}
    for group, network in groups.items():
        moves = [after - start for after, start in zip(_weights(network), before[group])]
        expected = [-lr * g.numpy() for g in gradients[(own_loss[group], group)]]
        for move, want in zip(moves, expected):
            np.testing.assert_allclose(move, want, rtol=1e-3, atol=1e-6)
    # L_g never reaches the encoder (no gradient through H), nor L_h Decoder1 ...
    assert all(g is None for g in gradients[("loss_g", "encoder")])
    assert all(g is None for g in gradients[("loss_h", "decoder_hard")])
    # ... and the encoder's move is L_f's, which differs from L_h's alone (KL and penalty count).
    encoder_h = np.concatenate([g.numpy().ravel() for g in gradients[("loss_h", "encoder")]])
    encoder_f = np.concatenate([g.numpy().ravel() for g in gradients[("loss_f", "encoder")]])
    assert not np.allclose(encoder_h, encoder_f, rtol=1e-3, atol=1e-7)


def _fit(config, images, epochs):
    keras.utils.set_random_seed(config.seed)
    model = LQVAE(config)
    model.compile()
    model.fit(images, batch_size=config.batch_size, epochs=epochs, verbose=0, shuffle=False)
    return model


def test_training_lowers_loss_g_on_real_fashion_mnist(fmnist_images):
    config = tiny_config()
    model = LQVAE(config)
    model.compile()
    before = model.evaluate(fmnist_images[:128], batch_size=64, verbose=0, return_dict=True)
    model.fit(fmnist_images[:384], batch_size=32, epochs=3, verbose=0)
    after = model.evaluate(fmnist_images[:128], batch_size=64, verbose=0, return_dict=True)
    assert after["loss_g"] < 0.7 * before["loss_g"], (before, after)


def test_penalty_moves_input_gradient_norm_toward_k(fmnist_images):
    # A tiny network starts with ||grad_x mu|| near 1e-5; weight 100 lets 24 steps show the pull.
    images = fmnist_images[:256]
    k = 0.1
    with_penalty = _fit(tiny_config(lipschitz_k=k, penalty_weight=100.0), images, epochs=3)
    without = _fit(tiny_config(lipschitz_k=k, penalty_weight=0.0), images, epochs=3)
    gap_with = abs(with_penalty.evaluate(images, verbose=0, return_dict=True)["grad_norm"] - k)
    gap_without = abs(without.evaluate(images, verbose=0, return_dict=True)["grad_norm"] - k)
    assert gap_with < 0.75 * gap_without, (gap_with, gap_without)


def test_purify_is_deterministic_and_in_range(fmnist_images):
    model = LQVAE(tiny_config())
    first = model.purify(fmnist_images[:40], batch_size=16)
    second = model.purify(fmnist_images[:40])
    np.testing.assert_array_equal(first, second)
    assert first.shape == (40, 28, 28, 1) and first.dtype == np.float32
    assert first.min() >= 0.0 and first.max() <= 1.0


def test_purify_is_decoder_hard_of_hard_code_of_mean(fmnist_images):
    model = LQVAE(tiny_config(value_range=(-1.0, 1.0)))
    x = fmnist_images[:8] * 2 - 1
    mean, _ = model.encoder(x)
    expected = model.decoder_hard(model.quantize_hard(mean)).numpy()
    np.testing.assert_allclose(model.purify(x), expected, atol=1e-6)
    np.testing.assert_array_equal(model.codes(x), model.quantize_hard(mean).numpy())


def test_save_and_load_give_identical_outputs_and_optimizer_state(tmp_path, fmnist_images):
    model = _fit(tiny_config(), fmnist_images[:64], epochs=1)
    path = str(tmp_path / "purifier.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, LQVAE) and restored.config == model.config
    np.testing.assert_array_equal(restored.purify(fmnist_images[:16]), model.purify(fmnist_images[:16]))
    for name in ("encoder_optimizer", "decoder_hard_optimizer", "decoder_soft_optimizer"):
        assert int(getattr(restored, name).iterations.numpy()) == 2


def test_model_config_round_trip():
    model = LQVAE(tiny_config(latent_dim=12))
    clone = LQVAE.from_config(model.get_config())
    assert clone.config == model.config
    assert clone.encoder.output_shape[0] == (None, 12)


def test_from_preset_accepts_overrides():
    model = LQVAE.from_preset("paper", load_weights=False, width=0.125)
    assert model.config.value_range == (-1.0, 1.0) and model.config.width == 0.125


def test_fit_before_compile_says_so(fmnist_images):
    with pytest.raises(ValueError, match="compile"):
        LQVAE(tiny_config()).fit(fmnist_images[:8], verbose=0)


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((4, 28, 28), np.float32), "rank 3"),
        (np.zeros((28, 28, 1), np.float32), "single image"),
        (np.zeros((4, 32, 32, 1), np.float32), "32x32 pixels"),
        (np.zeros((4, 28, 28, 3), np.float32), "3 channels"),
        (np.zeros((4, 28, 28, 1), np.uint8), "x / 255"),
        (np.zeros((4, 28, 28, 1), np.int32), "integer dtype int32"),
        (np.full((4, 28, 28, 1), np.nan, np.float32), "NaN"),
        (np.full((4, 28, 28, 1), 255.0, np.float32), "outside the model's value range"),
        (np.zeros((0, 28, 28, 1), np.float32), "empty batch"),
        (np.array([["a"]]), "dtype <U1"),
    ],
)
def test_bad_inputs_raise_a_value_error_naming_the_problem(images, message):
    model = LQVAE(tiny_config())
    for method in (model.purify, model.encode, model.codes):
        with pytest.raises(ValueError, match=message) as error:
            method(images)
        assert "expected float images of shape (batch, 28, 28, 1) in [0, 1]" in str(error.value)


def test_backup_and_restore_resumes_an_interrupted_fit(tmp_path, fmnist_images):
    images = fmnist_images[:64]
    config = tiny_config(batch_size=32)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt

    def fit(callbacks):
        keras.utils.set_random_seed(0)
        model = LQVAE(config)
        model.compile()
        model.fit(images, batch_size=32, epochs=2, verbose=0, shuffle=False, callbacks=callbacks)
        return model

    straight = fit([])
    backup = str(tmp_path / "backup")
    with pytest.raises(KeyboardInterrupt):
        fit([keras.callbacks.BackupAndRestore(backup), Interrupt()])
    resumed = fit([keras.callbacks.BackupAndRestore(backup)])
    assert int(resumed.decoder_soft_optimizer.iterations.numpy()) == 4
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # float noise only


def test_a_resumed_training_keeps_every_epoch_in_its_history_and_counts_the_earlier_time(tmp_path, monkeypatch):
    from lqvae_tf.training import callbacks, train_purifier

    config = tiny_config(epochs=2)
    run = str(tmp_path / "run")
    real_end = callbacks.EpochRecord.on_epoch_end

    def end_then_interrupt(self, epoch, logs=None):
        real_end(self, epoch, logs)
        raise KeyboardInterrupt  # killed after the first epoch was backed up and recorded

    monkeypatch.setattr(callbacks.EpochRecord, "on_epoch_end", end_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_purifier(config, "fashion_mnist", run, limit=64, verbose=0, validation_limit=64)
    assert os.path.isfile(os.path.join(run, "backup", "epochs.json"))
    monkeypatch.setattr(callbacks.EpochRecord, "on_epoch_end", real_end)

    result = train_purifier(config, "fashion_mnist", run, limit=64, verbose=0, validation_limit=64)
    assert result.earlier_seconds > 0.0
    with open(os.path.join(run, "history.json"), encoding="utf-8") as handle:
        history = json.load(handle)
    assert history == result.history
    assert len(history["loss_g"]) == len(history["val_loss_g"]) == len(history["val_distinct_codes"]) == 2
    assert not os.path.exists(os.path.join(run, "backup"))  # nothing left for a new run to inherit
    # How far it trained counts the interrupted call's steps too: 2 epochs of 64 images at batch 32.
    with open(os.path.join(run, "training.json"), encoding="utf-8") as handle:
        record = json.load(handle)
    assert record == {
        "epochs": 2,
        "planned_epochs": 2,
        "optimizer_steps": 2 * 64 // config.batch_size,
        "batch_size": 32,
    }


def test_celeb_a_architecture_purifies_64x64x3_faces():
    model = LQVAE.from_preset("celeb_a", load_weights=False, width=0.125, latent_dim=16)
    faces = np.random.default_rng(0).uniform(0, 1, (3, 64, 64, 3)).astype(np.float32)
    purified = model.purify(faces)
    assert purified.shape == (3, 64, 64, 3) and model.codes(faces).shape == (3, 16)
    with pytest.raises(ValueError, match="expected float images of shape \\(batch, 64, 64, 3\\)"):
        model.purify(faces[..., :1])
