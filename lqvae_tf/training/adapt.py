"""Adapting a user's classifier to the filter: a few epochs of fine-tuning on purified training images.

The purifier costs a classifier some clean accuracy because its outputs are not quite the images
the classifier was trained on; a user who can retrain closes that gap by showing the classifier
purified images. The filter is unchanged, so any classifier still works behind it unadapted, and
both numbers are reported (`adapt_classifier`'s summary).
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from lqvae_tf.classifiers.train import (
    VALUE_RANGE,
    check_training_arguments,
    load_splits,
    save_with_summary,
    training_summary,
)
from lqvae_tf.data import batched
from lqvae_tf.defenses import LQVAEDefense
from lqvae_tf.models import LQVAE
from lqvae_tf.models.adversarial import check_classifier_shape
from lqvae_tf.stats import accuracy_of

EPOCHS = 2
BATCH_SIZE = 128
# Fine-tuning: a tenth of the rate the library's classifiers are trained at (Adam, 1e-3).
LEARNING_RATE = 1e-4


def ends_in_softmax(model: keras.Model) -> bool:
    """Whether `model`'s last layer is a softmax (then its outputs are probabilities, not logits)."""
    last = model.layers[-1] if getattr(model, "layers", None) else None
    return isinstance(last, keras.layers.Softmax) or getattr(last, "activation", None) is keras.activations.softmax


def purified_arrays(
    purifier: LQVAE, dataset: tf.data.Dataset, value_range=VALUE_RANGE, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Every (image, label) of an unbatched dataset with the image purified, as numpy arrays."""
    defense = LQVAEDefense(purifier, value_range=value_range)
    images, labels = [], []
    for batch_images, batch_labels in dataset.batch(batch_size).as_numpy_iterator():
        images.append(defense.purify(batch_images))
        labels.append(batch_labels)
    return np.concatenate(images), np.concatenate(labels)


def fine_tune_on_purified(
    classifier: keras.Model,
    purifier: LQVAE,
    train: tf.data.Dataset,
    epochs: int = EPOCHS,
    batch_size: int = BATCH_SIZE,
    learning_rate: float = LEARNING_RATE,
    seed: int = 0,
    verbose: str | int = "auto",
    value_range=VALUE_RANGE,
) -> dict[str, list[float]]:
    """Fine-tunes `classifier` in place on the purified images of `train`; returns the fit history.

    Args:
        classifier: a Keras classifier of images in `value_range` (logits or a final softmax).
        purifier: the trained filter it will sit behind.
        train: unbatched (image, label) pairs, images in `value_range`.
        epochs, batch_size, learning_rate: the fine-tuning (Adam, cross-entropy).
        seed: seeds the shuffling.
        verbose: Keras `fit` verbosity.
        value_range: the classifier's pixel range (mapped onto the purifier's).

    Raises:
        ValueError: the classifier's input shape is not the purifier's.
    """
    check_classifier_shape(classifier, purifier.config.image_shape)
    images, labels = purified_arrays(purifier, train, value_range)
    classifier.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not ends_in_softmax(classifier)),
        metrics=["accuracy"],
    )
    purified = tf.data.Dataset.from_tensor_slices((images, labels))
    history = classifier.fit(batched(purified, batch_size, shuffle=True, seed=seed), epochs=epochs, verbose=verbose)
    return {name: [float(v) for v in values] for name, values in history.history.items()}


def _load(path: str, kind: str) -> keras.Model:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{kind} file {path} does not exist")
    return keras.models.load_model(path)


def _accuracy(classifier: keras.Model, images: np.ndarray, labels: np.ndarray) -> dict:
    return accuracy_of(classifier.predict(images, batch_size=256, verbose=0), labels).to_dict()


def adapt_classifier(
    classifier_path: str,
    purifier_path: str,
    dataset: str,
    out_path: str,
    epochs: int = EPOCHS,
    batch_size: int = BATCH_SIZE,
    learning_rate: float = LEARNING_RATE,
    limit: int | None = None,
    test_limit: int | None = None,
    data_dir: str | None = None,
    seed: int = 0,
    verbose: str | int = "auto",
) -> dict:
    """Fine-tunes a saved classifier on purified training images; saves it with a JSON summary.

    The summary (beside `out_path`, same stem, `.json`) holds the settings and the test accuracy
    of the classifier alone and behind the filter, before and after adapting.

    Args:
        classifier_path: the user's classifier (`.keras`), taking images in [0, 1].
        purifier_path: the trained purifier (`.keras`).
        dataset: "fashion_mnist", "mnist" or "celeb_a".
        out_path: where to write the adapted classifier; must end in `.keras`.
        epochs, batch_size, learning_rate: the fine-tuning.
        limit / test_limit: use the first N training / test images only.
        data_dir: the dataset's folder (see `lqvae_tf.data`).
        seed: seeds the shuffling.
        verbose: Keras `fit` verbosity.

    Raises:
        ValueError: an unknown dataset, an `out_path` not ending in `.keras`, non-positive
            epochs, batch size or learning rate, or a classifier whose input shape is not the
            purifier's; all before any training.
        FileNotFoundError: a model file is missing.
    """
    check_training_arguments(dataset, out_path, epochs, batch_size)
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    classifier = _load(classifier_path, "classifier")
    purifier = _load(purifier_path, "purifier")
    if not isinstance(purifier, LQVAE):
        raise ValueError(f"{purifier_path} holds a {type(purifier).__name__}, not an LQ-VAE purifier")
    check_classifier_shape(classifier, purifier.config.image_shape)

    train, test = load_splits(dataset, limit, test_limit, data_dir)
    test_images, test_labels = (np.stack(part) for part in zip(*test.as_numpy_iterator()))
    purified_test = LQVAEDefense(purifier, value_range=VALUE_RANGE).purify(test_images)
    before = {
        "alone": _accuracy(classifier, test_images, test_labels),
        "behind_filter": _accuracy(classifier, purified_test, test_labels),
    }
    keras.utils.set_random_seed(seed)
    history = fine_tune_on_purified(classifier, purifier, train, epochs, batch_size, learning_rate, seed, verbose)
    after = {
        "alone": _accuracy(classifier, test_images, test_labels),
        "behind_filter": _accuracy(classifier, purified_test, test_labels),
    }
    summary = {
        "classifier": os.path.abspath(classifier_path),
        "purifier": os.path.abspath(purifier_path),
        **training_summary(
            os.path.basename(classifier_path), dataset, out_path, epochs, batch_size, learning_rate, limit, seed
        ),
        "test_limit": test_limit,
        "train_accuracy": history["accuracy"][-1],
        "test_accuracy": {"before": before, "after": after},
    }
    save_with_summary(classifier, out_path, summary)
    return summary
