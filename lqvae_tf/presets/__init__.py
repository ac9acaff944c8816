"""Trained purifiers that ship with the package: the weights behind `LQVAE.from_preset(name)`.

Each trained preset is a folder `lqvae_tf/presets/<name>/` (package data, read offline) holding
what the filter `g_phi(H(mu(x)))` needs and nothing else:

    encoder.weights.h5        `f_theta`'s weights
    decoder_hard.weights.h5   Decoder1 `g_phi`'s weights (the inference decoder)
    config.json               the LQVAEConfig the weights were trained with
    metrics.json, README.md   the measured metrics and the command that made them

No optimizer state and no `decoder_soft` (Decoder2 only trains `H~`'s path; a model loaded from a
preset starts it as a copy of Decoder1, as Algorithm 1 does). `scripts/make_presets.py` writes
these folders.
"""

from __future__ import annotations

import json
import os

from lqvae_tf.config import PRESETS, LQVAEConfig

PRESET_ROOT = os.path.dirname(os.path.abspath(__file__))
WEIGHT_FILES = {"encoder": "encoder.weights.h5", "decoder_hard": "decoder_hard.weights.h5"}
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
# The fields that define the filter's networks and what its weights mean; the others (epochs,
# learning rate, loss weights, seed...) only say how training goes on, and may be overridden.
FILTER_FIELDS = (
    "image_shape",
    "architecture",
    "width",
    "value_range",
    "latent_dim",
    "quantizer",
    "band_threshold",
    "bits_per_unit",
    "level_range",
)


def preset_dir(name: str) -> str:
    """The folder of preset `name`'s shipped weights (it may not exist)."""
    return os.path.join(PRESET_ROOT, name)


def trained_presets() -> tuple[str, ...]:
    """The presets whose trained weights ship with the package, sorted."""
    return tuple(
        sorted(
            name
            for name in PRESETS
            if all(os.path.isfile(os.path.join(preset_dir(name), f)) for f in WEIGHT_FILES.values())
        )
    )


def trained_config(name: str) -> LQVAEConfig:
    """The configuration preset `name`'s shipped weights were trained with.

    Raises:
        ValueError: no trained weights ship for `name` (the message lists those that do).
    """
    if name not in trained_presets():
        raise ValueError(
            f"no trained weights ship for preset {name!r} (trained presets: {', '.join(trained_presets())}); "
            f"LQVAE.from_preset({name!r}, load_weights=False) builds an untrained model from its config"
        )
    with open(os.path.join(preset_dir(name), CONFIG_FILE), encoding="utf-8") as handle:
        return LQVAEConfig.from_json(handle.read())


def check_filter_fields(name: str, trained: LQVAEConfig, wanted: LQVAEConfig) -> None:
    """Refuses a configuration whose networks differ from those the preset's weights fit.

    Raises:
        ValueError: naming the fields in `FILTER_FIELDS` that differ.
    """
    changed = [field for field in FILTER_FIELDS if getattr(trained, field) != getattr(wanted, field)]
    if changed:
        raise ValueError(
            f"preset {name!r}'s weights were trained with other {', '.join(changed)} "
            f"({', '.join(f'{field}={getattr(trained, field)!r}' for field in changed)}); "
            f"override only training settings, or pass load_weights=False for an untrained model"
        )


def save_filter_weights(model, folder: str) -> dict[str, str]:
    """Writes the filter's weights (`WEIGHT_FILES`) and config into `folder`; returns the paths by part."""
    from lqvae_tf.atomic import atomic_path, write_text

    os.makedirs(folder, exist_ok=True)
    paths = {}
    for part, filename in WEIGHT_FILES.items():
        paths[part] = os.path.join(folder, filename)
        with atomic_path(paths[part]) as temporary:
            getattr(model, part).save_weights(temporary)
    write_text(os.path.join(folder, CONFIG_FILE), model.config.to_json() + "\n")
    return paths


def load_filter_weights(model, name: str) -> None:
    """Loads preset `name`'s shipped weights into `model` (built from a config it fits)."""
    folder = preset_dir(name)
    for part, filename in WEIGHT_FILES.items():
        getattr(model, part).load_weights(os.path.join(folder, filename))
    model.decoder_soft.set_weights(model.decoder_hard.get_weights())  # Algorithm 1, line 1


def preset_metrics(name: str) -> dict:
    """The metrics measured on preset `name`'s weights (`metrics.json` beside them)."""
    trained_config(name)  # refuses presets without weights
    with open(os.path.join(preset_dir(name), METRICS_FILE), encoding="utf-8") as handle:
        return json.load(handle)
