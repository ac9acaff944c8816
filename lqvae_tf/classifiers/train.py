"""Training a Defense-GAN classifier on a dataset: a `.keras` model and a JSON summary beside it.

The defaults are the authors' `whitebox.py` flags (kabkabm/defensegan): Adam at learning rate
1e-3 (cleverhans' `model_train`), batch 128, 10 epochs.
"""

from __future__ import annotations

import json
import os
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from lqvae_tf.atomic import atomic_path, write_text
from lqvae_tf.classifiers.architectures import build_classifier
from lqvae_tf.data import DATASETS, batched, load
from lqvae_tf.data.registry import CLASSIFIER_VALUE_RANGE
from lqvae_tf.epoch_record import EpochRecord

LEARNING_RATE = 1e-3
BATCH_SIZE = 128
EPOCHS = 10
VALUE_RANGE = CLASSIFIER_VALUE_RANGE  # the classifiers' input range

# (image shape, number of classes) of each dataset `lqvae_tf.data.load` knows (from its registry).
DATASET_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    name: (info.image_shape, info.num_classes) for name, info in DATASETS.items()
}
# The adversarial-training methods of `lqvae_tf.classifiers.adversarial`, named here so that
# file names can be checked without importing the trainer.
ADVERSARIAL_METHODS = ("pgd", "fgsm")
# A classifier that gives one class to at least this share of the test images has collapsed to a
# constant: its accuracy is that class's share of the labels under any attack, which would read as
# robustness in a table. Adversarial training at too large an eps does this (CelebA, eps 0.1).
ONE_CLASS_SHARE = 0.99
RECORD_FILE = "epochs.json"  # inside the backup folder: the EpochRecord of an unfinished training


def classifier_filename(name: str, adversarial: str | None = None) -> str:
    """The file name a trained classifier is saved under in an output folder.

    Adversarially trained classifiers get the method as a suffix (`classifier_A_pgd.keras`), so
    they sit beside the plainly trained one instead of replacing it.

    Args:
        name: the classifier's letter, "A" to "E".
        adversarial: the adversarial-training method ("pgd" or "fgsm"), or None for plain training.

    Raises:
        ValueError: `adversarial` is not None and not one of `ADVERSARIAL_METHODS`.
    """
    if adversarial is None:
        return f"classifier_{name}.keras"
    if adversarial not in ADVERSARIAL_METHODS:
        raise ValueError(
            f"unknown adversarial-training method {adversarial!r}; choose one of {', '.join(ADVERSARIAL_METHODS)}"
        )
    return f"classifier_{name}_{adversarial}.keras"


def summary_path(model_path: str) -> str:
    """The JSON summary beside a `.keras` model: same stem, `.json`."""
    return os.path.splitext(model_path)[0] + ".json"


def check_training_arguments(
    dataset: str, out_path: str, epochs: int, batch_size: int
) -> tuple[tuple[int, int, int], int]:
    """Refuses impossible training arguments before any data is read; returns (image shape, classes).

    Raises:
        ValueError: unknown dataset, an `out_path` not ending in `.keras`, or non-positive
            `epochs` or `batch_size`.
    """
    if dataset not in DATASET_SHAPES:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASET_SHAPES)}")
    if not out_path.endswith(".keras"):
        raise ValueError(f"out_path must end in .keras, got {out_path!r}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    return DATASET_SHAPES[dataset]


def compile_classifier(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> None:
    """Compiles a logits classifier for `fit`/`evaluate`: cross-entropy from logits, accuracy."""
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def load_splits(
    dataset: str, limit: int | None, test_limit: int | None, data_dir: str | None
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """The (train, test) splits of `dataset` in the classifiers' value range, each optionally cut short."""
    loader_args = {"value_range": VALUE_RANGE}
    if data_dir is not None:
        loader_args["data_dir"] = data_dir
    return load(dataset, "train", limit=limit, **loader_args), load(dataset, "test", limit=test_limit, **loader_args)


def top_class_share(model: keras.Model, images: tf.data.Dataset, batch_size: int = BATCH_SIZE) -> float:
    """The share of `images` ((image, label) pairs) given `model`'s most frequent predicted class.

    At `ONE_CLASS_SHARE` or above the classifier has collapsed to (nearly) one answer.
    """
    counts: dict[int, int] = {}
    for batch, _ in batched(images, batch_size):
        for label, count in zip(*np.unique(np.argmax(model(batch, training=False), axis=-1), return_counts=True)):
            counts[int(label)] = counts.get(int(label), 0) + int(count)
    total = sum(counts.values())
    if total == 0:
        raise ValueError("top_class_share needs at least one image")
    return max(counts.values()) / total


def training_summary(
    name: str, dataset: str, out_path: str, epochs: int, batch_size: int, learning_rate: float, limit, seed: int
) -> dict:
    """The settings part of a trained classifier's JSON summary (both trainers add their results)."""
    return {
        "name": name,
        "dataset": dataset,
        "model": os.path.basename(out_path),
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "limit": limit,
        "seed": seed,
    }


def save_with_summary(model: keras.Model, out_path: str, summary: dict) -> None:
    """Saves `model` to `out_path` and `summary` as JSON to `summary_path(out_path)`, each atomically.

    A classifier that collapsed to one class (`test_top_class_share` at or above
    `ONE_CLASS_SHARE`) is saved all the same, so a study can show it, with a warning.
    """
    share = summary.get("test_top_class_share", 0.0)
    if share >= ONE_CLASS_SHARE:
        warnings.warn(
            f"classifier {summary.get('name')} on {summary.get('dataset')} gives one class to {100 * share:.1f}% "
            "of the test images: it collapsed to a constant, whose accuracy under attack is that class's share, "
            "not robustness (adversarial training: use a smaller eps, a smaller learning_rate or more epochs)",
            stacklevel=3,
        )
    with atomic_path(out_path) as temporary:
        model.save(temporary)
    write_text(summary_path(out_path), json.dumps(summary, indent=2) + "\n")


def train_classifier(
    name: str,
    dataset: str,
    out_path: str,
    epochs: int = EPOCHS,
    batch_size: int = BATCH_SIZE,
    limit: int | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    learning_rate: float = LEARNING_RATE,
    test_limit: int | None = None,
    verbose: str | int = "auto",
    backup_dir: str | None = None,
) -> dict:
    """Trains classifier `name` on `dataset`, saves it atomically with a JSON summary; returns that.

    The summary (also written to `summary_path(out_path)`) holds the name, dataset, training
    settings, seed, the final train and test accuracy and test loss, the share of the test
    images given the most frequent predicted class (`top_class_share`), the wall seconds and,
    with a `backup_dir`, the seconds of earlier, interrupted calls (`earlier_seconds`).

    Args:
        name: the classifier's letter, "A" to "E".
        dataset: "fashion_mnist", "mnist" or "celeb_a".
        out_path: where to save the model; must end in `.keras`.
        epochs: passes over the training data.
        batch_size: examples per step.
        limit: train on the first `limit` training examples only (quick runs).
        seed: seeds the weights, dropout and the shuffling.
        data_dir: the dataset's folder (see `lqvae_tf.data`).
        learning_rate: Adam's learning rate.
        test_limit: evaluate on the first `test_limit` test examples only.
        verbose: Keras `fit` verbosity ("auto" shows a progress bar).
        backup_dir: where an unfinished training keeps its state after every epoch; a call with
            the same arguments resumes from there (Keras' `BackupAndRestore`, which removes the
            folder once the training finishes), as the adversarial trainer and the purifier do.

    Raises:
        ValueError: unknown classifier or dataset, an `out_path` not ending in `.keras`, or
            non-positive `epochs` or `batch_size`.
    """
    image_shape, num_classes = check_training_arguments(dataset, out_path, epochs, batch_size)
    started = time.perf_counter()
    keras.utils.set_random_seed(seed)
    model = build_classifier(name, image_shape, num_classes)
    compile_classifier(model, keras.optimizers.Adam(learning_rate))

    train, test = load_splits(dataset, limit, test_limit, data_dir)
    callbacks: list[keras.callbacks.Callback] = []
    record = None
    if backup_dir is not None:
        record = EpochRecord(os.path.join(backup_dir, RECORD_FILE))
        callbacks = [keras.callbacks.BackupAndRestore(backup_dir), record]
    history = model.fit(
        batched(train, batch_size, shuffle=True, seed=seed), epochs=epochs, verbose=verbose, callbacks=callbacks
    )
    curve = record.history if record is not None else history.history
    test_loss, test_accuracy = model.evaluate(batched(test, batch_size), verbose=0)

    earlier = record.earlier_seconds if record is not None else 0.0
    summary = {
        **training_summary(name, dataset, out_path, epochs, batch_size, learning_rate, limit, seed),
        "train_accuracy": float(curve["accuracy"][-1]),
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "test_top_class_share": top_class_share(model, test, batch_size),
        "test_limit": test_limit,
        "seconds": round(time.perf_counter() - started + earlier, 1),
        "earlier_seconds": round(earlier, 1),
    }
    save_with_summary(model, out_path, summary)
    return summary
