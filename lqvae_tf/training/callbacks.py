"""Keras callbacks for LQ-VAE training: the `H~` sharpness and adversarial schedules, TensorBoard
images; and, from `lqvae_tf.epoch_record`, the per-epoch record that outlives an interrupted fit."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from lqvae_tf.epoch_record import EpochRecord

__all__ = ["AdversarialSchedule", "EpochRecord", "PurifiedImages", "SharpnessSchedule"]


class SharpnessSchedule(keras.callbacks.Callback):
    """Anneals the sharpness of `H~` geometrically from its start to `final` over the epochs.

    Epoch `e` of `E` uses `start * (final / start) ** (e / (E - 1))`, so the first epoch trains
    with the configured sharpness and the last with `final`.

    Args:
        final: sharpness of the last epoch.
        epochs: the number of epochs of the `fit` call.
    """

    def __init__(self, final: float, epochs: int):
        super().__init__()
        self.final = float(final)
        self.epochs = int(epochs)

    def on_epoch_begin(self, epoch, logs=None):
        layer = self.model.quantize_soft
        start = layer.initial_sharpness
        fraction = epoch / max(1, self.epochs - 1)
        layer.sharpness.assign(start * (self.final / start) ** fraction)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["sharpness"] = float(self.model.quantize_soft.sharpness.numpy())


class AdversarialSchedule(keras.callbacks.Callback):
    """Turns adversarial retraining on after `AdversarialConfig.clean_epochs` clean epochs.

    Sets the model's `adversarial_active` at the start of every epoch (so a resumed run gets the
    right phase too) and logs it as `adversarial` (0 or 1) at the end.
    """

    def on_epoch_begin(self, epoch, logs=None):
        clean = self.model.config.adversarial.clean_epochs
        self.model.adversarial_active.assign(1.0 if epoch >= clean else 0.0)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["adversarial"] = float(self.model.adversarial_active.numpy())


class PurifiedImages(keras.callbacks.Callback):
    """Writes a TensorBoard image summary of inputs beside their purified outputs every epoch.

    Args:
        images: a small fixed batch in the model's value range.
        log_dir: the TensorBoard folder (the images go to `log_dir/images`).
    """

    def __init__(self, images: np.ndarray, log_dir: str):
        super().__init__()
        self.images = np.asarray(images, dtype=np.float32)
        self.writer = tf.summary.create_file_writer(f"{log_dir}/images")

    def on_epoch_end(self, epoch, logs=None):
        low, high = self.model.config.value_range
        purified = self.model.purify(self.images)
        pairs = np.concatenate([self.images, purified], axis=2)  # input | purified, side by side
        with self.writer.as_default():
            tf.summary.image("input_vs_purified", (pairs - low) / (high - low), step=epoch, max_outputs=len(pairs))
        self.writer.flush()
