"""A classifier's logits: the one function the purifier, the attacks and the trainers share.

It lives in the models layer so that `models.lqvae` (a guided purifier's loss) and the attacks
above it use one definition without `models` importing upward.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import keras
import tensorflow as tf

ModelFn = Callable[[tf.Tensor], tf.Tensor]
"""Images (batch, height, width, channels) -> logits (batch, classes), differentiable by GradientTape."""


def logits_of(model: keras.Model) -> ModelFn:
    """A callable giving `model`'s logits: its last layer without a final softmax.

    The model is called in inference mode. If its last layer has `activation="softmax"` (a Dense
    or an `Activation` layer) or is a `keras.layers.Softmax`, the callable returns that layer's
    input to the softmax; otherwise it returns the model's output, taken to be logits already.

    Args:
        model: a functional or Sequential Keras classifier (a subclassed model works when it
            does not end in a softmax).
    """
    last = model.layers[-1] if model.layers else None
    if isinstance(last, keras.layers.Softmax):
        logits_layer = None
    elif getattr(last, "activation", None) is keras.activations.softmax:
        # A shallow copy shares the layer's weights, so later training shows through.
        logits_layer = copy.copy(last)
        logits_layer.activation = keras.activations.linear
    else:
        return lambda images: model(images, training=False)
    try:
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        features = keras.Model(inputs, last.input)
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"cannot strip the final softmax of {model.name!r} ({error}); pass a callable that "
            "returns its logits instead"
        ) from None
    if logits_layer is None:
        return lambda images: features(images, training=False)
    return lambda images: logits_layer(features(images, training=False), training=False)
