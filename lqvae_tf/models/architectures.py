"""Encoder and decoder networks per image size, as functional Keras models.

`conv28` is the authors' network for 28x28x1 (Train_LQ_VAE.py): encoder conv 3x3 64(s1)-64(s2)-
128(s2)-128(s1), LeakyReLU 0.2, fc 1024, then linear mu and log sigma^2; decoder fc 1024, fc
7*7*128, deconv 3x3 128(s1)-128(s2)-64(s2)-C(s1), tanh; weights drawn with stddev 0.02.
`conv64` is the same pattern one stride deeper for 64x64x3 (the paper gives no CelebA network).
`LQVAEConfig.width` scales every filter count and hidden size (1.0 is the authors' network).
"""

from __future__ import annotations

import dataclasses

import keras

from lqvae_tf.config import LQVAEConfig

LEAKY_SLOPE = 0.2  # the script's lrelu(alpha=0.2)
INIT_STDDEV = 0.02  # the script's initializers


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


def _conv_init():
    return keras.initializers.TruncatedNormal(stddev=INIT_STDDEV)


def _dense_init():
    return keras.initializers.RandomNormal(stddev=INIT_STDDEV)


def _scaled(units: int, width: float) -> int:
    return max(1, round(units * width))


def build_encoder(config: LQVAEConfig, name: str = "encoder") -> keras.Model:
    """`f_theta`: images in [-1, 1] -> (mu, log_var), each (batch, latent_dim)."""
    spec = SPECS[config.architecture]
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
    spec = SPECS[config.architecture]
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
    images = keras.layers.Activation("tanh")(h)
    return keras.Model(codes, images, name=name)
