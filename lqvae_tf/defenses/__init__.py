"""Defenses behind one interface (`Defense`): none, LQ-VAE and Defense-GAN."""

from lqvae_tf.defenses.base import GRADIENT_MODES, Defense, NoDefense, PurifyLayer, straight_through
from lqvae_tf.defenses.defense_gan import DefenseGANDefense, defense_gan_from_path
from lqvae_tf.defenses.lqvae_defense import LQVAEDefense

__all__ = [
    "GRADIENT_MODES",
    "Defense",
    "DefenseGANDefense",
    "LQVAEDefense",
    "NoDefense",
    "PurifyLayer",
    "defense_gan_from_path",
    "straight_through",
]
