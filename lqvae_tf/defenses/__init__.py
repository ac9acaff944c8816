"""Defenses behind one interface (`Defense`): none and LQ-VAE."""

from lqvae_tf.defenses.base import GRADIENT_MODES, Defense, NoDefense, PurifyLayer, straight_through
from lqvae_tf.defenses.lqvae_defense import LQVAEDefense

__all__ = ["GRADIENT_MODES", "Defense", "LQVAEDefense", "NoDefense", "PurifyLayer", "straight_through"]
