import dataclasses
import re

import pytest

from lqvae_tf.config import PRESETS, LQVAEConfig, config_from_settings, preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_through_json(name):
    config = preset(name)
    assert LQVAEConfig.from_json(config.to_json()) == config
    assert LQVAEConfig.from_dict(config.to_dict()) == config


def test_paper_preset_is_the_authors_script():
    config = preset("paper")
    assert config.value_range == (-1.0, 1.0)
    assert (config.latent_dim, config.width, config.architecture) == (64, 1.0, "conv28")
    assert (config.quantizer, config.band_threshold) == ("band", 0.1)
    assert (config.soft_form, config.soft_sharpness) == ("softsign", 500.0)
    assert config.sample_noise_scale == pytest.approx(0.05)
    assert (config.lipschitz_k, config.penalty_estimator) == (0.1, "sum")
    assert (config.kl_weight, config.reconstruction_weight, config.penalty_weight) == (1.0, 10.0, 10.0)
    assert (config.learning_rate, config.lr_decay_rate, config.lr_decay_steps) == (3e-4, 0.98, 10_000)
    assert config.batch_size == 64


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"quantizer": "band", "bits_per_unit": 2}, "one bit per unit"),
        ({"architecture": "conv64"}, "takes (64, 64) images"),
        ({"lipschitz_k": -0.1}, "lipschitz_k must be >= 0"),
        ({"latent_dim": 0}, "latent_dim must be >= 1"),
        ({"value_range": (1.0, 0.0)}, "low < high"),
        ({"penalty_estimator": "exact"}, "penalty_estimator must be one of"),
        ({"soft_sharpness_final": 0.0}, "soft_sharpness_final must be > 0"),
    ],
)
def test_impossible_settings_are_rejected_by_name(changes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        dataclasses.replace(preset("fashion_mnist"), **changes)


def test_unknown_fields_are_an_error_not_dropped():
    data = preset("paper").to_dict()
    data["latent_dims"] = 32
    with pytest.raises(ValueError, match="latent_dims"):
        LQVAEConfig.from_dict(data)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="fashion_mnist"):
        preset("imagenet")


def test_config_from_settings_applies_the_overrides_then_the_changes():
    settings = {"preset": "fashion_mnist", "overrides": {"latent_dim": 32, "seed": 3}}
    config = config_from_settings(settings, seed=9)
    assert (config.latent_dim, config.seed) == (32, 9)
    assert config.width == preset("fashion_mnist").width  # what no override names is the preset's
    assert config_from_settings({"preset": "paper"}) == preset("paper")
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        config_from_settings({"preset": "nope"})
    with pytest.raises(ValueError, match="latent_dim"):
        config_from_settings({"preset": "paper", "overrides": {"latent_dim": 0}})
