"""Training a purifier end to end: data, `fit` with callbacks, and the artifacts of a run.

A run folder holds:
    config.json        the resolved LQVAEConfig (the model can be rebuilt from it)
    purifier.keras     the trained model (written atomically)
    history.json       per-epoch metrics, train and validation
    purified.png       test images above their purified versions
    logs/              TensorBoard scalars and input-vs-purified images
    backup/            BackupAndRestore state while a run is unfinished (resume by re-running)
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras

from lqvae_tf.atomic import atomic_path, write_text
from lqvae_tf.config import LQVAEConfig
from lqvae_tf.data import batched, load, take_images
from lqvae_tf.models import LQVAE
from lqvae_tf.training.callbacks import PurifiedImages, SharpnessSchedule
from lqvae_tf.training.figures import save_purification_grid

GRID_IMAGES = 10  # test images in purified.png and in the TensorBoard summaries
VALIDATION_LIMIT = 2_000  # test images used for the per-epoch validation losses


@dataclasses.dataclass
class TrainResult:
    """Where a run's artifacts are, and its final metrics."""

    out_dir: str
    model_path: str
    grid_path: str
    history: dict[str, list[float]]

    @property
    def final(self) -> dict[str, float]:
        return {name: values[-1] for name, values in self.history.items()}


def _check_resumable(out_dir: str, config: LQVAEConfig) -> None:
    """Refuses to resume an interrupted run that was started with another configuration."""
    saved = os.path.join(out_dir, "config.json")
    if os.path.isdir(os.path.join(out_dir, "backup")) and os.path.isfile(saved):
        with open(saved, encoding="utf-8") as handle:
            previous = LQVAEConfig.from_json(handle.read())
        if previous != config:
            raise ValueError(
                f"{out_dir} holds an unfinished run with another configuration; resume it with "
                f"the same settings, or train into a new --out folder"
            )


def train_purifier(
    config: LQVAEConfig,
    dataset: str,
    out_dir: str,
    limit: int | None = None,
    data_dir: str | None = None,
    verbose: str | int = "auto",
) -> TrainResult:
    """Trains an LQ-VAE on `dataset` and writes the run folder (see module docstring).

    Re-running the same call after an interruption resumes from the last finished epoch.

    Args:
        config: the model and training configuration (epochs, batch size and seed included).
        dataset: "fashion_mnist", "mnist" or "celeb_a".
        out_dir: the run folder.
        limit: train on the first `limit` training images only (quick runs).
        data_dir: the dataset's folder (see `lqvae_tf.data`).
        verbose: Keras `fit` verbosity ("auto" shows a progress bar).
    """
    _check_resumable(out_dir, config)
    os.makedirs(out_dir, exist_ok=True)
    write_text(os.path.join(out_dir, "config.json"), config.to_json())
    keras.utils.set_random_seed(config.seed)

    loader_args = {"value_range": config.value_range}
    if data_dir is not None:
        loader_args["data_dir"] = data_dir
    train_images = load(dataset, "train", limit=limit, **loader_args)
    test_images = load(dataset, "test", limit=VALIDATION_LIMIT, **loader_args)
    grid_images = take_images(test_images, GRID_IMAGES)

    model = LQVAE(config)
    model.compile()
    log_dir = os.path.join(out_dir, "logs")
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(out_dir, "backup")),
        keras.callbacks.TensorBoard(log_dir=log_dir),
        PurifiedImages(grid_images, log_dir),
    ]
    if config.soft_sharpness_final is not None:
        callbacks.insert(0, SharpnessSchedule(config.soft_sharpness_final, config.epochs))
    history = model.fit(
        batched(train_images, config.batch_size, shuffle=True, seed=config.seed),
        validation_data=batched(test_images, config.batch_size),
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=verbose,
    )

    model_path = os.path.join(out_dir, "purifier.keras")
    with atomic_path(model_path) as temporary:
        model.save(temporary)
    history_values = {name: [float(v) for v in values] for name, values in history.history.items()}
    write_text(os.path.join(out_dir, "history.json"), json.dumps(history_values, indent=2))
    grid_path = save_purification_grid(
        grid_images, model.purify(grid_images), os.path.join(out_dir, "purified.png"), config.value_range
    )
    return TrainResult(out_dir, model_path, grid_path, history_values)
