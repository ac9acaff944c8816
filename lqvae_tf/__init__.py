"""lqvae-tf: an LQ-VAE adversarial purifier for any TensorFlow/Keras image classifier."""

from lqvae_tf.config import PRESETS, AdversarialConfig, GuidanceConfig, LQVAEConfig, preset
from lqvae_tf.models import LQVAE, DefendedClassifier
from lqvae_tf.protection import protect

__version__ = "0.1.0"

__all__ = [
    "LQVAE",
    "DefendedClassifier",
    "AdversarialConfig",
    "GuidanceConfig",
    "LQVAEConfig",
    "PRESETS",
    "preset",
    "protect",
    "__version__",
]
