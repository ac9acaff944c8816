"""The pipeline's Trainer module: `run_fn(fn_args)` trains the LQ-VAE purifier and the gate's classifier.

TFX's generic Trainer imports this file by path and calls `run_fn`; it uses the library only
(nothing of `pipelines/`), as TFX's penguin example keeps `penguin_utils_keras.py` apart from
the pipeline. Everything it needs comes in `fn_args.custom_config`:

    purifier          LQVAEConfig fields over the named preset ({"preset": ..., "overrides": {...}})
    classifier        {"name": "A".."E", "epochs": int, "batch_size": int, "learning_rate": float}
    distribute        the tf.distribute strategy (`lqvae_tf.distribute.make_strategy`): "auto" (default:
                      mirrored over every local GPU when there are two or more), "mirrored", "default"

It writes into `fn_args.serving_model_dir` (what the gate and the pusher read):

    purifier.keras    the trained LQVAE
    classifier.keras  the classifier the robustness gate attacks
    config.json       the resolved LQVAEConfig
    history.json      per-epoch metrics of both fits

and TensorBoard logs into `fn_args.model_run_dir` (`purifier/` and `classifier/`).
"""

from __future__ import annotations

import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from lqvae_tf import LQVAE, preset
from lqvae_tf.atomic import atomic_path, write_text
from lqvae_tf.classifiers import build_classifier
from lqvae_tf.classifiers.train import compile_classifier
from lqvae_tf.data import batched, dataset_info, take_images
from lqvae_tf.data.image_folder import scale_pixels
from lqvae_tf.data.registry import CLASSIFIER_VALUE_RANGE
from lqvae_tf.distribute import make_strategy
from lqvae_tf.pipeline_components.progress import progress
from lqvae_tf.pipeline_components.records import read_arrays
from lqvae_tf.training import fit_purifier

PURIFIER_FILE = "purifier.keras"
CLASSIFIER_FILE = "classifier.keras"
GRID_IMAGES = 10  # eval images in the TensorBoard input-vs-purified summaries


class EpochProgress(keras.callbacks.Callback):
    """One progress line per epoch, `<what> epoch i/n: metric value, ... (seconds)`, for the main job's terminal.

    Args:
        what: the model's name in the line ("purifier", "classifier").
        metrics: the logs' keys to show, those present.
    """

    def __init__(self, what: str, metrics: tuple[str, ...] = ("loss_f", "loss", "accuracy", "val_accuracy")):
        super().__init__()
        self.what = what
        self.metrics = metrics
        self.started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        shown = ", ".join(f"{name} {float(logs[name]):.4g}" for name in self.metrics if name in logs)
        total = self.params.get("epochs", "?")
        seconds = time.monotonic() - self.started
        progress.info("%s epoch %d/%s: %s (%.0f s)", self.what, epoch + 1, total, shown, seconds)


def _dataset(images: np.ndarray, labels: np.ndarray, value_range) -> tf.data.Dataset:
    scaled = scale_pixels(images.astype(np.float32), value_range)
    return tf.data.Dataset.from_tensor_slices((scaled, labels))


def _save(model: keras.Model, path: str) -> None:
    with atomic_path(path) as temporary:
        model.save(temporary)


def train_purifier(settings: dict, train, evaluation, log_dir: str, strategy) -> tuple[LQVAE, dict]:
    """Fits an LQVAE on the train split (validation on the eval split), TensorBoard in `log_dir`."""
    config = preset(settings["preset"]).replace(**settings.get("overrides", {}))
    train_set = _dataset(*train, config.value_range)
    eval_set = _dataset(*evaluation, config.value_range)
    grid = take_images(eval_set, GRID_IMAGES)
    return fit_purifier(
        config, train_set, eval_set, log_dir, grid, callbacks=[EpochProgress("purifier")], verbose=2, strategy=strategy
    )


def train_classifier(settings: dict, train, evaluation, log_dir: str, seed: int, strategy) -> tuple[keras.Model, dict]:
    """Fits the Defense-GAN classifier the robustness gate attacks, TensorBoard in `log_dir`."""
    info = dataset_info(settings.get("dataset", "fashion_mnist"))
    image_shape, num_classes = info.image_shape, info.num_classes
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        model = build_classifier(settings["name"], image_shape, num_classes)
        compile_classifier(model, keras.optimizers.Adam(settings["learning_rate"]))
    history = model.fit(
        batched(_dataset(*train, CLASSIFIER_VALUE_RANGE), settings["batch_size"], shuffle=True, seed=seed),
        validation_data=batched(_dataset(*evaluation, CLASSIFIER_VALUE_RANGE), settings["batch_size"]),
        epochs=settings["epochs"],
        callbacks=[keras.callbacks.TensorBoard(log_dir=log_dir), EpochProgress("classifier")],
        verbose=2,
    )
    return model, history.history


def run_fn(fn_args) -> None:
    """TFX Trainer entry point: trains both models and saves them into `fn_args.serving_model_dir`."""
    custom = fn_args.custom_config or {}
    purifier_settings, classifier_settings = custom["purifier"], custom["classifier"]
    image_shape = preset(purifier_settings["preset"]).replace(**purifier_settings.get("overrides", {})).image_shape
    train = read_arrays(fn_args.train_files, image_shape)
    evaluation = read_arrays(fn_args.eval_files, image_shape)

    strategy = make_strategy(custom.get("distribute", "auto"))
    purifier, purifier_history = train_purifier(
        purifier_settings, train, evaluation, os.path.join(fn_args.model_run_dir, "purifier"), strategy
    )
    classifier, classifier_history = train_classifier(
        classifier_settings,
        train,
        evaluation,
        os.path.join(fn_args.model_run_dir, "classifier"),
        seed=purifier.config.seed,
        strategy=strategy,
    )

    out = fn_args.serving_model_dir
    os.makedirs(out, exist_ok=True)
    _save(purifier, os.path.join(out, PURIFIER_FILE))
    _save(classifier, os.path.join(out, CLASSIFIER_FILE))
    write_text(os.path.join(out, "config.json"), purifier.config.to_json())
    history = {
        "purifier": purifier_history,
        "classifier": {name: [float(v) for v in values] for name, values in classifier_history.items()},
    }
    write_text(os.path.join(out, "history.json"), json.dumps(history, indent=2))
