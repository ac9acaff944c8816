"""What adversarial retraining of the purifier needs inside `LQVAE.train_step`: L-inf PGD on any objective.

The attack runs in the model's internal [-1, 1] range, as a graph loop inside the compiled step,
against the weights of the moment; `LQVAE` supplies the objectives (`AdversarialConfig.mode`).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf
from keras import ops

INTERNAL_RANGE = (-1.0, 1.0)  # where the networks work (see `LQVAE.to_internal`)
INTERNAL_WIDTH = INTERNAL_RANGE[1] - INTERNAL_RANGE[0]  # eps is a fraction of the pixel range: x2 here


def check_classifier_shape(classifier: keras.Model, image_shape) -> None:
    """Refuses a classifier whose input shape is not `image_shape` (a purifier's images).

    Raises:
        ValueError: naming both shapes. Models without a declared input (subclassed) pass.
    """
    inputs = getattr(classifier, "inputs", None)
    shape = tuple(inputs[0].shape[1:]) if inputs else None
    if shape is not None and shape != tuple(image_shape):
        raise ValueError(
            f"classifier {classifier.name!r} takes images of shape {shape}, the purifier's are {tuple(image_shape)}"
        )


def straight_through(forward: tf.Tensor, backward: tf.Tensor) -> tf.Tensor:
    """A tensor whose value is `forward` and whose gradient is `backward`'s (BPDA)."""
    return backward + ops.stop_gradient(forward - backward)


def pgd_linf(
    objective: Callable[[tf.Tensor], tf.Tensor],
    images: tf.Tensor,
    eps: float,
    step_size: float,
    steps: int,
    seed: keras.random.SeedGenerator,
) -> tf.Tensor:
    """L-inf PGD (Madry et al. 2018) maximising `objective` around internal-range `images`.

    A uniform start in the eps-ball, then `steps` steps of `step_size` along the sign of the
    objective's gradient, each projected onto the ball and onto [-1, 1].

    Args:
        objective: perturbed images -> the scalar to maximise (differentiable by GradientTape).
        images: a batch in [-1, 1].
        eps, step_size: the radius and the step in internal units.
        steps: iterations.
        seed: the generator of the random starts.

    Returns:
        The perturbed batch, with no gradient to `images`.
    """
    images = ops.stop_gradient(images)
    lower = ops.maximum(images - eps, INTERNAL_RANGE[0])
    upper = ops.minimum(images + eps, INTERNAL_RANGE[1])
    start = ops.clip(images + keras.random.uniform(ops.shape(images), -eps, eps, seed=seed), lower, upper)

    def step(_, perturbed):
        with tf.GradientTape() as tape:
            tape.watch(perturbed)
            value = objective(perturbed)
        perturbed = perturbed + step_size * ops.sign(tape.gradient(value, perturbed))
        return ops.clip(perturbed, lower, upper)

    # A graph loop, not a Python one, so that many steps trace once.
    return ops.stop_gradient(ops.fori_loop(0, steps, step, start))
