"""LQ-VAE models and their building blocks."""

from lqvae_tf.models.inputs import check_images
from lqvae_tf.models.lqvae import LQVAE, kl_divergence
from lqvae_tf.models.quantizers import HardQuantizer, SoftQuantizer, quantize_hard, quantize_soft
from lqvae_tf.models.sampling import Sampling

__all__ = [
    "LQVAE",
    "HardQuantizer",
    "SoftQuantizer",
    "Sampling",
    "check_images",
    "kl_divergence",
    "quantize_hard",
    "quantize_soft",
]
