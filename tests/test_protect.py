"""`lqvae protect` / `lqvae_tf.protect`: the shipped filter fine-tuned for a classifier it never saw, and its report."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import lqvae_tf
from lqvae_tf import LQVAE
from lqvae_tf.cli.main import main
from lqvae_tf.protection import DEFENDED_FILE, PURIFIER_FILE, protect
from lqvae_tf.serving.export import export_purifier
from lqvae_tf.stats import accuracy_of

IMAGES, EVAL_IMAGES = 64, 8  # training images the fine-tune sees, test images the report measures


def unseen_classifier(images: np.ndarray, labels: np.ndarray) -> keras.Model:
    """An MLP with a final softmax: an architecture no training run of the project uses."""
    keras.utils.set_random_seed(11)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(images, labels, epochs=3, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def protected(tmp_path_factory, fmnist_test_arrays):
    """`lqvae protect` run once on a tiny slice, with the classifier and the test images it measured."""
    images, labels = fmnist_test_arrays
    x = images[:512].reshape(-1, 28, 28, 1).astype(np.float32) / 255.0
    root = tmp_path_factory.mktemp("protect")
    path = str(root / "mine.keras")
    unseen_classifier(x, labels[:512].astype(np.int64)).save(path)
    out = root / "out"
    args = ["protect", "--classifier", path, "--out", str(out), "--images", str(IMAGES)]
    args += ["--eval-images", str(EVAL_IMAGES), "--verbose", "0"]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    return {"path": path, "out": out, "report": report, "args": args, "x": x[:EVAL_IMAGES], "y": labels[:EVAL_IMAGES]}


def test_protect_writes_the_purifier_the_defended_model_and_a_report(protected):
    out, report = protected["out"], protected["report"]
    assert {PURIFIER_FILE, DEFENDED_FILE, "report.md", "report.json"} <= set(os.listdir(out))
    # Warm-started from the shipped preset, guided by the classifier and retrained against PGD through it at once.
    tune = report["fine_tune"]
    assert report["preset"] == "fashion_mnist" and tune["config"]["init_from"] == "fashion_mnist"
    assert tune["config"]["adversarial"]["mode"] == "end_to_end" and "clean_epochs" not in tune["config"]["adversarial"]
    assert tune["config"]["guidance"]["classifier"] == protected["path"]
    assert {"guide_soft", "loss_adv", "code_flip"} <= set(tune["final"]) and tune["seconds"] > 0
    purifier = keras.models.load_model(out / PURIFIER_FILE)
    shipped = LQVAE.from_preset("fashion_mnist")
    assert not np.allclose(purifier.encoder.get_weights()[0], shipped.encoder.get_weights()[0])  # it did train


def test_the_reports_numbers_are_those_of_the_files_it_names(protected):
    out, report, x, y = protected["out"], protected["report"], protected["x"], protected["y"]
    classifier = keras.models.load_model(protected["path"])
    purifier = keras.models.load_model(out / PURIFIER_FILE)
    clean = report["clean"]
    assert clean["alone"] == accuracy_of(classifier.predict(x, verbose=0), y).to_dict()
    purified = classifier.predict(purifier.purify(x), verbose=0)
    assert clean["behind_filter"] == accuracy_of(purified, y).to_dict()
    assert clean["cost_points"] == pytest.approx(clean["alone"]["accuracy"] - clean["behind_filter"]["accuracy"])
    (measured,) = report["robustness"].values()  # Fashion-MNIST: eps 0.1 only
    assert report["attacks"]["eps"] == [0.1] and report["attacks"]["steps"] == 40 and report["attacks"]["restarts"] == 2
    # Per image the worst of three attacks: no more than any one of them, and no more than clean.
    for gradient in ("bpda", "soft", "identity"):
        assert measured["adaptive"]["correct"] <= measured["pgd"][gradient]["correct"]
    assert measured["adaptive"]["correct"] <= clean["behind_filter"]["correct"]
    assert measured["worst"]["correct"] <= min(measured["adaptive"]["correct"], measured["square"]["correct"])
    assert measured["square_beats_gradient"] == (measured["square"]["correct"] < measured["adaptive"]["correct"])
    page = (out / "report.md").read_text()
    low, high = measured["adaptive"]["ci95"]
    assert f"**{measured['adaptive']['accuracy']:.1f} [{low:.1f}, {high:.1f}]**" in page
    assert "lqvae protect --classifier" in page and "do not edit" in page.splitlines()[0]


def test_the_defended_model_loads_predicts_behind_the_filter_and_exports(protected, tmp_path):
    out, x = protected["out"], protected["x"]
    classifier = keras.models.load_model(protected["path"])
    purifier = keras.models.load_model(out / PURIFIER_FILE)
    expected = classifier.predict(purifier.purify(x), verbose=0)
    defended = keras.models.load_model(out / DEFENDED_FILE)
    np.testing.assert_allclose(defended.predict(x, verbose=0), expected, atol=1e-5)
    exported = export_purifier(str(out / DEFENDED_FILE), str(tmp_path / "models"), "mine", warmup=False)
    scores = tf.saved_model.load(exported).signatures["classify"](images=tf.constant(x))["scores"]
    np.testing.assert_allclose(scores.numpy(), expected, atol=1e-5)


def test_the_python_api_is_the_same_and_a_rerun_reuses_the_finished_fine_tune(protected):
    assert lqvae_tf.protect is protect
    out = protected["out"]
    model_file = out / "training" / "purifier.keras"
    before = os.path.getmtime(model_file)
    again = lqvae_tf.protect(protected["path"], str(out), images=IMAGES, eval_images=EVAL_IMAGES, verbose=0)
    assert os.path.getmtime(model_file) == before  # not trained again
    assert again["fine_tune"]["seconds"] == protected["report"]["fine_tune"]["seconds"]
    assert again["clean"] == protected["report"]["clean"] and again["robustness"] == protected["report"]["robustness"]
    # Another number of training images is another fine-tune: trained again, not the old one reused.
    other = lqvae_tf.protect(protected["path"], str(out), images=IMAGES // 2, eval_images=EVAL_IMAGES, verbose=0)
    assert os.path.getmtime(model_file) > before and other["fine_tune"]["images"] == IMAGES // 2


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--classifier": "missing.keras"}, "classifier file missing.keras does not exist"),
        ({"--classifier": "COLOUR"}, "takes images of shape (32, 32, 3), the purifier's are (28, 28, 1)"),
        ({"--images": "-1"}, "--images must be >= 0"),
        ({"--preset": "paper"}, "no trained weights ship for preset 'paper'"),
        ({"--eval-images": "0"}, "eval_images must be >= 1"),
    ],
)
def test_bad_input_is_refused_by_name_before_anything_is_written(tmp_path, capsys, change, message):
    colour = tmp_path / "colour.keras"
    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)]).save(colour)
    flags = {"--classifier": str(colour), "--out": str(tmp_path / "out"), "--images": "64"}
    flags.update({key: str(colour) if value == "COLOUR" else value for key, value in change.items()})
    args = ["protect", *[part for pair in flags.items() for part in pair]]
    if "--classifier" not in change:  # a classifier that fits, so that the flag under test is what fails
        fits = tmp_path / "fits.keras"
        keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]).save(fits)
        args[args.index("--classifier") + 1] = str(fits)
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("weight", [None, 10.0])
def test_the_fine_tune_keeps_the_guidance_weight_the_preset_was_tuned_with(monkeypatch, weight):
    """A preset fine-tuned at a heavier guidance (make_presets --guidance-weight) keeps that balance
    in protect's fine-tune; one trained without guidance gets the guided recipe's."""
    import dataclasses
    import importlib

    from lqvae_tf.config import DEFAULT_GUIDANCE

    module = importlib.import_module("lqvae_tf.protection.protect")  # the package exports the function

    shipped = module.trained_config("fashion_mnist")
    guidance = None if weight is None else dataclasses.replace(DEFAULT_GUIDANCE, weight=weight)
    monkeypatch.setattr(module, "trained_config", lambda name: shipped.replace(guidance=guidance))
    config = module.fine_tune_config("fashion_mnist", "mine.keras")
    assert config.guidance.weight == (DEFAULT_GUIDANCE.weight if weight is None else weight)
    assert config.guidance.classifier == "mine.keras" == config.adversarial.classifier
