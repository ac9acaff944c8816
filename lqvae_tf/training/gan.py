"""Training the WGAN-GP generator that Defense-GAN projects onto, with `fit`, and saving it.

`train_gan` writes two files: the model (`<name>.keras`, written atomically) and beside it a JSON
summary (`<name>.json`: the resolved configuration, the per-epoch metrics, the step counts and the
wall time), so a run can be rebuilt and judged from one folder.

Defense-GAN is only as good as its generator's range: a generator trained too briefly projects
every input onto a blurred digit, and the classifier behind it loses accuracy on clean images.
With a `DefenseGANTarget`, training measures that accuracy every few epochs (the real search,
`DefenseGANDefense`, on held images) and stops once it reaches the target, or at `epochs`, the
budget; the summary keeps the curve. With a `backup_dir`, an interrupted training resumes from
its last finished epoch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from lqvae_tf.atomic import atomic_path, write_text
from lqvae_tf.data import DATASETS, batched, load
from lqvae_tf.defenses import DefenseGANDefense
from lqvae_tf.epoch_record import EpochRecord
from lqvae_tf.models.inputs import check_images
from lqvae_tf.models.wgan import (
    ADAM_LEARNING_RATE,
    CRITIC_STEPS,
    GRADIENT_PENALTY_WEIGHT,
    REFERENCE_LATENT_DIM,
    WGANGP,
    wgan_gp_adam,
)

REFERENCE_BATCH_SIZE = 50  # BATCH_SIZE, kabkabm/defensegan experiments/cfgs/gans/default.yml
RECORD_FILE = "epochs.json"  # inside the backup folder: the EpochRecord of an unfinished training
TARGET_METRIC = "defense_gan_accuracy"  # the logs' name of the accuracy a DefenseGANTarget measures
IMAGE_SHAPES = {name: info.image_shape for name, info in DATASETS.items()}


@dataclasses.dataclass(frozen=True)
class GANTrainingConfig:
    """Everything a WGAN-GP run depends on; the defaults are the Defense-GAN reference's.

    The reference trains for 200,000 generator steps (1,000,000 critic batches of 50); choose
    `epochs` (and `steps_per_epoch`) for the compute at hand.

    Args:
        dataset: "fashion_mnist", "mnist" or "celeb_a" (its image shape sets the networks').
        latent_dim, width, value_range, gradient_penalty_weight, critic_steps: as `WGANGP`.
        learning_rate: of both Adam optimizers (betas are WGAN-GP's 0.5 and 0.9).
        batch_size: real images per critic step.
        epochs: `fit` epochs.
        steps_per_epoch: critic steps per epoch (the data repeats); None is one pass over it.
        limit: train on the first `limit` training images only.
        seed: seeds the shuffling, the weights and the model's noise.
    """

    dataset: str = "fashion_mnist"
    latent_dim: int = REFERENCE_LATENT_DIM
    width: float = 1.0
    value_range: tuple[float, float] = (0.0, 1.0)
    gradient_penalty_weight: float = GRADIENT_PENALTY_WEIGHT
    critic_steps: int = CRITIC_STEPS
    learning_rate: float = ADAM_LEARNING_RATE
    batch_size: int = REFERENCE_BATCH_SIZE
    epochs: int = 1
    steps_per_epoch: int | None = None
    limit: int | None = None
    seed: int = 0

    def validate(self) -> GANTrainingConfig:
        """Raises ValueError naming the first impossible setting; returns the config."""
        for name in ("batch_size", "epochs", "critic_steps", "latent_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.dataset not in IMAGE_SHAPES:
            raise ValueError(f"dataset must be one of {sorted(IMAGE_SHAPES)}, got {self.dataset!r}")
        for name in ("steps_per_epoch", "limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if not 0 < self.learning_rate < float("inf"):
            raise ValueError(f"learning_rate must be a positive finite number, got {self.learning_rate!r}")
        return self

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return IMAGE_SHAPES[self.dataset]

    def model(self) -> WGANGP:
        """A fresh, compiled `WGANGP` with this configuration."""
        model = WGANGP(
            self.image_shape,
            latent_dim=self.latent_dim,
            width=self.width,
            value_range=self.value_range,
            gradient_penalty_weight=self.gradient_penalty_weight,
            critic_steps=self.critic_steps,
            seed=self.seed,
        )
        model.compile(
            critic_optimizer=wgan_gp_adam(self.learning_rate, "critic_optimizer"),
            generator_optimizer=wgan_gp_adam(self.learning_rate, "generator_optimizer"),
        )
        return model

    def to_dict(self) -> dict:
        """The JSON form (tuples as lists)."""
        return {**dataclasses.asdict(self), "value_range": list(self.value_range)}

    @classmethod
    def from_dict(cls, data: dict) -> GANTrainingConfig:
        """The config `to_dict` wrote (e.g. a summary's "config")."""
        return cls(**{**data, "value_range": tuple(data.get("value_range", cls.value_range))})


@dataclasses.dataclass
class GANTrainResult:
    """The trained model, where it and its summary are, and the per-epoch metrics."""

    model: WGANGP
    model_path: str
    summary_path: str
    history: dict[str, list[float]]
    earlier_seconds: float = 0.0  # the wall time of earlier, interrupted calls (with a backup_dir)


class DefenseGANTarget(keras.callbacks.Callback):
    """Every `every_epochs` epochs, the accuracy of `classifier` on held images projected by
    Defense-GAN with the generator as trained so far; stops the training once it reaches `accuracy`.

    Logged as `defense_gan_accuracy` on the epochs it is measured (so `EpochRecord` and the
    summary keep the curve), and measured once more at the end of the training if the last epoch
    was not a measured one.

    Args:
        classifier: a Keras classifier of images in `value_range` (logits or probabilities).
        images: the held images (not the generator's training images), in `value_range`.
        labels: their labels.
        accuracy: the target, in [0, 1].
        every_epochs: measure after every this-many epochs.
        search: `DefenseGANDefense` settings (steps, restarts, learning_rate, momentum): the
            search the evaluation runs, so the target is what the tables will show.
        value_range: the images' range.
        seed: the search's random starts.
    """

    def __init__(
        self,
        classifier: keras.Model,
        images: np.ndarray,
        labels: np.ndarray,
        accuracy: float,
        every_epochs: int = 5,
        search: dict | None = None,
        value_range: tuple[float, float] = (0.0, 1.0),
        seed: int = 0,
    ):
        super().__init__()
        if not 0.0 < accuracy <= 1.0:
            raise ValueError(f"the target accuracy must be in (0, 1], got {accuracy!r}")
        if isinstance(every_epochs, bool) or not isinstance(every_epochs, int) or every_epochs < 1:
            raise ValueError(f"every_epochs must be a positive integer, got {every_epochs!r}")
        if len(images) != len(labels) or len(images) == 0:
            raise ValueError(f"{len(images)} images and {len(labels)} labels: need the same, non-zero count")
        self.classifier = classifier
        self.images = np.asarray(images, np.float32)
        self.labels = np.asarray(labels)
        self.accuracy = float(accuracy)
        self.every_epochs = every_epochs
        self.search = dict(search or {})
        self.value_range = tuple(value_range)
        self.seed = seed
        self.reached = False
        self.last_measured_epoch = -1  # the fit's epoch (from 0) of the latest check

    def measure(self) -> float:
        """The classifier's accuracy on the held images behind Defense-GAN with the current generator."""
        defense = DefenseGANDefense(self.model, seed=self.seed, value_range=self.value_range, **self.search)
        predictions = np.asarray(self.classifier.predict(defense.purify(self.images), verbose=0)).argmax(axis=-1)
        return float(np.mean(predictions == self.labels))

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_epochs:
            return
        self.last_measured_epoch = epoch
        value = self.measure()
        if logs is not None:
            logs[TARGET_METRIC] = value
        if value >= self.accuracy:
            self.reached = True
            self.model.stop_training = True


def summary_path_of(model_path: str) -> str:
    """The JSON summary beside a saved model: `gan.keras` -> `gan.json`."""
    return os.path.splitext(model_path)[0] + ".json"


def _training_images(config: GANTrainingConfig, images, data_dir: str | None) -> tf.data.Dataset:
    """Unbatched training images: the given array, or the configured dataset's train split."""
    if images is not None:
        images = check_images(images, config.image_shape, config.value_range)
        return tf.data.Dataset.from_tensor_slices(images[: config.limit])
    loader_args = {"value_range": config.value_range, "limit": config.limit}
    if data_dir is not None:
        loader_args["data_dir"] = data_dir
    return load(config.dataset, "train", **loader_args).map(lambda image, label: image)


def train_gan(
    config: GANTrainingConfig,
    out_path: str,
    images: np.ndarray | None = None,
    data_dir: str | None = None,
    log_dir: str | None = None,
    verbose: str | int = "auto",
    target: DefenseGANTarget | None = None,
    backup_dir: str | None = None,
) -> GANTrainResult:
    """Trains a WGAN-GP with `fit` and saves it to `out_path` (a `.keras` file) atomically.

    Args:
        config: the model and training settings.
        out_path: where the model goes; the JSON summary goes beside it (`summary_path_of`).
        images: train on these images instead of loading `config.dataset` (small real slices,
            data already in memory); of that dataset's image shape, in `config.value_range`.
        data_dir: the dataset's folder (see `lqvae_tf.data`).
        log_dir: write TensorBoard scalars there (none if None).
        verbose: Keras `fit` verbosity ("auto" shows a progress bar).
        target: stop once Defense-GAN with this generator gives the target accuracy
            (`DefenseGANTarget`); `config.epochs` is then the budget. The summary records the
            curve, whether the target was reached, and the generator steps taken.
        backup_dir: where an unfinished training keeps its state after every epoch; the same
            call resumes from there (Keras' `BackupAndRestore`, which removes the folder at the
            end). The summary's history and time then cover the interrupted calls too.

    Raises:
        ValueError: for an impossible configuration, an `out_path` not ending in `.keras`, or
            training images of the wrong form.
    """
    config.validate()
    if not out_path.endswith(".keras"):
        raise ValueError(f"out_path must end in .keras (Keras' own format), got {out_path!r}")
    keras.utils.set_random_seed(config.seed)
    model = config.model()
    dataset = _training_images(config, images, data_dir)
    batches = batched(dataset, config.batch_size, shuffle=True, seed=config.seed)
    if config.steps_per_epoch is not None:
        batches = batches.repeat()
    callbacks: list[keras.callbacks.Callback] = [keras.callbacks.TensorBoard(log_dir=log_dir)] if log_dir else []
    if target is not None:
        callbacks.append(target)
    record = None
    if backup_dir is not None:
        # BackupAndRestore first (it restores before the others start), the record last (it
        # keeps what the others add to the logs).
        record = EpochRecord(os.path.join(backup_dir, RECORD_FILE))
        callbacks = [keras.callbacks.BackupAndRestore(backup_dir), *callbacks, record]

    start = time.perf_counter()
    history = model.fit(
        batches, epochs=config.epochs, steps_per_epoch=config.steps_per_epoch, callbacks=callbacks, verbose=verbose
    )
    seconds = time.perf_counter() - start + (record.earlier_seconds if record else 0.0)
    history_values = record.history if record else {name: list(values) for name, values in history.history.items()}
    history_values = {name: [float(v) for v in values] for name, values in history_values.items()}
    epochs_trained = len(next(iter(history_values.values()), []))
    target_summary = None
    if target is not None:
        curve = history_values.get(TARGET_METRIC, [])
        if target.last_measured_epoch != epochs_trained - 1:  # the last epoch was not measured: measure it
            curve = [*curve, target.measure()]
            target.reached = curve[-1] >= target.accuracy
        checked = [e for e in range(1, epochs_trained + 1) if e % target.every_epochs == 0]
        if len(checked) < len(curve):
            checked.append(epochs_trained)
        target_summary = {
            "accuracy": target.accuracy,
            "reached": bool(target.reached),
            "every_epochs": target.every_epochs,
            "images": len(target.images),
            "search": target.search,
            "curve": [{"epoch": e, "accuracy": a} for e, a in zip(checked, curve)],
        }

    with atomic_path(out_path) as temporary:
        model.save(temporary)
    summary = {
        "model_path": os.path.basename(out_path),
        "config": config.to_dict(),
        "image_shape": list(config.image_shape),
        "critic_steps_taken": int(model.critic_optimizer.iterations.numpy()),
        "generator_steps_taken": int(model.generator_optimizer.iterations.numpy()),
        "train_seconds": round(seconds, 2),
        "epochs_trained": epochs_trained,
        "history": history_values,
        "target": target_summary,
    }
    summary_path = write_text(summary_path_of(out_path), json.dumps(summary, indent=2))
    earlier = record.earlier_seconds if record else 0.0
    return GANTrainResult(model, os.path.abspath(out_path), summary_path, history_values, earlier)
