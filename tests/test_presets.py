"""Trained purifiers shipped in the package: `LQVAE.from_preset("mnist")` and `("fashion_mnist")`."""

from __future__ import annotations

import numpy as np
import pytest

from lqvae_tf import LQVAE, PRESETS, preset
from lqvae_tf.data import load_idx_arrays
from lqvae_tf.presets import FILTER_FIELDS, preset_metrics, trained_config, trained_presets

IMAGES = 32  # test images each check purifies


@pytest.fixture(scope="module")
def test_images(fmnist_test_arrays, mnist_dir) -> dict[str, np.ndarray]:
    """The first test images of each dataset with a trained preset, as float32 in [0, 1]."""
    mnist, _ = load_idx_arrays(mnist_dir, "test")
    arrays = {"fashion_mnist": fmnist_test_arrays[0], "mnist": mnist}
    return {name: images[:IMAGES].reshape(-1, 28, 28, 1).astype(np.float32) / 255.0 for name, images in arrays.items()}


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.square(a - b)))


def no_network(*args, **kwargs):
    raise OSError("network disabled by the test")


def test_mnist_and_fashion_mnist_ship_trained_weights():
    assert trained_presets() == ("fashion_mnist", "mnist")
    assert PRESETS["mnist"] is not PRESETS["fashion_mnist"]  # MNIST has its own entry, no alias


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist"])
def test_from_preset_loads_offline_and_purifies_better_than_untrained(name, test_images, monkeypatch):
    monkeypatch.setattr("socket.create_connection", no_network)
    images = test_images[name]
    model = LQVAE.from_preset(name)
    untrained = LQVAE.from_preset(name, load_weights=False)
    assert model.config == untrained.config == preset(name)

    purified = model.purify(images)
    assert purified.shape == images.shape and purified.dtype == np.float32
    assert purified.min() >= 0.0 and purified.max() <= 1.0
    error, untrained_error = mse(purified, images), mse(untrained.purify(images), images)
    assert error < 0.5 * untrained_error
    # What ships beside the weights describes them: the same error within sampling noise.
    measured = preset_metrics(name)
    assert measured["reconstruction_mse"]["trained"] == pytest.approx(error, rel=0.5)
    assert measured["clean"]["A"]["behind_filter"]["n"] == measured["test_images"] >= 1000
    # Algorithm 1's Decoder2 starts as a copy of Decoder1, so fine-tuning starts as training does.
    for soft, hard in zip(model.decoder_soft.get_weights(), model.decoder_hard.get_weights()):
        np.testing.assert_array_equal(soft, hard)


def test_untrained_path_gives_random_weights_of_the_same_networks():
    trained = LQVAE.from_preset("mnist").encoder.get_layer("conv1").kernel.numpy()
    untrained = LQVAE.from_preset("mnist", load_weights=False).encoder.get_layer("conv1").kernel.numpy()
    assert trained.shape == untrained.shape
    assert not np.allclose(trained, untrained)
    assert abs(untrained.mean()) < 0.005 and 0.01 < untrained.std() < 0.025  # the init's stddev 0.02


def test_training_settings_may_change_but_not_the_filter():
    tuned = LQVAE.from_preset("fashion_mnist", epochs=1, learning_rate=1e-4, adversarial=None).config
    assert (tuned.epochs, tuned.adversarial) == (1, None)
    # The preset retrains adversarially after 2 clean epochs: a shorter run must say how it retrains.
    with pytest.raises(ValueError, match=r"clean_epochs \(2\) must be below epochs \(1\)"):
        LQVAE.from_preset("fashion_mnist", epochs=1)
    assert "width" in FILTER_FIELDS
    with pytest.raises(ValueError, match="preset 'mnist'.s weights were trained with other width \\(width=0.5\\)"):
        LQVAE.from_preset("mnist", width=0.25)
    assert LQVAE.from_preset("mnist", load_weights=False, width=0.25).config.width == 0.25


def test_unknown_presets_and_presets_without_weights_are_refused_by_name():
    names = (
        r"\['celeb_a', 'celeb_a_guided', 'fashion_mnist', 'fashion_mnist_guided', 'mnist', 'mnist_guided', 'paper'\]"
    )
    with pytest.raises(ValueError, match=rf"unknown preset 'svhn'; choose one of {names}"):
        LQVAE.from_preset("svhn")
    # The guided default ships no weights (it is best trained with the classifier it protects).
    with pytest.raises(ValueError, match=r"no trained weights ship for preset 'fashion_mnist_guided'"):
        LQVAE.from_preset("fashion_mnist_guided")
    with pytest.raises(
        ValueError, match=r"no trained weights ship for preset 'celeb_a' \(trained presets: fashion_mnist"
    ):
        LQVAE.from_preset("celeb_a")
    assert LQVAE.from_preset("celeb_a", load_weights=False, width=0.125).config.image_shape == (64, 64, 3)


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist"])
def test_each_preset_is_measured_in_front_of_its_guides_and_a_held_out_classifier(name):
    measured = preset_metrics(name)
    assert measured["guides"] == ["A", "B", "C"] and measured["held_out"] == ["R", "K"]
    assert set(measured["clean"]) == {"A", "B", "C", "R", "K"} and set(measured["adaptive_on"]) == {"A", "R", "K"}
    for cells in measured["clean"].values():
        assert cells["cost"] == pytest.approx(cells["alone"]["accuracy"] - cells["behind_filter"]["accuracy"])
        assert cells["behind_base"]["n"] == cells["behind_filter"]["n"] == measured["test_images"]
    attacks = measured["adaptive"]["attacks"]
    assert (attacks["eps"], attacks["steps"], attacks["restarts"], attacks["square_queries"]) == (0.1, 40, 2, 1000)
    for classifier in measured["adaptive_on"]:
        cells = measured["adaptive"][classifier]
        assert cells["adaptive"]["n"] == attacks["n"] >= 200
        assert cells["adaptive"]["correct"] <= min(p["correct"] for p in cells["pgd"].values())
    # The shipped config is the fine-tune's: guided, retrained end to end, no scratch path of the base.
    config = trained_config(name)
    assert config.guidance is not None and config.adversarial.mode == "end_to_end" and config.init_from is None
