"""Encoder and decoder networks per image size, as functional Keras models.

`conv28` is the authors' network for 28x28x1 (Train_LQ_VAE.py): encoder conv 3x3 64(s1)-64(s2)-
128(s2)-128(s1), LeakyReLU 0.2, fc 1024, then linear mu and log sigma^2; decoder fc 1024, fc
7*7*128, deconv 3x3 128(s1)-128(s2)-64(s2)-C(s1), tanh; weights drawn with stddev 0.02.
`conv64` is the same pattern one stride deeper for 64x64x3 (the paper gives no CelebA network).
`conv` is the same pattern for any other size (a user's own images): as many stride-2 convs as
bring the larger side to `BASE_GRID` pixels or fewer, filters doubling from 64 up to 256, and the
decoder's output cropped to the image where the size is not a multiple of the strides.
`architecture_for(image_shape)` picks the paper's network where one fits, else `conv`.
`LQVAEConfig.width` scales every filter count and hidden size (1.0 is the authors' network).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import keras

from lqvae_tf.config import LQVAEConfig

LEAKY_SLOPE = 0.2  # the script's lrelu(alpha=0.2)
INIT_STDDEV = 0.02  # the script's initializers
BASE_GRID = 8  # `conv`: the largest side of the decoder's base grid (conv28 has 7, conv64 8)
BASE_FILTERS, MAX_FILTERS = 64, 256  # `conv`: filters of the first conv, and the cap of their doubling


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """Layer sizes of one architecture: (filters, stride) per conv, and the decoder's base grid."""

    encoder_convs: tuple[tuple[int, int], ...]
    hidden_units: int
    decoder_base: tuple[int, int, int]
    decoder_deconvs: tuple[tuple[int, int], ...]
    kernel_size: int = 3


SPECS = {
    "conv28": ConvSpec(
        encoder_convs=((64, 1), (64, 2), (128, 2), (128, 1)),
        hidden_units=1024,
        decoder_base=(7, 7, 128),
        decoder_deconvs=((128, 1), (128, 2), (64, 2)),
    ),
    "conv64": ConvSpec(
        encoder_convs=((64, 1), (64, 2), (128, 2), (256, 2), (256, 1)),
        hidden_units=1024,
        decoder_base=(8, 8, 256),
        decoder_deconvs=((256, 1), (128, 2), (64, 2), (64, 2)),
    ),
}


# The paper's networks by the image size they take; `conv` takes any other.
FIXED_SIZES = {"conv28": (28, 28), "conv64": (64, 64)}
ADAPTIVE = "conv"


def architecture_for(image_shape: Sequence[int]) -> str:
    """The architecture for images of `image_shape`: `conv28` or `conv64` where the size is
    theirs, else the adaptive `conv`."""
    size = tuple(int(v) for v in image_shape[:2])
    return next((name for name, fixed in FIXED_SIZES.items() if fixed == size), ADAPTIVE)


def adaptive_spec(image_shape: Sequence[int]) -> ConvSpec:
    """The `conv` architecture's layer sizes for `image_shape` (see the module docstring)."""
    height, width = int(image_shape[0]), int(image_shape[1])
    halvings = max(1, math.ceil(math.log2(max(height, width) / BASE_GRID)))
    strided = [min(BASE_FILTERS * 2**i, MAX_FILTERS) for i in range(halvings)]
    scale = 2**halvings
    return ConvSpec(
        encoder_convs=((BASE_FILTERS, 1), *((filters, 2) for filters in strided), (strided[-1], 1)),
        hidden_units=1024,
        decoder_base=(-(-height // scale), -(-width // scale), strided[-1]),
        decoder_deconvs=((strided[-1], 1), *((filters, 2) for filters in reversed(strided))),
    )


def spec_for(config: LQVAEConfig) -> ConvSpec:
    """The layer sizes of `config.architecture` at `config.image_shape`."""
    return adaptive_spec(config.image_shape) if config.architecture == ADAPTIVE else SPECS[config.architecture]


def _conv_init():
    return keras.initializers.TruncatedNormal(stddev=INIT_STDDEV)


def _dense_init():
    return keras.initializers.RandomNormal(stddev=INIT_STDDEV)


def _scaled(units: int, width: float) -> int:
    return max(1, round(units * width))


def build_encoder(config: LQVAEConfig, name: str = "encoder") -> keras.Model:
    """`f_theta`: images in [-1, 1] -> (mu, log_var), each (batch, latent_dim)."""
    spec = spec_for(config)
    width = config.width
    images = keras.Input(shape=config.image_shape, name="images")
    h = images
    for i, (filters, stride) in enumerate(spec.encoder_convs):
        h = keras.layers.Conv2D(
            _scaled(filters, width),
            spec.kernel_size,
            strides=stride,
            padding="same",
            kernel_initializer=_conv_init(),
            name=f"conv{i + 1}",
        )(h)
        h = keras.layers.LeakyReLU(LEAKY_SLOPE)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(_scaled(spec.hidden_units, width), kernel_initializer=_dense_init(), name="fc")(h)
    h = keras.layers.LeakyReLU(LEAKY_SLOPE)(h)
    mean = keras.layers.Dense(config.latent_dim, kernel_initializer=_dense_init(), name="mu")(h)
    log_var = keras.layers.Dense(config.latent_dim, kernel_initializer=_dense_init(), name="log_var")(h)
    return keras.Model(images, [mean, log_var], name=name)


def build_decoder(config: LQVAEConfig, name: str = "decoder") -> keras.Model:
    """A decoder: code symbols (batch, latent_dim) -> images in [-1, 1] (tanh)."""
    spec = spec_for(config)
    width = config.width
    codes = keras.Input(shape=(config.latent_dim,), name="codes")
    h = keras.layers.Dense(_scaled(spec.hidden_units, width), kernel_initializer=_dense_init(), name="fc1")(codes)
    h = keras.layers.LeakyReLU(LEAKY_SLOPE)(h)
    base = (*spec.decoder_base[:2], _scaled(spec.decoder_base[2], width))
    h = keras.layers.Dense(base[0] * base[1] * base[2], kernel_initializer=_dense_init(), name="fc2")(h)
    h = keras.layers.LeakyReLU(LEAKY_SLOPE)(h)
    h = keras.layers.Reshape(base)(h)
    for i, (filters, stride) in enumerate(spec.decoder_deconvs):
        h = keras.layers.Conv2DTranspose(
            _scaled(filters, width),
            spec.kernel_size,
            strides=stride,
            padding="same",
            kernel_initializer=_dense_init(),
            name=f"deconv{i + 1}",
        )(h)
        h = keras.layers.LeakyReLU(LEAKY_SLOPE)(h)
    h = keras.layers.Conv2DTranspose(
        config.image_shape[-1],
        spec.kernel_size,
        padding="same",
        kernel_initializer=_dense_init(),
        name="deconv_out",
    )(h)
    strides = math.prod(stride for _, stride in spec.decoder_deconvs)
    extra = (base[0] * strides - config.image_shape[0], base[1] * strides - config.image_shape[1])
    if any(extra):  # `conv` on a size the strides do not divide: drop the surplus bottom rows, right columns
        h = keras.layers.Cropping2D(((0, extra[0]), (0, extra[1])), name="crop")(h)
    images = keras.layers.Activation("tanh")(h)
    return keras.Model(codes, images, name=name)
