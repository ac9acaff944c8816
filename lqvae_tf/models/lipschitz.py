"""The encoder's input-gradient norm and the Lipschitz penalty `(||grad_x f(x)|| - K)^2`.

The norm is taken inside its own GradientTape; called under the training step's tape, the
penalty is itself differentiable in the encoder's weights (a tape inside a tape).
"""

from __future__ import annotations

import keras
import tensorflow as tf

NORM_EPSILON = 1e-12  # keeps sqrt differentiable where the gradient vanishes


def encode_with_input_gradient_norm(
    encoder: keras.Model,
    images: tf.Tensor,
    estimator: str,
    projections: int = 1,
    seed_generator: keras.random.SeedGenerator | None = None,
    training: bool = True,
):
    """Runs the encoder and measures, per image, how strongly `mu` responds to the input.

    Args:
        encoder: the model `images -> (mu, log_var)`.
        images: a batch in the encoder's input scale.
        estimator: "sum": `||d(sum_j mu_j) / dx||` (the authors' script, exact and cheap);
            "projection": `sqrt(mean_p ||v_p^T d mu / dx||^2)` with `v_p ~ N(0, I)`, whose square
            is an unbiased estimate of the squared Frobenius norm of the Jacobian.
        projections: number of random projections `p` for "projection".
        seed_generator: randomness for the projections.
        training: passed to the encoder.

    Returns:
        (mu, log_var, gradient_norm) with gradient_norm of shape (batch,).
    """
    with tf.GradientTape(persistent=estimator == "projection") as tape:
        tape.watch(images)
        mean, log_var = encoder(images, training=training)
        if estimator == "sum":
            targets = [tf.reduce_sum(mean)]
        else:
            targets = [
                tf.reduce_sum(keras.random.normal(tf.shape(mean), seed=seed_generator) * mean)
                for _ in range(projections)
            ]
    squared = [tf.reduce_sum(tf.square(tape.gradient(target, images)), axis=[1, 2, 3]) for target in targets]
    del tape
    gradient_norm = tf.sqrt(tf.add_n(squared) / len(squared) + NORM_EPSILON)
    return mean, log_var, gradient_norm


def lipschitz_penalty(gradient_norm: tf.Tensor, k: float) -> tf.Tensor:
    """Mean over the batch of `(||grad_x f(x)|| - K)^2` (Algorithm 1, line 10)."""
    return tf.reduce_mean(tf.square(gradient_norm - k))
