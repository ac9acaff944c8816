"""LQ-VAE as a `Defense`, with its BPDA approximations."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lqvae_tf.defenses.base import Defense, check_mode, straight_through
from lqvae_tf.models import LQVAE, check_images
from lqvae_tf.models.inputs import rescale


class LQVAEDefense(Defense):
    """The LQ-VAE filter `g(H(mu(x)))`, or `g(H(z))` with `z ~ N(mu, sigma^2)` when stochastic.

    BPDA ("bpda") keeps the exact forward pass and takes the backward pass of the soft quantizer
    `H~` (the model's own differentiable stand-in, at its trained sharpness) in place of `H`'s.
    "soft" is the authors' own BPDA surrogate (mayank31398/lqvae, `src/BPDA.py`, `FGSM`): the
    hard-code decoder `g` applied to the soft code `H~(z)` of a SAMPLED latent
    `z = mu + s sigma eps` (`s` = the config's `sample_noise_scale`, 0.05 for the paper), forward
    and backward; it is random, so attacks through it may average it (EOT).

    Args:
        model: a trained `LQVAE`.
        stochastic: sample the latent instead of using its mean (then attacks should use EOT).
        name: the column name in result tables.
        value_range: the pixel range of the images the defense is handed (the classifiers');
            mapped linearly onto the model's own `config.value_range` and back.
    """

    def __init__(
        self,
        model: LQVAE,
        stochastic: bool = False,
        name: str = "lq-vae",
        value_range: tuple[float, float] = (0.0, 1.0),
    ):
        self.model = model
        self.stochastic = stochastic
        self.name = name
        self.value_range = tuple(value_range)
        self._forward = tf.function(lambda x: self.differentiable(x, "naive"), reduce_retracing=True)

    def _to_model(self, images):
        return rescale(images, self.value_range, self.model.config.value_range)

    def _from_model(self, images):
        return rescale(images, self.model.config.value_range, self.value_range)

    def purify(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        x = check_images(images, self.model.config.image_shape, self.value_range)
        return np.concatenate([self._forward(x[i : i + batch_size]).numpy() for i in range(0, len(x), batch_size)])

    def latent_means(self, images: np.ndarray) -> np.ndarray:
        """The encoder means `mu(x)` of images in the defense's value range."""
        x = check_images(images, self.model.config.image_shape, self.value_range)
        return self.model.encode(self._to_model(x))[0]

    def codes(self, images: np.ndarray) -> np.ndarray:
        """The latent codes `H(mu(x))` of images in the defense's value range."""
        return self.model.quantize_hard(self.latent_means(images)).numpy()

    def cache_parts(self) -> tuple:
        settings = {
            "class": "LQVAEDefense",
            "stochastic": self.stochastic,
            "value_range": list(self.value_range),
            "config": self.model.config.to_dict(),
        }
        return settings, self.model

    def random_gradient(self, mode: str) -> bool:
        return self.stochastic or mode == "soft"

    def _latent(self, images: tf.Tensor, sample: bool) -> tf.Tensor:
        internal = self.model.to_internal(self._to_model(images))
        mean, log_var = self.model.encoder(internal, training=False)
        return self.model.sampling([mean, log_var]) if sample else mean

    def differentiable(self, images: tf.Tensor, mode: str = "bpda") -> tf.Tensor:
        check_mode(mode)
        model = self.model
        if mode == "identity":
            return straight_through(self.differentiable(tf.stop_gradient(images), "naive"), images)
        if mode == "soft":
            codes = model.quantize_soft(self._latent(images, sample=True))
            return self._from_model(model.from_internal(model.decoder_hard(codes, training=False)))
        z = self._latent(images, self.stochastic)
        codes = model.quantize_hard(z)
        if mode == "bpda":
            codes = straight_through(codes, model.quantize_soft(z))
        else:  # the true gradient of H: zero almost everywhere (a zero tensor, not None, for attacks)
            codes = straight_through(codes, tf.zeros_like(z) * z)
        return self._from_model(model.from_internal(model.decoder_hard(codes, training=False)))
