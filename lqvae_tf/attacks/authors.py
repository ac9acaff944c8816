"""The LQ-VAE authors' end-to-end attack, as their public code runs it (the paper's Table 5).

mayank31398/lqvae, `src/BPDA.py`, function `FGSM`: ONE signed-gradient step of 0.3 on images in
[-1, 1], of a sigmoid cross-entropy between one-hot labels and the classifier's logits, taken
through the filter's soft surrogate (see `LQVAEDefense`, mode "soft"); the 10-step loop around
it is commented out, and the result is not clipped. Their evaluation then reads the saved
adversarials back through `utils.LoadData(file="npy")`, which min-max rescales EACH image onto
[-1, 1]: that is how out-of-range pixels are handled there, and it is what `out_of_range="minmax"`
does here (onto [clip_min, clip_max]). `out_of_range="clip"` clips instead.

Our images live in [0, 1], so the authors' step of 0.3 on [-1, 1] is `eps = 0.15` here.
"""

from __future__ import annotations

import tensorflow as tf

from lqvae_tf.attacks.base import ModelFn, register_attack

OUT_OF_RANGE = ("minmax", "clip")
# 0.3 on the authors' [-1, 1] pixel scale, on our [0, 1] scale.
AUTHORS_FGSM_DEFAULTS = dict(eps=0.15, out_of_range="minmax", clip_min=0.0, clip_max=1.0)


def _check(params: dict) -> dict:
    if not params["eps"] > 0:
        raise ValueError(f"eps must be positive, got {params['eps']}")
    if params["out_of_range"] not in OUT_OF_RANGE:
        raise ValueError(f"out_of_range must be one of {OUT_OF_RANGE}, got {params['out_of_range']!r}")
    return params


def minmax_rescale(images: tf.Tensor, low: float, high: float) -> tf.Tensor:
    """Each image's pixels mapped linearly so that its own min is `low` and its max `high`."""
    axes = list(range(1, len(images.shape)))
    smallest = tf.reduce_min(images, axis=axes, keepdims=True)
    span = tf.maximum(tf.reduce_max(images, axis=axes, keepdims=True) - smallest, 1e-12)
    return (images - smallest) / span * (high - low) + low


@register_attack("authors_fgsm", AUTHORS_FGSM_DEFAULTS, _check)
def authors_fgsm(
    model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, *, eps: float, out_of_range: str, clip_min: float, clip_max: float
) -> tf.Tensor:
    """`x + eps * sign(grad_x sigmoid_xent(onehot(y), logits(x)))`, then min-max rescaled (or clipped)."""
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        # Only x: a tape that also watched the weights would record (and keep in memory) every
        # step of a defense's inner search, e.g. Defense-GAN's 200 x 10 descent, though x is cut off from it.
        tape.watch(x)
        logits = model_fn(x)
        targets = tf.one_hot(y, tf.shape(logits)[-1], dtype=logits.dtype)
        loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits))
    stepped = x + eps * tf.sign(tape.gradient(loss, x))
    if out_of_range == "minmax":
        return minmax_rescale(stepped, clip_min, clip_max)
    return tf.clip_by_value(stepped, clip_min, clip_max)
