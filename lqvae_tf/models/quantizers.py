"""The quantizers `H` (hard, used at inference) and `H~` (its differentiable approximation).

Two families, both chosen by `LQVAEConfig.quantizer`:

* "band" (the authors' script): `H(z) = +1 if z^2 < t^2 else -1`, i.e. `sign(t^2 - z^2)` with the
  measure-zero tie sent to -1 so that only code symbols come out; `H~(z) = s(a * (t^2 - z^2))`.
* "levels": `2**bits` code symbols evenly spaced in [-1, 1]; `H` counts the thresholds (evenly
  spaced in [-r, r]) that `z` exceeds, `H~` counts them softly. One bit gives `z > 0`.

`s` is softsign or tanh and `a` the sharpness (inverse temperature): `H~ -> H` as `a` grows.
`H` is built from comparisons, so no gradient reaches `z` through it; that is why Decoder2 and
`H~` exist, and why a white-box attack must use BPDA rather than trust a zero gradient.
"""

from __future__ import annotations

import keras
from keras import ops

PACKAGE = "lqvae_tf"


def _squash(u, form: str):
    """A sigmoid-shaped map from R onto (-1, 1): softsign (the paper's) or tanh."""
    return ops.softsign(u) if form == "softsign" else ops.tanh(u)


def level_thresholds(bits_per_unit: int, level_range: float) -> list[float]:
    """The 2**bits - 1 decision thresholds of the "levels" quantizer, evenly spaced in (-r, r)."""
    levels = 2**bits_per_unit
    return [-level_range + 2.0 * level_range * (k + 1) / levels for k in range(levels - 1)]


def quantize_hard(z, quantizer: str, band_threshold: float, bits_per_unit: int, level_range: float):
    """`H(z)`: the code symbol of every latent unit, in [-1, 1]."""
    if quantizer == "band":
        return ops.where(ops.square(z) < band_threshold**2, 1.0, -1.0)
    thresholds = level_thresholds(bits_per_unit, level_range)
    step = 2.0 / len(thresholds)
    count = sum(ops.cast(z > c, z.dtype) for c in thresholds)
    return -1.0 + step * count


def quantize_soft(
    z, quantizer: str, band_threshold: float, bits_per_unit: int, level_range: float, form: str, sharpness
):
    """`H~(z)`: a smooth approximation of `quantize_hard` with the given sharpness."""
    if quantizer == "band":
        return _squash(sharpness * (band_threshold**2 - ops.square(z)), form)
    thresholds = level_thresholds(bits_per_unit, level_range)
    step = 2.0 / len(thresholds)
    # Each threshold contributes a soft step from 0 to 1: (squash + 1) / 2.
    count = sum(0.5 * (_squash(sharpness * (z - c), form) + 1.0) for c in thresholds)
    return -1.0 + step * count


@keras.saving.register_keras_serializable(package=PACKAGE)
class HardQuantizer(keras.layers.Layer):
    """`H`: maps latent values to code symbols; has no gradient.

    Args:
        quantizer: "band" or "levels" (see module docstring).
        band_threshold: `t` of the band quantizer.
        bits_per_unit: bits per unit of the levels quantizer.
        level_range: threshold span of the levels quantizer.

    Example:
        >>> HardQuantizer("band", 0.1)(np.array([[0.0, 0.5]]))  # [[1., -1.]]
    """

    def __init__(
        self,
        quantizer: str = "band",
        band_threshold: float = 0.1,
        bits_per_unit: int = 1,
        level_range: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.quantizer = quantizer
        self.band_threshold = band_threshold
        self.bits_per_unit = bits_per_unit
        self.level_range = level_range

    def call(self, z):
        return quantize_hard(z, self.quantizer, self.band_threshold, self.bits_per_unit, self.level_range)

    def get_config(self):
        return {
            **super().get_config(),
            "quantizer": self.quantizer,
            "band_threshold": self.band_threshold,
            "bits_per_unit": self.bits_per_unit,
            "level_range": self.level_range,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class SoftQuantizer(HardQuantizer):
    """`H~`: the differentiable stand-in for `H` that trains the encoder through Decoder2.

    The sharpness is a non-trainable variable so that `SharpnessSchedule` can anneal it during
    `fit` and the value reached is saved with the model.

    Args:
        form: "softsign" (the paper's) or "tanh".
        sharpness: inverse temperature; larger is closer to `H`.
        **kwargs: as `HardQuantizer`.
    """

    def __init__(
        self,
        quantizer: str = "band",
        band_threshold: float = 0.1,
        bits_per_unit: int = 1,
        level_range: float = 1.0,
        form: str = "softsign",
        sharpness: float = 500.0,
        **kwargs,
    ):
        super().__init__(quantizer, band_threshold, bits_per_unit, level_range, **kwargs)
        self.form = form
        self.initial_sharpness = float(sharpness)
        self.sharpness = self.add_weight(
            name="sharpness",
            shape=(),
            trainable=False,
            initializer=keras.initializers.Constant(self.initial_sharpness),
        )

    def call(self, z):
        return quantize_soft(
            z,
            self.quantizer,
            self.band_threshold,
            self.bits_per_unit,
            self.level_range,
            self.form,
            ops.cast(self.sharpness, z.dtype),
        )

    def get_config(self):
        return {**super().get_config(), "form": self.form, "sharpness": self.initial_sharpness}
