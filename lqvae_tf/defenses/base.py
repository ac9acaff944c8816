"""Defenses behind one interface: a purifier from images to images, plus what BPDA needs.

Every defense the evaluation compares (none, LQ-VAE, later Defense-GAN or adversarially trained
classifiers) implements `Defense`, so the harness treats them alike:

* `purify(x)`: the filter as deployed, on numpy batches;
* `differentiable(x, mode)`: the filter as a white-box attacker sees it, on tensors. Its
  forward pass equals `purify`; its backward pass is the attacker's approximation (BPDA,
  Athalye et al. 2018): "bpda" replaces non-differentiable parts by a differentiable stand-in,
  "identity" treats the whole filter as the identity on the backward pass, "naive" is the plain
  gradient (zero through a hard quantizer: the gradient masking BPDA exists to expose).
"""

from __future__ import annotations

import abc

import keras
import numpy as np
import tensorflow as tf

GRADIENT_MODES = ("bpda", "identity", "naive", "soft")


def check_mode(mode: str) -> None:
    if mode not in GRADIENT_MODES:
        raise ValueError(f"gradient mode must be one of {GRADIENT_MODES}, got {mode!r}")


def straight_through(forward: tf.Tensor, backward: tf.Tensor) -> tf.Tensor:
    """A tensor whose value is `forward` and whose gradient is `backward`'s."""
    return backward + tf.stop_gradient(forward - backward)


class Defense(abc.ABC):
    """A purifier in front of a classifier.

    Attributes:
        name: the column name in result tables.
        stochastic: whether `purify` draws randomness (then attacks use EOT).
        costly: whether `purify` is slow enough (a search per image) that the evaluation should
            cache its outputs on disk.
    """

    name: str = "defense"
    stochastic: bool = False
    costly: bool = False

    @abc.abstractmethod
    def cache_parts(self) -> tuple:
        """Everything that determines the filter's outputs and gradients: JSON-able settings
        (the class, every constructor option) and the Keras models whose weights it uses.

        Evaluation caches (adversarials, purifications) are keyed by these, so two defenses that
        differ in any of them never share cached results.
        """

    def random_gradient(self, mode: str) -> bool:
        """Whether `differentiable(x, mode)` draws randomness (then attacks average it: EOT)."""
        return self.stochastic

    @abc.abstractmethod
    def purify(self, images: np.ndarray) -> np.ndarray:
        """The deployed filter on a numpy batch."""

    @abc.abstractmethod
    def differentiable(self, images: tf.Tensor, mode: str = "bpda") -> tf.Tensor:
        """The filter for a white-box attacker: forward = purify, backward per `mode`."""

    def protect(self, classifier: keras.Model) -> keras.Model:
        """Purifier then classifier as one Keras model (call it, or export it)."""
        return keras.Sequential([PurifyLayer(self), classifier], name=f"{self.name}_then_classifier")


class PurifyLayer(keras.layers.Layer):
    """Wraps a defense's differentiable filter ("bpda" gradients) as a Keras layer."""

    def __init__(self, defense: Defense, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.defense = defense

    def call(self, images):
        return self.defense.differentiable(images, "bpda")


class NoDefense(Defense):
    """The identity: the classifier alone."""

    name = "none"

    def cache_parts(self) -> tuple:
        return ({"class": "NoDefense"},)

    def purify(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(images, np.float32)

    def differentiable(self, images: tf.Tensor, mode: str = "bpda") -> tf.Tensor:
        check_mode(mode)
        return images
