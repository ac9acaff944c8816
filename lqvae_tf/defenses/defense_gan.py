"""Defense-GAN (Samangouei et al. 2018) as a `Defense`: project the input onto a GAN's range.

`purify(x) = G(z*)` with `z* = argmin_z ||G(z) - x||^2`, found by `steps` (L) steps of gradient
descent with momentum from each of `restarts` (R) random starts; the start whose final
reconstruction is closest to `x` (mean squared error) wins. All R starts of all images of a batch
descend together as one (batch * R, latent) tensor, inside one compiled `tf.while_loop`.

BPDA (Athalye et al. 2018) for Defense-GAN: the forward pass is the full projection, the backward
pass the identity ("bpda" and "identity" alike, since the projection has no cheaper
differentiable stand-in). "naive" treats `z*` as a constant, which gives a zero gradient with
respect to `x` (differentiating through all L descent steps is what BPDA avoids).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from lqvae_tf.defenses.base import Defense, check_mode, straight_through
from lqvae_tf.models.inputs import check_images, rescale
from lqvae_tf.models.wgan import WGANGP

# The reference settings (kabkabm/defensegan: experiments/cfgs/gans/mnist.yml and models/gan.py).
REFERENCE_STEPS = 200  # REC_ITERS: L
REFERENCE_RESTARTS = 10  # REC_RR: R
REFERENCE_LEARNING_RATE = 10.0  # REC_LR. Their decay schedule reads a step counter that never advances: constant.
REFERENCE_MOMENTUM = 0.7  # MomentumOptimizer(momentum=0.7)
DEFAULT_BATCH_SIZE = 64  # images per compiled projection (batch * R rows descend together)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _positive_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 < value < np.inf:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _value_range(name: str, value) -> tuple[float, float]:
    low, high = (float(v) for v in value)
    if not low < high:
        raise ValueError(f"{name} must be (low, high) with low < high, got {tuple(value)}")
    return low, high


class DefenseGANDefense(Defense):
    """The Defense-GAN filter `G(z*)` in front of a classifier.

    Random starts are drawn from `N(0, I / latent_dim)` (the reference's initializer). With
    `stochastic=False` they are a fixed function of `seed` and of each image's position in the
    batch (image i's starts do not depend on how many images follow it or on `batch_size`), so the
    filter is deterministic; with `stochastic=True` every call draws new ones, as the reference
    does, and attacks should average over them (EOT).

    Args:
        generator: a trained `WGANGP`, or a bare generator model (latents -> images).
        steps: L, the descent steps per start.
        restarts: R, the random starts per image.
        learning_rate: the descent's step size on `z`.
        momentum: the descent's momentum (`v <- m v + g; z <- z - lr v`).
        seed: seed of the random starts.
        value_range: the pixel range of the images the defense is handed (the classifiers');
            mapped linearly onto the generator's range and back.
        batch_size: images per compiled projection in `purify`.
        generator_range: the pixel range of a bare generator's output (taken from a `WGANGP`).
        stochastic: draw new random starts on every call.
        name: the column name in result tables.

    Example:
        >>> defense = DefenseGANDefense(keras.saving.load_model("gan.keras"))
        >>> clean = defense.purify(images)
    """

    def __init__(
        self,
        generator: WGANGP | keras.Model,
        steps: int = REFERENCE_STEPS,
        restarts: int = REFERENCE_RESTARTS,
        learning_rate: float = REFERENCE_LEARNING_RATE,
        momentum: float = REFERENCE_MOMENTUM,
        seed: int = 0,
        value_range: Sequence[float] = (0.0, 1.0),
        batch_size: int = DEFAULT_BATCH_SIZE,
        generator_range: Sequence[float] | None = None,
        stochastic: bool = False,
        name: str = "defense-gan",
    ):
        if isinstance(generator, WGANGP):
            if generator_range is not None and tuple(generator_range) != generator.value_range:
                raise ValueError(
                    f"generator_range {tuple(generator_range)} disagrees with the WGANGP's value_range "
                    f"{generator.value_range}; leave it out for a WGANGP"
                )
            generator_range = generator.value_range
            network = generator.generator
        elif isinstance(generator, keras.Model):
            network = generator
        else:
            raise ValueError(f"generator must be a WGANGP or a keras.Model, got {type(generator).__name__}")
        if len(network.inputs) != 1 or len(network.inputs[0].shape) != 2 or len(network.outputs[0].shape) != 4:
            raise ValueError(
                f"generator must map latents (batch, latent_dim) to images (batch, H, W, C); "
                f"it maps {[tuple(t.shape) for t in network.inputs]} to {tuple(network.outputs[0].shape)}"
            )
        self.model = network  # `model`: what the evaluation harness fingerprints for its caches
        self.latent_dim = int(network.inputs[0].shape[-1])
        self.image_shape = tuple(int(v) for v in network.outputs[0].shape[1:])
        self.steps = _positive_int("steps", steps)
        self.restarts = _positive_int("restarts", restarts)
        self.learning_rate = _positive_float("learning_rate", learning_rate)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float, np.number)) or not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.seed = int(seed)
        self.value_range = _value_range("value_range", value_range)
        if generator_range is None:
            generator_range = (0.0, 1.0)  # a bare generator's output: sigmoid, as the reference's 28x28 one
        self.generator_range = _value_range("generator_range", generator_range)
        self.stochastic = bool(stochastic)
        self.name = name
        self._random = tf.random.Generator.from_seed(self.seed)
        # One trace serves every batch size: the signature fixes all but the batch axis.
        self._purify_batch = tf.function(
            lambda images, starts: self._project(images, starts),
            input_signature=[
                tf.TensorSpec((None, *self.image_shape), tf.float32, name="images"),
                tf.TensorSpec((None, self.restarts, self.latent_dim), tf.float32, name="starts"),
            ],
        )

    # ----------------------------------------------------------------- value ranges
    def _to_generator(self, images):
        return rescale(images, self.value_range, self.generator_range)

    def _from_generator(self, images):
        return rescale(images, self.generator_range, self.value_range)

    # ----------------------------------------------------------------- the projection
    def initial_latents(self, count) -> tf.Tensor:
        """The random starts, (count, restarts, latent_dim), from `N(0, I / latent_dim)`."""
        scale = 1.0 / np.sqrt(self.latent_dim)
        if self.stochastic:
            return self._random.normal(tf.stack([count, self.restarts, self.latent_dim])) * scale
        # Start r of image i depends on (seed, r, i) only: not on the batch size, on how many images
        # follow, or (for r < R) on R, so more restarts only add starts.
        shape = tf.stack([count, self.latent_dim])
        starts = [tf.random.stateless_normal(shape, seed=[self.seed, r]) for r in range(self.restarts)]
        return tf.stack(starts, axis=1) * scale

    def _project(self, images: tf.Tensor, starts: tf.Tensor) -> tf.Tensor:
        """`G(z*)` for a batch in `value_range`, from the given starts; returns `value_range` images."""
        count = tf.shape(images)[0]
        # Row i * R + r is start r of image i, so that a reshape to (count, R) groups an image's starts.
        targets = tf.repeat(self._to_generator(images), self.restarts, axis=0)
        latents = tf.reshape(starts, (-1, self.latent_dim))
        pixel_axes = list(range(1, 1 + len(self.image_shape)))

        def descend(step, latents, velocity):
            with tf.GradientTape(watch_accessed_variables=False) as tape:  # z moves, G's weights do not
                tape.watch(latents)
                errors = tf.reduce_mean(tf.square(self.model(latents, training=False) - targets), axis=pixel_axes)
                # Each row's error depends on its own latent only, so the sum's gradient is per-row.
                total = tf.reduce_sum(errors)
            gradient = tape.gradient(total, latents)
            velocity = self.momentum * velocity + gradient
            return step + 1, latents - self.learning_rate * velocity, velocity

        _, latents, _ = tf.while_loop(
            lambda step, *_: step < self.steps,
            descend,
            (tf.constant(0), latents, tf.zeros_like(latents)),
            maximum_iterations=self.steps,
        )
        reconstructions = self.model(latents, training=False)
        errors = tf.reduce_mean(tf.square(reconstructions - targets), axis=pixel_axes)
        best = tf.argmin(tf.reshape(errors, (count, self.restarts)), axis=1, output_type=tf.int32)
        reconstructions = tf.reshape(reconstructions, (count, self.restarts, *self.image_shape))
        return self._from_generator(tf.gather(reconstructions, best, axis=1, batch_dims=1))

    # ----------------------------------------------------------------- the Defense interface
    costly = True  # L x R generator passes per image

    def cache_parts(self) -> tuple:
        return {"class": "DefenseGANDefense", **self.settings}, self.model

    @property
    def settings(self) -> dict:
        """What, beside the generator's weights, determines the filter (part of evaluation cache keys)."""
        return {
            "steps": self.steps,
            "restarts": self.restarts,
            "learning_rate": self.learning_rate,
            "momentum": self.momentum,
            "seed": self.seed,
            "stochastic": self.stochastic,
            "value_range": list(self.value_range),
        }

    def purify(self, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Purified images `G(z*)`, in the defense's value range.

        Args:
            images: (batch, H, W, C) floats in `value_range`.
            batch_size: images per compiled projection (default: the defense's `batch_size`).

        Raises:
            ValueError: if the images have the wrong rank, shape, channels, dtype or range, or
                contain NaN/inf.
        """
        x = check_images(images, self.image_shape, self.value_range)
        batch_size = self.batch_size if batch_size is None else _positive_int("batch_size", batch_size)
        starts = self.initial_latents(len(x))
        return np.concatenate(
            [
                self._purify_batch(x[i : i + batch_size], starts[i : i + batch_size]).numpy()
                for i in range(0, len(x), batch_size)
            ]
        )

    def reconstruction_error(self, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Per-image mean squared error between images and their purified versions, (batch,).

        The quantity Defense-GAN minimises; in the defense's value range.
        """
        x = check_images(images, self.image_shape, self.value_range)
        purified = self.purify(x, batch_size)
        return np.mean(np.square(purified - x), axis=tuple(range(1, x.ndim)))

    def differentiable(self, images: tf.Tensor, mode: str = "bpda") -> tf.Tensor:
        check_mode(mode)
        images = tf.convert_to_tensor(images, tf.float32)
        purified = self._purify_batch(tf.stop_gradient(images), self.initial_latents(tf.shape(images)[0]))
        if mode == "naive":  # z* held constant: no path from x (a zero tensor, not None, for attacks)
            return straight_through(purified, tf.zeros_like(images) * images)
        # "bpda", "identity" and "soft" (it has no soft path of its own): the projection's
        # backward pass is the identity's, as Defense-GAN's BPDA (Athalye et al. 2018).
        return straight_through(purified, images)


def defense_gan_from_path(path: str, **kwargs) -> DefenseGANDefense:
    """A `DefenseGANDefense` on the `WGANGP` saved at `path` (a `.keras` file).

    Args:
        path: a model saved by `WGANGP.save` / `train_gan`.
        **kwargs: as `DefenseGANDefense` (steps, restarts, seed, value_range, ...).

    Raises:
        ValueError: if the file holds another kind of model.
    """
    model = keras.saving.load_model(path, compile=False)
    if not isinstance(model, WGANGP):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a WGANGP")
    return DefenseGANDefense(model, **kwargs)
