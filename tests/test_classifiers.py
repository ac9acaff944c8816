"""Defense-GAN's classifiers A-E: the layer tables of Table 1, logits out, training and the CLI."""

import argparse
import json
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from lqvae_tf.classifiers import (
    build_classifier,
    build_gender_classifier,
    classifier_filename,
    summary_path,
    train_classifier,
)
from lqvae_tf.classifiers.train import ONE_CLASS_SHARE, save_with_summary, top_class_share
from lqvae_tf.cli import classifiers as classifiers_cli
from lqvae_tf.epoch_record import EpochRecord

# Table 1 as the authors' utils/network_builder.py builds it (kabkabm/defensegan), written out
# here independently of the package's table: (layer type, sizes..., activation). The output layer,
# Dense(num_classes) with no activation (logits), follows each.
HIDDEN_LAYERS = {
    "A": [
        ("Conv2D", 64, 5, 1, "same", "relu"),
        ("Conv2D", 64, 5, 2, "valid", "relu"),
        ("Dropout", 0.25),
        ("Flatten",),
        ("Dense", 128, "relu"),
        ("Dropout", 0.5),
    ],
    "B": [
        ("Dropout", 0.2),
        ("Conv2D", 64, 8, 2, "same", "relu"),
        ("Conv2D", 128, 6, 2, "valid", "relu"),
        ("Conv2D", 128, 5, 1, "valid", "relu"),
        ("Dropout", 0.5),
        ("Flatten",),
    ],
    "C": [
        ("Conv2D", 128, 3, 1, "same", "relu"),
        ("Conv2D", 64, 5, 2, "valid", "relu"),
        ("Dropout", 0.25),
        ("Flatten",),
        ("Dense", 128, "relu"),
        ("Dropout", 0.5),
    ],
    "D": [("Flatten",), ("Dense", 200, "relu"), ("Dropout", 0.5), ("Dense", 200, "relu")],
    "E": [("Flatten",), ("Dense", 200, "relu"), ("Dense", 200, "relu")],
}
TRAIN_LIMIT = 1536  # real Fashion-MNIST training images for the accuracy test
TEST_LIMIT = 500


def layer_table(model: keras.Model) -> list[tuple]:
    """The model's layers after the input, as (type, sizes..., activation) tuples."""
    rows = []
    for layer in model.layers[1:]:
        kind = type(layer).__name__
        if kind == "Conv2D":
            rows.append(
                (kind, layer.filters, *layer.kernel_size[:1], *layer.strides[:1], layer.padding)
                + (layer.get_config()["activation"],)
            )
        elif kind == "Dense":
            rows.append((kind, layer.units, layer.get_config()["activation"]))
        elif kind == "Dropout":
            rows.append((kind, layer.rate))
        else:
            rows.append((kind,))
    return rows


@pytest.mark.parametrize("name", sorted(HIDDEN_LAYERS))
def test_fashion_mnist_classifier_has_table_1_layers_and_outputs_logits(name, fmnist_images):
    model = build_classifier(name, (28, 28, 1), 10)
    assert layer_table(model) == [*HIDDEN_LAYERS[name], ("Dense", 10, "linear")]
    assert model.layers[-1].name == "logits"
    logits = keras.ops.convert_to_numpy(model(fmnist_images[:4], training=False))
    assert logits.shape == (4, 10) and np.all(np.isfinite(logits))
    assert not np.allclose(logits.sum(axis=1), 1.0)  # no softmax at the end


def test_held_out_classifier_k_is_the_keras_documentation_convnet_with_logits(fmnist_images):
    # keras.io/examples/vision/mnist_convnet, its softmax left out: logits like every classifier here.
    model = build_classifier("K", (28, 28, 1), 10)
    assert layer_table(model) == [
        ("Conv2D", 32, 3, 1, "valid", "relu"),
        ("MaxPooling2D",),
        ("Conv2D", 64, 3, 1, "valid", "relu"),
        ("MaxPooling2D",),
        ("Flatten",),
        ("Dropout", 0.5),
        ("Dense", 10, "linear"),
    ]
    assert model.count_params() == 34_826  # the documentation's summary
    logits = keras.ops.convert_to_numpy(model(fmnist_images[:4], training=False))
    assert logits.shape == (4, 10) and not np.allclose(logits.sum(axis=1), 1.0)


@pytest.mark.parametrize("name", ["A", "B", "C"])
def test_gender_classifier_takes_64x64x3_faces_and_outputs_two_logits(name):
    model = build_gender_classifier(name)
    assert model.input_shape == (None, 64, 64, 3)
    assert layer_table(model) == [*HIDDEN_LAYERS[name], ("Dense", 2, "linear")]
    faces = np.random.default_rng(0).uniform(size=(2, 64, 64, 3)).astype(np.float32)
    assert keras.ops.convert_to_numpy(model(faces, training=False)).shape == (2, 2)


def test_unknown_names_and_impossible_shapes_are_refused_clearly():
    with pytest.raises(ValueError, match="unknown classifier 'F'; choose one of A, B, C, D, E"):
        build_classifier("F")
    with pytest.raises(ValueError, match="choose one of A, B, C"):
        build_gender_classifier("D")
    with pytest.raises(ValueError, match="image_shape"):
        build_classifier("A", (28, 28), 10)
    with pytest.raises(ValueError, match="num_classes"):
        build_classifier("E", (28, 28, 1), 1)


def test_train_classifier_refuses_bad_arguments_before_loading_data(tmp_path):
    with pytest.raises(ValueError, match="unknown classifier"):
        train_classifier("Z", "fashion_mnist", str(tmp_path / "z.keras"), epochs=1, batch_size=8)
    with pytest.raises(ValueError, match="unknown dataset"):
        train_classifier("A", "cifar10", str(tmp_path / "a.keras"), epochs=1, batch_size=8)
    with pytest.raises(ValueError, match=r"\.keras"):
        train_classifier("A", "fashion_mnist", str(tmp_path / "a.h5"), epochs=1, batch_size=8)
    assert os.listdir(tmp_path) == []


def test_config_round_trip_and_keras_file_keep_the_model(tmp_path, fmnist_images):
    model = build_classifier("B")
    rebuilt = keras.Model.from_config(model.get_config())
    assert layer_table(rebuilt) == layer_table(model)
    path = str(tmp_path / "b.keras")
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom objects needed
    assert layer_table(loaded) == layer_table(model)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(fmnist_images[:8], training=False)),
        keras.ops.convert_to_numpy(model(fmnist_images[:8], training=False)),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.fixture(scope="module")
def trained_a(tmp_path_factory):
    """Classifier A after one epoch on 1536 real Fashion-MNIST images: (summary, model path)."""
    path = str(tmp_path_factory.mktemp("classifiers") / classifier_filename("A"))
    summary = train_classifier(
        "A",
        "fashion_mnist",
        path,
        epochs=1,
        batch_size=32,
        limit=TRAIN_LIMIT,
        seed=3,
        test_limit=TEST_LIMIT,
        verbose=0,
    )
    return summary, path


def test_short_training_on_real_fashion_mnist_beats_chance_clearly(trained_a):
    summary, _ = trained_a
    assert summary["test_accuracy"] > 0.6  # chance is 0.1; about 0.75-0.8 here


def test_training_saves_the_trained_model_and_its_summary_atomically(trained_a, fmnist_test_arrays):
    summary, path = trained_a
    folder = os.path.dirname(path)
    assert sorted(os.listdir(folder)) == ["classifier_A.json", "classifier_A.keras"]  # no scratch left
    with open(summary_path(path), encoding="utf-8") as handle:
        assert json.load(handle) == summary
    assert (summary["name"], summary["dataset"], summary["epochs"], summary["seed"]) == (
        "A",
        "fashion_mnist",
        1,
        3,
    )
    images, labels = fmnist_test_arrays
    model = keras.models.load_model(path)
    predicted = np.argmax(model.predict(images[:TEST_LIMIT].astype(np.float32) / 255.0, verbose=0), axis=1)
    assert np.mean(predicted == labels[:TEST_LIMIT]) == pytest.approx(summary["test_accuracy"], abs=1e-6)


def test_top_class_share_counts_the_most_frequent_prediction(trained_a, fmnist_test_arrays):
    summary, path = trained_a
    images, _ = fmnist_test_arrays
    model = keras.models.load_model(path)
    predicted = np.argmax(model.predict(images[:TEST_LIMIT].astype(np.float32) / 255.0, verbose=0), axis=1)
    assert summary["test_top_class_share"] == pytest.approx(np.bincount(predicted).max() / TEST_LIMIT)
    assert summary["test_top_class_share"] < ONE_CLASS_SHARE  # a trained classifier answers many classes

    constant = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, kernel_initializer="zeros")])
    constant.layers[-1].bias.assign([0.0, 1.0, 0.0])  # class 1 for every input
    pairs = tf.data.Dataset.from_tensor_slices((np.random.rand(10, 4).astype(np.float32), np.zeros(10, np.int64)))
    assert top_class_share(constant, pairs, batch_size=4) == 1.0
    with pytest.raises(ValueError, match="at least one image"):
        top_class_share(constant, pairs.take(0))


def test_save_with_summary_warns_about_a_collapsed_classifier_and_still_saves_it(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    collapsed = {"name": "A", "dataset": "celeb_a", "test_top_class_share": ONE_CLASS_SHARE}
    with pytest.warns(UserWarning, match=r"classifier A on celeb_a gives one class to 99\.0%"):
        save_with_summary(model, str(tmp_path / "collapsed.keras"), collapsed)
    assert os.path.isfile(tmp_path / "collapsed.keras")
    assert json.loads((tmp_path / "collapsed.json").read_text()) == collapsed

    healthy = dict(collapsed, test_top_class_share=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        save_with_summary(model, str(tmp_path / "healthy.keras"), healthy)
    assert os.path.isfile(tmp_path / "healthy.keras")


def lqvae_parser() -> argparse.ArgumentParser:
    """A stand-in for the `lqvae` parser with only the `classifiers` command registered."""
    parser = argparse.ArgumentParser(prog="lqvae")
    classifiers_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_interrupted_training_resumes_from_its_last_finished_epoch(tmp_path, monkeypatch):
    out, backup = str(tmp_path / classifier_filename("E")), str(tmp_path / "backup")
    settings = dict(epochs=3, batch_size=32, limit=128, seed=2, test_limit=64, verbose=0, backup_dir=backup)
    resume = EpochRecord.on_epoch_begin

    class Interruption(Exception):
        pass

    def interrupt_at_the_third_epoch(self, epoch, logs=None):
        if epoch == 2:
            raise Interruption
        resume(self, epoch, logs)

    with monkeypatch.context() as patch:
        patch.setattr(EpochRecord, "on_epoch_begin", interrupt_at_the_third_epoch)
        with pytest.raises(Interruption):
            train_classifier("E", "fashion_mnist", out, **settings)
    assert not os.path.exists(out) and os.path.isdir(backup)  # nothing saved, two epochs backed up
    summary = train_classifier("E", "fashion_mnist", out, **settings)
    assert summary["earlier_seconds"] > 0 and summary["seconds"] > summary["earlier_seconds"]
    assert not os.path.exists(backup)  # a finished training leaves no state to resume
    trained_steps = int(keras.models.load_model(out).optimizer.iterations)
    assert trained_steps == 3 * 128 // 32  # three epochs in all: none repeated, none lost


def test_cli_train_writes_each_model_and_its_json(tmp_path, capsys):
    out = tmp_path / "classifiers"
    args = lqvae_parser().parse_args(
        ["classifiers", "train", "--dataset", "fashion_mnist", "--names", "e,D", "--epochs", "1"]
        + ["--limit", "256", "--test-limit", "256", "--seed", "5", "--out", str(out), "--verbose", "0"]
    )
    assert classifiers_cli.run(args) == 0
    assert sorted(os.listdir(out)) == sorted(
        ["classifier_D.json", "classifier_D.keras", "classifier_E.json", "classifier_E.keras"]
    )
    for name in ("D", "E"):
        summary = json.loads((out / f"classifier_{name}.json").read_text())
        assert (summary["name"], summary["dataset"], summary["epochs"], summary["seed"]) == (
            name,
            "fashion_mnist",
            1,
            5,
        )
        assert 0.0 <= summary["test_accuracy"] <= 1.0
        assert keras.models.load_model(out / f"classifier_{name}.keras").output_shape == (None, 10)
    printed = capsys.readouterr().out
    assert "E: test accuracy" in printed and "D: test accuracy" in printed


def test_cli_refuses_an_unknown_name_before_training_anything(tmp_path):
    args = lqvae_parser().parse_args(["classifiers", "train", "--names", "A,Q", "--out", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="unknown classifier.*Q"):
        classifiers_cli.run(args)
    assert not (tmp_path / "x").exists()
