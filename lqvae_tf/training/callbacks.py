"""Keras callbacks for LQ-VAE training: the `H~` sharpness and adversarial schedules, TensorBoard
images, and the per-epoch record that outlives an interrupted fit."""

from __future__ import annotations

import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from lqvae_tf.atomic import write_text


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


class EpochRecord(keras.callbacks.Callback):
    """Keeps every epoch's logs and wall seconds in a JSON file, so a resumed fit knows its whole past.

    Keras' `History` holds only the epochs of one `fit` call: after `BackupAndRestore` resumes an
    interrupted run at epoch `k`, epochs `0 .. k-1` are gone from it, and a timer around the call
    misses the time they took. This callback writes `path` after every epoch (atomically) and, on
    the first epoch of a resumed fit, keeps what an earlier fit recorded for the epochs before it.

    Put it last among the callbacks, so that its logs hold what the others add (`sharpness`,
    `adversarial`, `val_distinct_codes`), and keep `path` inside the backup folder, so that a
    finished run, whose backup is removed, leaves no record for a new run to inherit.

    Attributes:
        records: one `{"epoch", "seconds", "logs"}` per finished epoch, in order.
        earlier_seconds: the wall seconds of the epochs that earlier, interrupted fits ran.
    """

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.records: list[dict] = []
        self.earlier_seconds = 0.0
        self._first_epoch = True
        self._epoch_start = 0.0

    def on_train_begin(self, logs=None):
        self.records = []
        if os.path.isfile(self.path):
            with open(self.path, encoding="utf-8") as handle:
                self.records = json.load(handle)
        self._first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch:  # a resumed fit starts past 0: keep the earlier fits' epochs before it
            self.records = [record for record in self.records if record["epoch"] < epoch]
            self.earlier_seconds = float(sum(record["seconds"] for record in self.records))
            self._first_epoch = False
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = round(time.perf_counter() - self._epoch_start, 3)
        values = {name: float(value) for name, value in (logs or {}).items()}
        self.records.append({"epoch": int(epoch), "seconds": seconds, "logs": values})
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        write_text(self.path, json.dumps(self.records))

    @property
    def history(self) -> dict[str, list[float]]:
        """Every recorded epoch's metrics, as `History.history` would hold them for one unbroken fit."""
        names = dict.fromkeys(name for record in self.records for name in record["logs"])
        return {name: [record["logs"][name] for record in self.records if name in record["logs"]] for name in names}
