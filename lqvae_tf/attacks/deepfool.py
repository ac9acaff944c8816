"""DeepFool (Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016), multi-class, batched, in TF2.

CleverHans 4.0.0 has no TF2 DeepFool. Each step linearises the classifier at the current point
and moves to the nearest boundary between the true class and one of the other candidate classes
(Algorithm 2 of the paper); an image stops as soon as its label flips. As in the authors' code
(LTS4/DeepFool), every step is taken from `x + (1 + overshoot) * r_total`, and that point, clipped
to [clip_min, clip_max], is the result.

The paper has no pixel range. Clipping each point to it, as other implementations do, leaves
DeepFool stuck short of the boundary for images with many pixels at the range's ends (a sixth of
Fashion-MNIST images in our tests): the part of each step that pushes such pixels outward is cut
off, so the step falls short by more than the overshoot, step after step. Here each step is the
minimal one within the directions the range leaves open; with no pixel at the range's ends it is
the paper's step exactly.
"""

from __future__ import annotations

import tensorflow as tf

from lqvae_tf.attacks.base import ModelFn, register_attack

# Moosavi-Dezfooli et al. 2016 (and the authors' code, LTS4/DeepFool): the 10 most likely
# classes as candidates, overshoot 0.02, at most 50 steps.
DEEPFOOL_DEFAULTS = dict(nb_candidate=10, overshoot=0.02, max_iter=50, clip_min=0.0, clip_max=1.0)

_AVOID_ZERO_DIV = 1e-12


def deepfool(
    model_fn: ModelFn,
    x: tf.Tensor,
    y: tf.Tensor | None = None,
    *,
    nb_candidate: int = 10,
    overshoot: float = 0.02,
    max_iter: int = 50,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> tf.Tensor:
    """DeepFool adversarial examples for a batch, all images stepped together.

    Args:
        model_fn: images -> logits, differentiable.
        x: float32 images (batch, height, width, channels).
        y: the labels to move away from (batch,); the model's predictions when None (the
            paper's setting). An image whose prediction is already not `y` is left as it is.
        nb_candidate: how many classes to consider: `y` and the most likely others.
        overshoot: each point is `x + (1 + overshoot) * r_total`, so it lands past the boundary
            that the linearisation puts at `x + r_total`.
        max_iter: the most steps an image takes.
        clip_min, clip_max: the range every point is clipped to.

    Returns:
        The adversarial batch, a float32 tensor of x's shape.
    """
    x = tf.convert_to_tensor(x, tf.float32)
    if y is None:
        y = tf.argmax(model_fn(x), axis=-1)
    return _deepfool(model_fn, x, tf.cast(y, tf.int64), nb_candidate, float(overshoot), max_iter, clip_min, clip_max)


@tf.function
def _deepfool(model_fn, x, y, nb_candidate, overshoot, max_iter, clip_min, clip_max):
    logits = model_fn(x)
    nb_candidate = min(nb_candidate, logits.shape[-1])
    # Candidates: column 0 is y, then the other classes from most to least likely at x.
    with_label_first = tf.where(tf.one_hot(y, tf.shape(logits)[-1]) > 0, float("inf"), logits)
    candidates = tf.math.top_k(with_label_first, k=nb_candidate).indices
    image_axes = list(range(1, x.shape.rank))

    def point(r_total):
        return tf.clip_by_value(x + (1.0 + overshoot) * r_total, clip_min, clip_max)

    def still_labelled_y(x_point):
        return tf.equal(tf.argmax(model_fn(x_point), axis=-1), y)

    def step(r_total, active):
        x_point = point(r_total)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x_point)
            f = tf.gather(model_fn(x_point), candidates, batch_dims=1)  # (batch, candidates)
        grads = tape.batch_jacobian(f, x_point)  # (batch, candidates, *image)
        # The affine approximations of f_k - f_y around x_point, for each other candidate k.
        f_diff = tf.abs(f[:, 1:] - f[:, :1])
        w_diff = grads[:, 1:] - grads[:, :1]
        # Directions that would push a pixel already at the clip range further out are dropped:
        # clipping would undo that part of the step, and the step would fall short of the
        # boundary by more than the overshoot, again and again.
        at_min, at_max = (a[:, None] for a in (x_point <= clip_min, x_point >= clip_max))
        blocked = tf.logical_or(tf.logical_and(at_min, w_diff < 0), tf.logical_and(at_max, w_diff > 0))
        w_diff = tf.where(blocked, tf.zeros_like(w_diff), w_diff)
        w_norm_sq = tf.reduce_sum(tf.square(w_diff), axis=[axis + 1 for axis in image_axes])
        distance = f_diff / tf.sqrt(w_norm_sq + _AVOID_ZERO_DIV)
        closest = tf.argmin(distance, axis=1)
        # The smallest step onto the nearest boundary: |f'| / ||w'||^2 * w'.
        scale = tf.gather(f_diff / (w_norm_sq + _AVOID_ZERO_DIV), closest, batch_dims=1)
        r_step = tf.reshape(scale, [-1] + [1] * len(image_axes)) * tf.gather(w_diff, closest, batch_dims=1)
        moving = tf.reshape(active, [-1] + [1] * len(image_axes))
        r_total = r_total + tf.where(moving, r_step, tf.zeros_like(r_step))
        # Keep only what survives clipping, so a later step back is not spent unwinding it.
        r_total = (point(r_total) - x) / (1.0 + overshoot)
        return r_total, tf.logical_and(active, still_labelled_y(point(r_total)))

    r_total, _ = tf.while_loop(
        lambda r_total, active: tf.reduce_any(active),
        step,
        (tf.zeros_like(x), still_labelled_y(x)),
        maximum_iterations=max_iter,
    )
    return point(r_total)


def _check_deepfool(params: dict) -> dict:
    if params["nb_candidate"] < 2:
        raise ValueError(f"nb_candidate must be >= 2 (the label and one other), got {params['nb_candidate']}")
    if params["overshoot"] <= 0:
        raise ValueError(
            f"overshoot must be > 0, got {params['overshoot']}: without it a step lands on the "
            "decision boundary, not across it"
        )
    if params["max_iter"] < 1:
        raise ValueError(f"max_iter must be >= 1, got {params['max_iter']}")
    return params


@register_attack("deepfool", DEEPFOOL_DEFAULTS, _check_deepfool)
def _deepfool_attack(model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, **params) -> tf.Tensor:
    return deepfool(model_fn, x, y, **params)
