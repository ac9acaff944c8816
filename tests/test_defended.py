"""`DefendedClassifier`: the purifier then the classifier, saved as one `.keras` and loaded back."""

import subprocess
import sys

import keras
import numpy as np
import pytest

from lqvae_tf import LQVAE, DefendedClassifier

from conftest import tiny_config


@pytest.fixture(scope="module")
def parts(fmnist_images):
    keras.utils.set_random_seed(7)
    purifier = LQVAE(tiny_config())
    purifier.compile()
    purifier.fit(fmnist_images[:64], batch_size=32, epochs=1, verbose=0)
    classifier = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]
    )
    return purifier, classifier


def test_predict_is_the_classifiers_answer_on_purified_images(parts, fmnist_images):
    purifier, classifier = parts
    x = fmnist_images[:8]
    expected = classifier.predict(purifier.purify(x), verbose=0)
    np.testing.assert_allclose(DefendedClassifier(purifier, classifier).predict(x, verbose=0), expected, atol=1e-5)


def test_a_saved_defended_model_loads_in_a_fresh_process_with_three_lines(parts, fmnist_images, tmp_path):
    purifier, classifier = parts
    x = fmnist_images[:8]
    path = tmp_path / "defended.keras"
    DefendedClassifier(purifier, classifier).save(path)
    np.save(tmp_path / "x.npy", x)
    # The three lines a Keras user writes (docs/GUIDE.md), in a process that built nothing itself.
    script = (
        "import keras, numpy as np, lqvae_tf\n"
        f"model = keras.models.load_model({str(path)!r})\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, model.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0))\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    expected = classifier.predict(purifier.purify(x), verbose=0)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-5)


def test_a_classifier_of_another_image_shape_is_refused_by_name(parts):
    purifier, _ = parts
    other = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
    with pytest.raises(ValueError, match=r"takes images of shape \(32, 32, 3\)"):
        DefendedClassifier(purifier, other)
