"""The purifier then the classifier, as one Keras model that saves to and loads from `.keras`.

`keras.models.load_model("defended.keras")` (after `import lqvae_tf`, which registers the class)
gives a model whose `predict` returns the classifier's answer on purified input: the filter a
user deploys, in one file. Both parts are saved whole inside it (config and weights), so the file
needs nothing beside it.
"""

from __future__ import annotations

import keras

from lqvae_tf.models.lqvae import LQVAE
from lqvae_tf.models.quantizers import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class DefendedClassifier(keras.Model):
    """`classifier(purifier(x))`, with the purifier's deterministic filter `g(H(mu(x)))`.

    Args:
        purifier: a trained `LQVAE`; its `config.value_range` is the range the model takes.
        classifier: a Keras classifier taking images of the purifier's shape, in that range.

    Example:
        >>> defended = DefendedClassifier(LQVAE.from_preset("fashion_mnist"), classifier)
        >>> defended.save("defended.keras")
        >>> keras.models.load_model("defended.keras").predict(images)
    """

    def __init__(self, purifier: LQVAE, classifier: keras.Model, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(purifier, LQVAE):
            raise TypeError(f"purifier must be an LQVAE, got {type(purifier).__name__}")
        shape = tuple(classifier.inputs[0].shape[1:]) if getattr(classifier, "inputs", None) else None
        if shape is not None and shape != tuple(purifier.config.image_shape):
            raise ValueError(
                f"the classifier takes images of shape {shape}, the purifier gives {purifier.config.image_shape}"
            )
        self.purifier = purifier
        self.classifier = classifier
        self.built = purifier.built and classifier.built  # nothing of its own to build

    def call(self, images, training=False):
        return self.classifier(self.purifier(images, training=False), training=training)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "purifier": keras.saving.serialize_keras_object(self.purifier),
            "classifier": keras.saving.serialize_keras_object(self.classifier),
        }

    @classmethod
    def from_config(cls, config: dict) -> DefendedClassifier:
        config = dict(config)
        purifier = keras.saving.deserialize_keras_object(config.pop("purifier"))
        classifier = keras.saving.deserialize_keras_object(config.pop("classifier"))
        return cls(purifier, classifier, **config)
