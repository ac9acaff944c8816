"""Starting a purifier's training from a trained one (`LQVAEConfig.init_from`), and telling a
collapsed code from a working one.

Why: adversarial retraining from random weights collapses the code (the band quantizer starts
with every unit inside the band, every bit +1, and the perturbed batches never let it leave:
docs/frontier/fashion_mnist_adversarial). Fine-tuning a purifier that already reconstructs, as
the issue's probe did, starts from a code that carries the image.
"""

from __future__ import annotations

import os
import warnings

import keras
import numpy as np

from lqvae_tf.config import LQVAEConfig

# The fields that fix the networks' weight shapes; everything else (quantizer thresholds, losses,
# training settings, adversarial retraining) may differ between the source and the new run.
SHAPE_FIELDS = ("image_shape", "architecture", "width", "latent_dim")
PARTS = ("encoder", "decoder_hard", "decoder_soft")
# A code is collapsed when this few of a validation batch's images get distinct codes (one code
# for every input is 1 / batch); a working purifier gives nearly every image its own code.
COLLAPSED_BELOW = 0.05


def load_source(init_from: str):
    """The trained purifier `init_from` names: a shipped preset's name or a `.keras` file.

    Raises:
        FileNotFoundError: neither a trained preset nor an existing file (naming both choices).
        ValueError: the file holds a model that is not an LQVAE.
    """
    from lqvae_tf.models import LQVAE
    from lqvae_tf.presets import trained_presets

    if init_from in trained_presets():
        return LQVAE.from_preset(init_from)
    if not os.path.isfile(init_from):
        raise FileNotFoundError(
            f"init_from {init_from!r} is neither a .keras file nor a trained preset ({', '.join(trained_presets())})"
        )
    source = keras.models.load_model(init_from)
    if not isinstance(source, LQVAE):
        raise ValueError(f"init_from {init_from!r} holds a {type(source).__name__}, not an LQVAE purifier")
    return source


def check_compatible(source_config: LQVAEConfig, config: LQVAEConfig, init_from: str) -> None:
    """Refuses a source whose networks have other shapes, naming each differing field."""
    changed = [field for field in SHAPE_FIELDS if getattr(source_config, field) != getattr(config, field)]
    if changed:
        details = ", ".join(
            f"{field}={getattr(source_config, field)!r} there, {getattr(config, field)!r} here" for field in changed
        )
        raise ValueError(f"init_from {init_from!r} has networks of another shape: {details}")


def checked_source(config: LQVAEConfig):
    """The trained purifier `config.init_from` names, checked against `config` (None without one).

    Raises:
        FileNotFoundError / ValueError: see `load_source` and `check_compatible`.
    """
    if config.init_from is None:
        return None
    source = load_source(config.init_from)
    check_compatible(source.config, config, config.init_from)
    return source


def warm_start(model, init_from: str, source=None) -> None:
    """Copies the encoder and both decoders of the purifier `init_from` into `model`.

    The optimizers start afresh (the run's own learning-rate schedule); the model's own seeds
    are kept, so the run stays reproducible from its config. `source`: that purifier already
    loaded by `checked_source` (it is checked against `model` again, not read again).

    Raises:
        FileNotFoundError / ValueError: see `load_source` and `check_compatible`.
    """
    if source is None:
        source = checked_source(model.config.replace(init_from=init_from))
    else:
        check_compatible(source.config, model.config, init_from)
    for part in PARTS:
        getattr(model, part).set_weights(getattr(source, part).get_weights())


def distinct_code_fraction(model, images: np.ndarray) -> float:
    """The number of distinct codes `H(mu(x))` among `images`, divided by their number (1.0: every
    image its own code; 1 / len(images): one code for all, a collapsed filter)."""
    codes = model.codes(images)
    return len({row.tobytes() for row in np.asarray(codes, np.float32)}) / len(codes)


class CollapsedCodeWarning(UserWarning):
    """A trained purifier maps (almost) every input to the same code."""


class CodeCollapseCheck(keras.callbacks.Callback):
    """Logs `val_distinct_codes` each epoch (see `distinct_code_fraction`) and warns at the end of
    training when the code has collapsed (below `COLLAPSED_BELOW`): such a filter maps every
    input to one image and only looks robust.

    Args:
        images: a fixed batch of validation images in the model's value range (a few hundred).
        threshold: the fraction below which the code counts as collapsed.
    """

    def __init__(self, images: np.ndarray, threshold: float = COLLAPSED_BELOW):
        super().__init__()
        self.images = np.asarray(images, dtype=np.float32)
        self.threshold = float(threshold)
        self.last: float | None = None

    def on_epoch_end(self, epoch, logs=None):
        self.last = distinct_code_fraction(self.model, self.images)
        if logs is not None:
            logs["val_distinct_codes"] = self.last

    @property
    def collapsed(self) -> bool:
        return self.last is not None and self.last < self.threshold

    def on_train_end(self, logs=None):
        if self.collapsed:
            warnings.warn(
                f"the purifier's code collapsed: {round(self.last * len(self.images))} distinct codes among "
                f"{len(self.images)} validation images (fraction {self.last:.3f}, below {self.threshold}); it "
                "maps almost every input to one image. Start from a trained purifier (init_from) or train on "
                "clean images first.",
                CollapsedCodeWarning,
                stacklevel=2,
            )
