"""The LQ-VAE `keras.Model` (Algorithm 1 in `train_step`) and its building blocks (quantizers, Lipschitz
penalty, input checks, `logits_of`), the purifier-then-classifier `DefendedClassifier`; the WGAN-GP
behind the Defense-GAN baseline."""

from lqvae_tf.models.defended import DefendedClassifier
from lqvae_tf.models.inputs import check_images
from lqvae_tf.models.lqvae import LQVAE, kl_divergence
from lqvae_tf.models.quantizers import HardQuantizer, SoftQuantizer, quantize_hard, quantize_soft
from lqvae_tf.models.sampling import Sampling
from lqvae_tf.models.wgan import WGANGP

__all__ = [
    "LQVAE",
    "DefendedClassifier",
    "HardQuantizer",
    "SoftQuantizer",
    "Sampling",
    "WGANGP",
    "check_images",
    "kl_divergence",
    "quantize_hard",
    "quantize_soft",
]
