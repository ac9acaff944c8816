"""Export for TF Serving: layout, signatures as saved_model_cli prints them, outputs = purify."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from lqvae_tf import LQVAE
from lqvae_tf.serving import export_purifier, list_versions
from lqvae_tf.serving.export import WARMUP_FILE

from conftest import tiny_config


@pytest.fixture(scope="module")
def purifier():
    keras.utils.set_random_seed(1)
    return LQVAE(tiny_config())


@pytest.fixture(scope="module")
def classifier():
    keras.utils.set_random_seed(2)
    return keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory, purifier, classifier):
    base = tmp_path_factory.mktemp("models")
    return export_purifier(purifier, str(base), "lqvae", classifier=classifier)


def _png(image: np.ndarray) -> bytes:
    return tf.io.encode_png(image).numpy()


def test_saved_model_cli_shows_the_signatures_with_named_inputs(exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--dir", exported, "--all"], capture_output=True, text=True, check=True).stdout
    for signature in ("serving_default", "purify_and_score", "purify_png", "classify"):
        assert f"signature_def['{signature}']" in shown
    blocks = dict(part.split("]:", 1) for part in shown.split("signature_def['")[1:])
    assert (
        "inputs['images'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 28, 28, 1)"
        in blocks["serving_default'"]
    )
    assert "outputs['purified']" in blocks["serving_default'"]
    assert "outputs['reconstruction_error']" in blocks["purify_and_score'"]
    assert "inputs['image_bytes'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)" in blocks["purify_png'"]
    assert all(f"outputs['{o}']" in blocks["classify'"] for o in ("purified", "scores", "classes"))


def test_layout_is_base_name_version_with_a_warmup_request(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    assert os.path.basename(exported) == "1" and os.path.basename(os.path.dirname(exported)) == "lqvae"
    assert os.path.isfile(os.path.join(exported, "saved_model.pb"))
    records = list(tf.data.TFRecordDataset(os.path.join(exported, WARMUP_FILE)).as_numpy_iterator())
    log = prediction_log_pb2.PredictionLog.FromString(records[0])
    assert log.predict_log.request.model_spec.signature_name == "serving_default"
    assert list(log.predict_log.request.inputs["images"].tensor_shape.dim)[1].size == 28


def test_saved_model_outputs_equal_the_keras_model(exported, purifier, classifier, fmnist_images):
    loaded = tf.saved_model.load(exported)
    x = fmnist_images[:16]
    want = purifier.purify(x)
    got = loaded.signatures["serving_default"](images=tf.constant(x))["purified"].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    scored = loaded.signatures["purify_and_score"](images=tf.constant(x))
    np.testing.assert_allclose(
        scored["reconstruction_error"].numpy(), ((x - want) ** 2).mean(axis=(1, 2, 3)), rtol=1e-4, atol=1e-7
    )
    classified = loaded.signatures["classify"](images=tf.constant(x))
    np.testing.assert_allclose(classified["scores"].numpy(), classifier(want).numpy(), atol=1e-5)
    np.testing.assert_array_equal(classified["classes"].numpy(), classifier(want).numpy().argmax(-1))


def test_png_signature_decodes_and_purifies(exported, purifier, fmnist_test_arrays):
    images = fmnist_test_arrays[0][:4]
    pngs = tf.constant([_png(image) for image in images])
    got = tf.saved_model.load(exported).signatures["purify_png"](image_bytes=pngs)["purified"].numpy()
    np.testing.assert_allclose(got, purifier.purify(images.astype(np.float32) / 255.0), atol=1e-5)


@pytest.mark.parametrize(
    "value, message", [(np.nan, "NaN"), (3.0, "above the value range"), (-1.0, "below the value range")]
)
def test_saved_model_rejects_bad_values_as_invalid_argument(exported, value, message):
    x = np.full((2, 28, 28, 1), value, np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        tf.saved_model.load(exported).signatures["serving_default"](images=tf.constant(x))


def test_versions_increase_and_are_never_overwritten(tmp_path, purifier):
    assert export_purifier(purifier, str(tmp_path), "m", warmup=False).endswith(os.path.join("m", "1"))
    assert export_purifier(purifier, str(tmp_path), "m", warmup=False).endswith(os.path.join("m", "2"))
    assert list_versions(str(tmp_path / "m")) == [1, 2]
    with pytest.raises(ValueError, match="exists already"):
        export_purifier(purifier, str(tmp_path), "m", version=2)


def test_failed_export_leaves_the_folder_untouched(tmp_path, purifier):
    wrong = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"classifier takes images of shape \(32, 32, 3\)"):
        export_purifier(purifier, str(tmp_path), "m", classifier=wrong)
    assert os.listdir(tmp_path / "m") == [] if (tmp_path / "m").exists() else True
    with pytest.raises(FileNotFoundError, match="purifier file"):
        export_purifier(str(tmp_path / "missing.keras"), str(tmp_path), "m")
    with pytest.raises(ValueError, match="model name"):
        export_purifier(purifier, str(tmp_path), "../evil")


def test_grpc_client_builds_tf_serving_predict_requests():
    from lqvae_tf.serving import GrpcClient

    request = GrpcClient("localhost:8500", "lqvae", version=3).request(np.zeros((2, 28, 28, 1)), "classify")
    assert (request.model_spec.name, request.model_spec.signature_name) == ("lqvae", "classify")
    assert request.model_spec.version.value == 3
    assert tf.make_ndarray(request.inputs["images"]).shape == (2, 28, 28, 1)


def test_export_cli_writes_a_version(tmp_path, purifier, capsys):
    from lqvae_tf.cli.main import main

    purifier.save(tmp_path / "p.keras")
    assert (
        main(
            [
                "export",
                "--model",
                str(tmp_path / "p.keras"),
                "--base",
                str(tmp_path / "models"),
                "--name",
                "lqvae",
                "--no-warmup",
            ]
        )
        == 0
    )
    assert list_versions(str(tmp_path / "models" / "lqvae")) == [1]
    assert "saved_model_cli show" in capsys.readouterr().out


def test_scratch_folders_of_killed_exports_are_removed_and_running_ones_kept(tmp_path):
    import time

    from lqvae_tf.serving.export import STALE_SCRATCH_SECONDS, remove_stale_exports

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed = tmp_path / f".export-3-{dead.pid}-abcd"
    running = tmp_path / f".export-3-{os.getpid()}-efgh"
    old_unnamed, new_unnamed = tmp_path / ".export-2-old", tmp_path / ".export-2-new"
    for folder in (killed, running, old_unnamed, new_unnamed):
        (folder / "model").mkdir(parents=True)
    long_ago = time.time() - STALE_SCRATCH_SECONDS - 10
    os.utime(old_unnamed, (long_ago, long_ago))
    (tmp_path / "1").mkdir()
    assert sorted(remove_stale_exports(str(tmp_path))) == sorted([str(killed), str(old_unnamed)])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["1", running.name, new_unnamed.name])


def test_a_defended_keras_file_exports_with_its_classify_signature(tmp_path, purifier, classifier, fmnist_images):
    from lqvae_tf import DefendedClassifier

    path = tmp_path / "defended.keras"
    DefendedClassifier(purifier, classifier).save(path)
    exported = export_purifier(str(path), str(tmp_path / "models"), "lqvae", warmup=False)
    x = fmnist_images[:8]
    classified = tf.saved_model.load(exported).signatures["classify"](images=tf.constant(x))
    np.testing.assert_allclose(classified["scores"].numpy(), classifier(purifier.purify(x)).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="carries its classifier"):
        export_purifier(str(path), str(tmp_path / "models"), "lqvae", classifier=classifier, warmup=False)
