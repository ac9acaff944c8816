"""Adversarial training of a classifier: the Madry PGD and Goodfellow FGSM baselines.

`AdversarialTrainer` wraps a logits classifier; its `train_step` crafts adversarial versions of
each batch against the current weights, inside the compiled step, and descends the loss on them:

* "pgd", Madry et al. 2018 ("Towards deep learning models resistant to adversarial attacks"):
  L-inf PGD from a uniformly random start in the eps-ball, `steps` signed-gradient steps of
  `step_size`, each projected onto the ball and the pixel range; the loss is on the adversarial
  examples only (`clean_weight` 0).
* "fgsm", Goodfellow et al. 2015 ("Explaining and harnessing adversarial examples"), Eq. 6:
  `alpha * J(x) + (1 - alpha) * J(x + eps * sign(grad_x J(x)))` with alpha 0.5 (`clean_weight`).

Trained from scratch at a large eps (MNIST's 0.3), PGD training can collapse to a constant
classifier in its first epochs; `eps_ramp_epochs` grows the radius linearly over the first epochs
instead (`EpsRamp`), as Gowal et al. 2018 ("On the effectiveness of interval bound propagation")
and Wong et al. 2020 ("Fast is better than free", MNIST) ramp it.

`train_adversarial_classifier` mirrors `train_classifier` and saves the PLAIN classifier, so
every consumer loads and attacks an adversarially trained classifier like any other. Given a
`backup_dir`, an interrupted training resumes from its last finished epoch (`BackupAndRestore`),
and the summary keeps every epoch's metrics and time (the training curve) across the interruption.
"""

from __future__ import annotations

import math
import numbers
import os
import time

import keras
import tensorflow as tf
from keras import ops

from lqvae_tf.classifiers.architectures import build_classifier
from lqvae_tf.classifiers.train import (
    ADVERSARIAL_METHODS,
    BATCH_SIZE,
    EPOCHS,
    LEARNING_RATE,
    VALUE_RANGE,
    check_training_arguments,
    compile_classifier,
    load_splits,
    save_with_summary,
    top_class_share,
    training_summary,
)
from lqvae_tf.data import batched
from lqvae_tf.distribute import replica_share
from lqvae_tf.epoch_record import EpochRecord
from lqvae_tf.models.quantizers import PACKAGE
from lqvae_tf.models.sampling import load_seed_state, save_seed_state

# Madry et al. 2018, MNIST (MadryLab/mnist_challenge config.json): eps 0.3 on [0, 1] pixels,
# 40 steps of 0.01. The same eps serves FGSM training, as in Defense-GAN's FGSM evaluation.
EPS = 0.3
PGD_STEPS = 40
PGD_STEP_SIZE = 0.01
# The weight of the clean loss: Madry trains on adversarial examples only; Goodfellow et al.
# 2015 (Eq. 6) mix clean and adversarial losses with alpha = 0.5.
CLEAN_WEIGHTS = {"pgd": 0.0, "fgsm": 0.5}
METRIC_NAMES = ("loss", "accuracy", "clean_accuracy")
RECORD_FILE = "epochs.json"  # inside the backup folder: the EpochRecord of an unfinished training


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_adversarial_settings(
    method: str,
    eps: float,
    steps: int,
    step_size: float,
    clean_weight: float | None = None,
    eps_ramp_epochs: int = 0,
) -> float:
    """Refuses adversarial-training settings that cannot mean anything; returns the clean weight to use.

    Checked before anything is built or read, so that a typo costs no training time.

    Args:
        method: "pgd" or "fgsm".
        eps: the L-inf radius in [0, 1] pixels.
        steps: PGD's iterations.
        step_size: PGD's step.
        clean_weight: weight of the clean loss; None takes the method's (`CLEAN_WEIGHTS`).
        eps_ramp_epochs: epochs over which eps grows linearly to its value (0: none).

    Raises:
        ValueError: naming the value: an unknown method; eps outside (0, 1] (pixels are in
            [0, 1]); steps below 1; a non-positive step_size, or for PGD one above eps; a
            clean_weight outside [0, 1), where 1 would be no adversarial training at all; a
            negative or non-integer eps_ramp_epochs.
    """
    if method not in ADVERSARIAL_METHODS:
        raise ValueError(
            f"unknown adversarial-training method {method!r}; choose one of {', '.join(ADVERSARIAL_METHODS)}"
        )
    if not (_is_number(eps) and 0.0 < eps <= 1.0):
        raise ValueError(f"eps must be in (0, 1] (pixels are in [0, 1]), got {eps!r}")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not (_is_number(step_size) and step_size > 0.0):
        raise ValueError(f"step_size must be positive, got {step_size!r}")
    if method == "pgd" and step_size > eps:
        raise ValueError(f"step_size must be in (0, eps={eps}] for PGD, got {step_size!r}")
    if isinstance(eps_ramp_epochs, bool) or not isinstance(eps_ramp_epochs, numbers.Integral) or eps_ramp_epochs < 0:
        raise ValueError(f"eps_ramp_epochs must be a non-negative integer, got {eps_ramp_epochs!r}")
    if clean_weight is None:
        clean_weight = CLEAN_WEIGHTS[method]
    if not (_is_number(clean_weight) and 0.0 <= clean_weight < 1.0):
        raise ValueError(f"clean_weight must be in [0, 1) (1 would train on clean images only), got {clean_weight!r}")
    return float(clean_weight)


@keras.saving.register_keras_serializable(package=PACKAGE)
class AdversarialTrainer(keras.Model):
    """A classifier trained on adversarial examples crafted in each `train_step` (Madry PGD or FGSM).

    Calling it gives the classifier's logits; `classifier` is the plain classifier, which is what
    to save for consumers. `fit` reports `loss`, `accuracy` (on the adversarial batch) and
    `clean_accuracy`, both from the training-mode forward pass as Keras' own accuracy is;
    `evaluate` crafts the same attack against the model in inference mode and reports the same.

    The attack is made against the classifier in inference mode (dropout off): the model as it
    will be deployed and attacked, as CleverHans's training tutorials craft against `model(x)`.

    Args:
        classifier: a Keras model from images in [0, 1] to LOGITS.
        method: "pgd" or "fgsm".
        eps: the L-inf radius of the attack, in pixels of [0, 1].
        steps: PGD's iterations (ignored by FGSM).
        step_size: PGD's step (ignored by FGSM).
        clean_weight: weight of the clean loss, the adversarial one getting `1 - clean_weight`;
            None takes the method's (0 for PGD, 0.5 for FGSM; `CLEAN_WEIGHTS`).
        seed: seeds PGD's random starts.
        eps_ramp_epochs: epochs over which the attack's radius (and PGD's step with it) grows
            linearly to `eps`: epoch k of the fit (from 0) attacks at `eps * min(1, (k + 1) /
            eps_ramp_epochs)`. Set per epoch by the `EpsRamp` callback, which `fit` needs then;
            0 (the default) attacks at `eps` throughout.

    Example:
        >>> trainer = AdversarialTrainer(build_classifier("A"), method="pgd", eps=0.3)
        >>> trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
        >>> trainer.fit(train_ds, epochs=10)
        >>> trainer.classifier.save("classifier_A_pgd.keras")
    """

    def __init__(
        self,
        classifier: keras.Model,
        method: str = "pgd",
        eps: float = EPS,
        steps: int = PGD_STEPS,
        step_size: float = PGD_STEP_SIZE,
        clean_weight: float | None = None,
        seed: int | None = None,
        eps_ramp_epochs: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        clean_weight = check_adversarial_settings(method, eps, steps, step_size, clean_weight, eps_ramp_epochs)
        self.classifier = classifier
        self.method = method
        self.eps = float(eps)
        self.steps = int(steps)
        self.step_size = float(step_size)
        self.clean_weight = clean_weight
        self.seed = seed
        self.eps_ramp_epochs = int(eps_ramp_epochs)
        # The share of `eps` attacked at now (`EpsRamp` sets it per epoch), read in the compiled step.
        self.eps_fraction = keras.Variable(1.0, trainable=False, name="eps_fraction")
        self.start_seed = keras.random.SeedGenerator(seed)
        self.cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.clean_accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="clean_accuracy")
        self.built = True

    def get_config(self):
        return {
            **super().get_config(),
            "classifier": keras.saving.serialize_keras_object(self.classifier),
            "method": self.method,
            "eps": self.eps,
            "steps": self.steps,
            "step_size": self.step_size,
            "clean_weight": self.clean_weight,
            "seed": self.seed,
            "eps_ramp_epochs": self.eps_ramp_epochs,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["classifier"] = keras.saving.deserialize_keras_object(config["classifier"])
        return cls(**config)

    def compile(self, optimizer: str | keras.optimizers.Optimizer = "adam", **kwargs):
        """Sets the optimizer of the classifier's weights; no loss or metrics (`train_step` has its own).

        The optimizer is built now, so that saved optimizer state (`.keras` files,
        `BackupAndRestore`) loads into it instead of being skipped.
        """
        super().compile(optimizer=optimizer, **kwargs)
        self.optimizer.build(self.classifier.trainable_variables)

    def get_compile_config(self):
        if getattr(self, "optimizer", None) is None:
            return None
        return {"optimizer": keras.optimizers.serialize(self.optimizer)}

    def compile_from_config(self, config):
        # Called by keras.models.load_model; the optimizer state is loaded afterwards.
        self.compile(optimizer=keras.optimizers.deserialize(config["optimizer"]))

    def save_own_variables(self, store):
        save_seed_state(store, self.start_seed)  # so a reloaded trainer draws the starts it would have

    def load_own_variables(self, store):
        load_seed_state(store, self.start_seed)

    def eps_fraction_at(self, epoch: int) -> float:
        """The share of `eps` that epoch `epoch` (from 0) of a fit attacks at."""
        if self.eps_ramp_epochs == 0:
            return 1.0
        return min(1.0, (epoch + 1) / self.eps_ramp_epochs)

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker, self.clean_accuracy_tracker]

    def call(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        """The classifier's logits."""
        return self.classifier(images, training=training)

    # ----------------------------------------------------------------- the attacks
    def _input_gradient_sign(self, images, labels):
        """sign(grad_x cross-entropy(classifier(x), y)), with the classifier in inference mode."""
        with tf.GradientTape() as tape:
            tape.watch(images)
            loss = self.cross_entropy(labels, self.classifier(images, training=False))
        return ops.sign(tape.gradient(loss, images))

    def fgsm(self, images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        """FGSM (Goodfellow et al. 2015): one step of eps along the loss gradient's sign, clipped to [0, 1]."""
        images = ops.convert_to_tensor(images, "float32")
        adversarial = images + self.eps * self.eps_fraction * self._input_gradient_sign(images, labels)
        return ops.stop_gradient(ops.clip(adversarial, *VALUE_RANGE))

    def pgd(self, images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        """L-inf PGD (Madry et al. 2018): a uniform start in the eps-ball, then `steps` signed steps,
        each projected back onto the ball around `images` and onto [0, 1]."""
        images = ops.convert_to_tensor(images, "float32")
        eps, step_size = self.eps * self.eps_fraction, self.step_size * self.eps_fraction
        low, high = ops.maximum(images - eps, VALUE_RANGE[0]), ops.minimum(images + eps, VALUE_RANGE[1])
        start = images + eps * keras.random.uniform(ops.shape(images), -1.0, 1.0, seed=self.start_seed)

        def step(_, adversarial):
            adversarial = adversarial + step_size * self._input_gradient_sign(adversarial, labels)
            return ops.clip(adversarial, low, high)

        # A graph loop, not a Python one: 40 unrolled gradient steps would take long to trace.
        return ops.stop_gradient(ops.fori_loop(0, self.steps, step, ops.clip(start, low, high)))

    def attack(self, images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        """Adversarial versions of a batch by the training method, against the current weights."""
        return self.pgd(images, labels) if self.method == "pgd" else self.fgsm(images, labels)

    # ----------------------------------------------------------------- training
    def _loss(self, labels, adversarial_logits, clean_logits, sample_weight):
        loss = (1.0 - self.clean_weight) * self.cross_entropy(labels, adversarial_logits, sample_weight)
        if self.clean_weight > 0.0:
            loss = loss + self.clean_weight * self.cross_entropy(labels, clean_logits, sample_weight)
        return loss

    def _update_metrics(self, loss, labels, adversarial_logits, clean_logits, sample_weight):
        self.loss_tracker.update_state(loss)
        self.accuracy_tracker.update_state(labels, adversarial_logits, sample_weight)
        self.clean_accuracy_tracker.update_state(labels, clean_logits, sample_weight)
        return {metric.name: metric.result() for metric in self.metrics}

    def train_step(self, data):
        images, labels, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        adversarial = self.attack(images, labels)
        with tf.GradientTape() as tape:
            adversarial_logits = self.classifier(adversarial, training=True)
            # The clean pass joins the tape only where the loss uses it.
            clean_logits = self.classifier(images, training=True) if self.clean_weight > 0.0 else None
            loss = self._loss(labels, adversarial_logits, clean_logits, sample_weight)
            share = replica_share(loss)  # under a tf.distribute strategy
        if clean_logits is None:
            clean_logits = self.classifier(images, training=True)
        variables = self.classifier.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(share, variables), variables))
        return self._update_metrics(loss, labels, adversarial_logits, clean_logits, sample_weight)

    def test_step(self, data):
        images, labels, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        adversarial_logits = self.classifier(self.attack(images, labels), training=False)
        clean_logits = self.classifier(images, training=False)
        loss = self._loss(labels, adversarial_logits, clean_logits, sample_weight)
        return self._update_metrics(loss, labels, adversarial_logits, clean_logits, sample_weight)


class EpsRamp(keras.callbacks.Callback):
    """Sets an `AdversarialTrainer`'s attack radius per epoch (`eps_fraction_at`), and back to the
    full `eps` when the fit ends, so that `evaluate` afterwards attacks at `eps`.

    Read from the epoch index Keras passes, so a fit resumed by `BackupAndRestore` at epoch k
    ramps as the uninterrupted one would have.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self.model.eps_fraction.assign(self.model.eps_fraction_at(epoch))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["eps"] = self.model.eps * float(self.model.eps_fraction.numpy())  # in the training curve

    def on_train_end(self, logs=None):
        self.model.eps_fraction.assign(1.0)


# The parameters below repeat `train_classifier`'s on purpose: the same names, defaults and meaning,
# so a study passes one settings dict to either; folding them into an object would change both
# public signatures for no saved fact (the defaults already live once, in train.py's constants).
def train_adversarial_classifier(
    name: str,
    dataset: str,
    out_path: str,
    method: str = "pgd",
    eps: float = EPS,
    steps: int = PGD_STEPS,
    step_size: float = PGD_STEP_SIZE,
    epochs: int = EPOCHS,
    batch_size: int = BATCH_SIZE,
    limit: int | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    learning_rate: float = LEARNING_RATE,
    test_limit: int | None = None,
    verbose: str | int = "auto",
    init_from: str | None = None,
    clean_weight: float | None = None,
    eps_ramp_epochs: int = 0,
    backup_dir: str | None = None,
    validation_limit: int | None = None,
) -> dict:
    """Adversarially trains classifier `name` on `dataset`; saves the plain classifier and a JSON summary.

    The model file holds the classifier alone (logits out, compiled as `train_classifier`'s, with
    the trained optimizer state), so it loads and is attacked like any classifier. The summary
    (also written to `summary_path(out_path)`) holds `train_classifier`'s keys, with
    `train_accuracy` on the adversarial batches, `test_accuracy`/`test_loss` on clean test
    images, plus `adversarial` (the method's settings) and `test_adversarial_accuracy` under the
    training attack, and `test_top_class_share` (`save_with_summary` warns when it collapsed).

    Args:
        name: the classifier's letter, "A" to "E".
        dataset: "fashion_mnist", "mnist" or "celeb_a".
        out_path: where to save the classifier; must end in `.keras` (see `classifier_filename`).
        method: "pgd" (Madry et al. 2018) or "fgsm" (Goodfellow et al. 2015).
        eps: the attack's L-inf radius in [0, 1] pixels.
        steps: PGD's iterations.
        step_size: PGD's step.
        epochs: passes over the training data.
        batch_size: examples per step.
        limit: train on the first `limit` training examples only (quick runs).
        seed: seeds the weights, dropout, the shuffling and PGD's random starts.
        data_dir: the dataset's folder (see `lqvae_tf.data`).
        learning_rate: Adam's learning rate.
        test_limit: evaluate on the first `test_limit` test examples only.
        verbose: Keras `fit` verbosity ("auto" shows a progress bar).
        init_from: a saved classifier of the same architecture (a `.keras` file) to start from
            instead of fresh weights: adversarial fine-tuning of a clean classifier. From
            scratch, a few epochs of PGD at a large eps (MNIST's 0.3) can collapse to a
            near-constant classifier (11.7% clean in the first MNIST study); started from a
            trained one, the same budget keeps its accuracy.
        clean_weight: weight of the clean images' loss (`AdversarialTrainer`); None takes the
            method's (Madry's 0, Goodfellow's 0.5).
        eps_ramp_epochs: epochs over which eps grows linearly to its value (`AdversarialTrainer`).
        backup_dir: where an unfinished training keeps its state after every epoch; a call with
            the same arguments resumes from there (Keras' `BackupAndRestore`, which removes the
            folder when the training finishes). The summary's `curve` then holds every epoch,
            and `seconds` the time of every call, interrupted ones included.
        validation_limit: also attack the first `validation_limit` test images after every epoch
            with the training attack (`val_accuracy`, `val_clean_accuracy` in the curve).

    Raises:
        ValueError: unknown classifier, dataset or method, an `out_path` not ending in `.keras`,
            non-positive `epochs` or `batch_size`, impossible attack settings
            (`check_adversarial_settings`), or an `init_from` that is missing or whose weights do
            not fit the architecture; all before any data is read.
    """
    image_shape, num_classes = check_training_arguments(dataset, out_path, epochs, batch_size)
    check_adversarial_settings(method, eps, steps, step_size, clean_weight, eps_ramp_epochs)
    if validation_limit is not None and validation_limit < 1:
        raise ValueError(f"validation_limit must be a positive number of test images, got {validation_limit!r}")
    started = time.perf_counter()
    keras.utils.set_random_seed(seed)
    classifier = build_classifier(name, image_shape, num_classes)
    if init_from is not None:
        _load_initial_weights(classifier, init_from, name)
    trainer = AdversarialTrainer(
        classifier,
        method=method,
        eps=eps,
        steps=steps,
        step_size=step_size,
        clean_weight=clean_weight,
        seed=seed,
        eps_ramp_epochs=eps_ramp_epochs,
    )
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate))

    train, test = load_splits(dataset, limit, test_limit, data_dir)
    callbacks: list[keras.callbacks.Callback] = [EpsRamp()] if eps_ramp_epochs else []
    record = None
    if backup_dir is not None:
        # Last: the record holds what the others add to the logs (`eps`).
        record = EpochRecord(os.path.join(backup_dir, RECORD_FILE))
        callbacks = [keras.callbacks.BackupAndRestore(backup_dir), *callbacks, record]
    validation = batched(test.take(validation_limit), batch_size) if validation_limit else None
    history = trainer.fit(
        batched(train, batch_size, shuffle=True, seed=seed),
        epochs=epochs,
        verbose=verbose,
        callbacks=callbacks,
        validation_data=validation,
    )
    curve = record.history if record is not None else {name: list(values) for name, values in history.history.items()}
    adversarial_test = trainer.evaluate(batched(test, batch_size), verbose=0, return_dict=True)
    # The trained optimizer goes with the classifier, so fine-tuning the saved file resumes it.
    compile_classifier(classifier, trainer.optimizer)
    test_loss, test_accuracy = classifier.evaluate(batched(test, batch_size), verbose=0)

    summary = {
        **training_summary(name, dataset, out_path, epochs, batch_size, learning_rate, limit, seed),
        "adversarial": {
            "method": method,
            "eps": trainer.eps,
            "steps": trainer.steps if method == "pgd" else None,
            "step_size": trainer.step_size if method == "pgd" else None,
            "clean_weight": trainer.clean_weight,
            "eps_ramp_epochs": trainer.eps_ramp_epochs,
        },
        "train_accuracy": float(curve["accuracy"][-1]),
        "train_clean_accuracy": float(curve["clean_accuracy"][-1]),
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "test_adversarial_accuracy": float(adversarial_test["accuracy"]),
        "test_top_class_share": top_class_share(classifier, test, batch_size),
        "test_limit": test_limit,
        "init_from": init_from,
        # Every epoch's metrics, resumed ones included; the wall time of every call, interrupted ones too.
        "curve": {name: [float(value) for value in values] for name, values in curve.items()},
        "seconds": round(time.perf_counter() - started + (record.earlier_seconds if record else 0.0), 1),
        "earlier_seconds": round(record.earlier_seconds, 1) if record else 0.0,
        "epoch_seconds": record.epoch_seconds if record is not None else None,
    }
    save_with_summary(classifier, out_path, summary)
    return summary


def _load_initial_weights(classifier: keras.Model, path: str, name: str) -> None:
    """Copies the weights of the classifier saved at `path` into `classifier` (same architecture).

    Raises:
        ValueError: no file at `path`, or its weights' shapes differ from classifier `name`'s.
    """
    if not isinstance(path, str) or not os.path.isfile(path):
        raise ValueError(f"init_from must be a saved classifier file, got {path!r} (no such file)")
    source = keras.models.load_model(path, compile=False)
    theirs = [tuple(w.shape) for w in source.weights]
    ours = [tuple(w.shape) for w in classifier.weights]
    if theirs != ours:
        raise ValueError(
            f"init_from {path!r} does not hold a classifier {name} for these images: its weight shapes "
            f"{theirs} differ from {ours}"
        )
    classifier.set_weights(source.get_weights())
