"""WGAN-GP (Gulrajani et al. 2017): the generator that Defense-GAN (Samangouei et al. 2018) projects onto.

The networks are the Defense-GAN authors' (kabkabm/defensegan, `models/dataset_models.py`), with
`d = 64 * width` (their `NET_DIM: 64`) and no batch norm (`USE_BN: False`; a WGAN-GP critic must
not have it, since the penalty is per example):

* 28x28xC: generator fc 4*4*4d, ReLU, deconv 5x5 (stride 2) 2d, cropped 8x8 -> 7x7, ReLU, deconv d,
  ReLU, deconv C, sigmoid; critic conv 5x5 (stride 2) d-2d-4d, LeakyReLU 0.2, then linear.
* 64x64xC (their CelebA networks): generator deconvs 2d-d-d-C from 4x4; critic convs d-2d-4d-8d
  (one more stride-2 conv than theirs, so that it too ends on a 4x4 grid before the linear layer).

The generator's last activation is a sigmoid rescaled onto `value_range`: exactly their sigmoid
for (0, 1), `tanh(u / 2)` (their CelebA tanh, up to the scale of `u`) for (-1, 1).

Training is theirs (`models/gan.py`, `mode: wgan-gp`): critic loss `D(fake) - D(real) + 10 *
(||grad D(x_mix)||_2 - 1)^2`, generator loss `-D(fake)`, Adam(1e-4, 0.5, 0.9) for both, and one
generator step after every 5 critic steps (`CRITIC_ITERS: 5`), each critic step on a fresh batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
import tensorflow as tf
from keras import ops

from lqvae_tf.models.quantizers import PACKAGE
from lqvae_tf.models.sampling import load_seed_state, save_seed_state

# The reference settings (kabkabm/defensegan: experiments/cfgs/gans/default.yml and mnist.yml, models/gan.py).
REFERENCE_LATENT_DIM = 128  # LATENT_DIM
REFERENCE_NET_DIM = 64  # NET_DIM: filters of the first conv (d); `width` scales it
GRADIENT_PENALTY_WEIGHT = 10.0  # GRADIENT_PENALTY_LAMBDA
CRITIC_STEPS = 5  # CRITIC_ITERS: critic steps per generator step
ADAM_LEARNING_RATE = 1e-4  # both networks, as in WGAN-GP
ADAM_BETA_1 = 0.5
ADAM_BETA_2 = 0.9
KERNEL_SIZE = 5
LEAKY_SLOPE = 0.2
SLOPE_EPSILON = 1e-12  # keeps the norm's sqrt differentiable where the critic's gradient vanishes

METRIC_NAMES = ("critic_loss", "wasserstein", "gradient_penalty", "generator_loss")


@dataclasses.dataclass(frozen=True)
class GANSpec:
    """Layer sizes for one image size, as multiples of `d`: generator deconvs after the 4x4x4d
    base (the last one maps to the image channels) and critic convs (all stride 2)."""

    generator_filters: tuple[int, ...]
    critic_filters: tuple[int, ...]
    crop_first_deconv: bool  # 8x8 -> 7x7, so that two more doublings give 28


SPECS = {
    28: GANSpec(generator_filters=(2, 1), critic_filters=(1, 2, 4), crop_first_deconv=True),
    64: GANSpec(generator_filters=(2, 1, 1), critic_filters=(1, 2, 4, 8), crop_first_deconv=False),
}
BASE_GRID = 4
BASE_FILTERS = 4  # the generator's 4x4 base has 4d channels


def _spec(image_shape: Sequence[int]) -> GANSpec:
    height, width, channels = image_shape
    if height != width or height not in SPECS or channels < 1:
        sizes = ", ".join(f"({s}, {s}, C)" for s in SPECS)
        raise ValueError(f"image_shape must be one of {sizes}, got {tuple(image_shape)}")
    return SPECS[height]


def _filters(multiple: int, width: float) -> int:
    return max(1, round(REFERENCE_NET_DIM * multiple * width))


def build_generator(
    image_shape: Sequence[int], latent_dim: int, width: float, value_range: Sequence[float], name: str = "generator"
) -> keras.Model:
    """`G`: latents (batch, latent_dim) -> images (batch, *image_shape) in `value_range`."""
    spec = _spec(image_shape)
    base = (BASE_GRID, BASE_GRID, _filters(BASE_FILTERS, width))
    latents = keras.Input(shape=(latent_dim,), name="latents")
    h = keras.layers.Dense(base[0] * base[1] * base[2], name="fc")(latents)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Reshape(base)(h)
    for i, multiple in enumerate(spec.generator_filters):
        h = keras.layers.Conv2DTranspose(
            _filters(multiple, width), KERNEL_SIZE, strides=2, padding="same", name=f"deconv{i + 1}"
        )(h)
        h = keras.layers.ReLU()(h)
        if i == 0 and spec.crop_first_deconv:
            h = keras.layers.Cropping2D(((0, 1), (0, 1)), name="crop")(h)
    h = keras.layers.Conv2DTranspose(image_shape[-1], KERNEL_SIZE, strides=2, padding="same", name="deconv_out")(h)
    h = keras.layers.Activation("sigmoid")(h)
    low, high = (float(v) for v in value_range)
    images = keras.layers.Rescaling(scale=high - low, offset=low, name="to_value_range")(h)
    return keras.Model(latents, images, name=name)


def build_critic(image_shape: Sequence[int], width: float, name: str = "critic") -> keras.Model:
    """`D`: images (batch, *image_shape) -> one unbounded score per image (batch,)."""
    spec = _spec(image_shape)
    images = keras.Input(shape=tuple(image_shape), name="images")
    h = images
    for i, multiple in enumerate(spec.critic_filters):
        h = keras.layers.Conv2D(_filters(multiple, width), KERNEL_SIZE, strides=2, padding="same", name=f"conv{i + 1}")(
            h
        )
        h = keras.layers.LeakyReLU(LEAKY_SLOPE)(h)
    h = keras.layers.Flatten()(h)
    score = keras.layers.Dense(1, name="score")(h)
    score = keras.layers.Reshape(())(score)
    return keras.Model(images, score, name=name)


def _images_of(data):
    """The images of a `fit`/`evaluate` batch: `x`, `(x,)`, `(x, y)` or `(x, y, w)`."""
    return data[0] if isinstance(data, (tuple, list)) else data


def wgan_gp_adam(learning_rate: float = ADAM_LEARNING_RATE, name: str = "adam") -> keras.optimizers.Optimizer:
    """WGAN-GP's optimizer: Adam with beta_1 = 0.5 and beta_2 = 0.9 (Gulrajani et al., Algorithm 1)."""
    return keras.optimizers.Adam(learning_rate, beta_1=ADAM_BETA_1, beta_2=ADAM_BETA_2, name=name)


@keras.saving.register_keras_serializable(package=PACKAGE)
class WGANGP(keras.Model):
    """A Wasserstein GAN with gradient penalty: `generator` (`G`) and `critic` (`D`).

    Each `fit` batch is one critic step on fresh real images; after every `critic_steps`-th
    critic step the generator takes one step. Calling the model generates: `model(latents)`.

    Args:
        image_shape: (28, 28, C) or (64, 64, C).
        latent_dim: size of `z ~ N(0, I)`.
        width: multiplier of every filter count (1.0 is the reference network; tests use ~0.1).
        value_range: the pixel range of the training images and of `G`'s output.
        gradient_penalty_weight: lambda of the penalty `(||grad_x D(x)||_2 - 1)^2`.
        critic_steps: critic steps per generator step.
        seed: seed of the model's noise (latents and interpolation weights).

    Example:
        >>> gan = WGANGP((28, 28, 1))
        >>> gan.compile()
        >>> gan.fit(images_dataset, epochs=10)
        >>> samples = gan(keras.random.normal((16, gan.latent_dim)))
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (28, 28, 1),
        latent_dim: int = REFERENCE_LATENT_DIM,
        width: float = 1.0,
        value_range: Sequence[float] = (0.0, 1.0),
        gradient_penalty_weight: float = GRADIENT_PENALTY_WEIGHT,
        critic_steps: int = CRITIC_STEPS,
        seed: int | None = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        image_shape = tuple(int(v) for v in image_shape)
        _spec(image_shape)
        low, high = (float(v) for v in value_range)
        if not low < high:
            raise ValueError(f"value_range must be (low, high) with low < high, got {tuple(value_range)}")
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        if isinstance(critic_steps, bool) or not isinstance(critic_steps, int) or critic_steps < 1:
            raise ValueError(f"critic_steps must be a positive integer, got {critic_steps!r}")
        if not width > 0:
            raise ValueError(f"width must be positive, got {width!r}")
        if not gradient_penalty_weight >= 0:
            raise ValueError(f"gradient_penalty_weight must be >= 0, got {gradient_penalty_weight!r}")
        self.image_shape = image_shape
        self.latent_dim = latent_dim
        self.width = float(width)
        self.value_range = (low, high)
        self.gradient_penalty_weight = float(gradient_penalty_weight)
        self.critic_steps = critic_steps
        self.seed = seed
        self.generator = build_generator(image_shape, latent_dim, self.width, self.value_range, name="generator")
        self.critic = build_critic(image_shape, self.width, name="critic")
        self.noise_seed = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in METRIC_NAMES}
        self.generator_optimizer = None
        self.built = True

    # ----------------------------------------------------------------- construction
    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": list(self.image_shape),
            "latent_dim": self.latent_dim,
            "width": self.width,
            "value_range": list(self.value_range),
            "gradient_penalty_weight": self.gradient_penalty_weight,
            "critic_steps": self.critic_steps,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def compile(self, critic_optimizer=None, generator_optimizer=None, **kwargs):
        """Sets the two optimizers (WGAN-GP's Adam(1e-4, beta_1=0.5, beta_2=0.9) where not given).

        The critic's optimizer is also the model's `optimizer`, so callbacks that read
        `model.optimizer` see the optimizer that counts every `fit` step.
        """
        super().compile(optimizer=critic_optimizer or wgan_gp_adam(name="critic_optimizer"), **kwargs)
        self.generator_optimizer = generator_optimizer or wgan_gp_adam(name="generator_optimizer")
        # Built now, so that saved optimizer state loads into them instead of being skipped.
        self.optimizer.build(self.critic.trainable_variables)
        self.generator_optimizer.build(self.generator.trainable_variables)

    @property
    def critic_optimizer(self) -> keras.optimizers.Optimizer | None:
        return getattr(self, "optimizer", None)

    def get_compile_config(self):
        if self.generator_optimizer is None:
            return None
        names = ("critic_optimizer", "generator_optimizer")
        return {name: keras.optimizers.serialize(getattr(self, name)) for name in names}

    def compile_from_config(self, config):
        # Called by keras.models.load_model; the optimizer state is loaded afterwards.
        self.compile(**{name: keras.optimizers.deserialize(value) for name, value in config.items()})

    def save_own_variables(self, store):
        save_seed_state(store, self.noise_seed)  # the model's only state of its own

    def load_own_variables(self, store):
        load_seed_state(store, self.noise_seed)

    @property
    def metrics(self):
        return list(self.trackers.values())

    # ----------------------------------------------------------------- WGAN-GP
    def sample_latents(self, count) -> tf.Tensor:
        """`count` draws of `z ~ N(0, I)` from the model's seeded generator."""
        return keras.random.normal((count, self.latent_dim), seed=self.noise_seed)

    def critic_losses(self, real, training: bool) -> dict[str, tf.Tensor]:
        """The critic's loss on one batch of real images, with its two parts.

        `wasserstein` is the critic's estimate `mean D(real) - mean D(fake)`; the loss the critic
        descends is `-wasserstein + lambda * gradient_penalty`, the penalty taken at random points
        between real and generated images. Call it under a tape on the critic's weights: the
        penalty's own gradient is taken by a tape inside it.
        """
        real = ops.cast(real, "float32")
        batch = ops.shape(real)[0]
        fake = tf.stop_gradient(self.generator(self.sample_latents(batch), training=training))
        scores = self.critic(ops.concatenate([real, fake], axis=0), training=training)
        wasserstein = ops.mean(scores[:batch]) - ops.mean(scores[batch:])
        mixing = keras.random.uniform((batch, 1, 1, 1), seed=self.noise_seed)
        mixed = real + mixing * (fake - real)
        with tf.GradientTape() as inner:
            inner.watch(mixed)
            mixed_scores = self.critic(mixed, training=training)
        slopes = ops.sqrt(ops.sum(ops.square(inner.gradient(mixed_scores, mixed)), axis=(1, 2, 3)) + SLOPE_EPSILON)
        gradient_penalty = ops.mean(ops.square(slopes - 1.0))
        critic_loss = -wasserstein + self.gradient_penalty_weight * gradient_penalty
        return {"critic_loss": critic_loss, "wasserstein": wasserstein, "gradient_penalty": gradient_penalty}

    def _critic_step(self, real) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            values = self.critic_losses(real, training=True)
        variables = self.critic.trainable_variables
        self.critic_optimizer.apply_gradients(zip(tape.gradient(values["critic_loss"], variables), variables))
        return values

    def _generator_step(self, batch) -> tf.Tensor:
        latents = self.sample_latents(batch)
        with tf.GradientTape() as tape:
            generator_loss = -ops.mean(self.critic(self.generator(latents, training=True), training=True))
        variables = self.generator.trainable_variables
        self.generator_optimizer.apply_gradients(zip(tape.gradient(generator_loss, variables), variables))
        self.trackers["generator_loss"].update_state(generator_loss)
        return generator_loss

    def train_step(self, data):
        if tf.distribute.get_replica_context().num_replicas_in_sync > 1:
            # The generator's turn is a tf.cond around apply_gradients, which cannot all-reduce.
            raise ValueError(
                "WGANGP trains on a single replica: build and fit it outside a multi-device tf.distribute strategy"
            )
        real = _images_of(data)
        values = self._critic_step(real)
        for name in ("critic_loss", "wasserstein", "gradient_penalty"):
            self.trackers[name].update_state(values[name])
        # One generator step after every `critic_steps` critic steps, as in the reference loop.
        generator_turn = ops.equal(self.critic_optimizer.iterations % self.critic_steps, 0)
        tf.cond(generator_turn, lambda: self._generator_step(ops.shape(real)[0]), lambda: tf.constant(0.0))
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def test_step(self, data):
        values = self.critic_losses(_images_of(data), training=False)
        for name, value in values.items():
            self.trackers[name].update_state(value)
        return {name: self.trackers[name].result() for name in values}

    # ----------------------------------------------------------------- generation
    def call(self, latents, training=False):
        """`G(z)`: images in `value_range` from latents (batch, latent_dim)."""
        return self.generator(latents, training=training)
