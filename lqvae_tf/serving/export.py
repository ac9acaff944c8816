"""Export a purifier as a SavedModel in TF Serving's layout: `<base>/<name>/<version>/`.

Signatures (inputs and outputs named, as `saved_model_cli show --all` prints them):

* `serving_default`: `images` float32 (batch, H, W, C) in the model's value range -> `purified`.
* `purify_and_score`: `images` -> `purified` and `reconstruction_error` (mean squared distance
  between input and purified image, per image; large for inputs off the data manifold, so it can
  serve as a detection score).
* `purify_png`: `image_bytes` string (batch,) of PNG files (sent as `{"b64": ...}` over REST)
  -> `purified`.
* `classify` (only with a classifier attached): `images` -> `purified`, `scores` (the
  classifier's output on the purified images) and `classes` (argmax).

Every signature rejects NaN/inf and values outside the value range with INVALID_ARGUMENT (HTTP
400 in TF Serving and in the embedded server). A version folder is written under a hidden
temporary name and renamed into place, so a server polling the folder never sees half of one;
the temporary folders of exports that were killed (`.export-*` whose process is gone) are removed
by the next export into the same model folder.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time

import keras
import tensorflow as tf

from lqvae_tf.models import LQVAE, DefendedClassifier
from lqvae_tf.models.inputs import RANGE_TOLERANCE

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
_VERSION = re.compile(r"^\d+$")
_SCRATCH = re.compile(r"^\.export-\d+-(?:(?P<pid>\d+)-)?")
# A scratch folder without a process id (older exports) counts as stale once this old.
STALE_SCRATCH_SECONDS = 3600


def list_versions(model_dir: str) -> list[int]:
    """The integer version folders under `model_dir`, ascending (TF Serving ignores the rest)."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(
        int(name)
        for name in os.listdir(model_dir)
        if _VERSION.match(name) and os.path.isdir(os.path.join(model_dir, name))
    )


def next_version(model_dir: str) -> int:
    """One more than the newest version under `model_dir` (1 for an empty folder)."""
    versions = list_versions(model_dir)
    return versions[-1] + 1 if versions else 1


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_exports(model_dir: str) -> list[str]:
    """Removes the `.export-*` folders of exports that died (killed, crashed) and returns them.

    A folder is stale when the process that named it is gone, or, for names without a process
    id, when it is older than `STALE_SCRATCH_SECONDS`; running exports are never touched.
    """
    removed = []
    if not os.path.isdir(model_dir):
        return removed
    for name in os.listdir(model_dir):
        match = _SCRATCH.match(name)
        path = os.path.join(model_dir, name)
        if match is None or not os.path.isdir(path):
            continue
        if match["pid"] is not None:
            stale = int(match["pid"]) != os.getpid() and not _process_alive(int(match["pid"]))
        else:
            stale = time.time() - os.path.getmtime(path) > STALE_SCRATCH_SECONDS
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _load(model_or_path, kind: str) -> keras.Model:
    if isinstance(model_or_path, keras.Model):
        return model_or_path
    path = os.fspath(model_or_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{kind} file {path} does not exist")
    return keras.models.load_model(path)


def _check_classifier(classifier: keras.Model, image_shape) -> None:
    shape = tuple(classifier.inputs[0].shape[1:]) if classifier.inputs else None
    if shape is not None and shape != tuple(image_shape):
        raise ValueError(f"the classifier takes images of shape {shape}, the purifier gives {tuple(image_shape)}")


def _checked(images, value_range):
    """Graph-side input checks: they fail as INVALID_ARGUMENT, i.e. a 400, not a wrong answer."""
    low, high = value_range
    checks = [
        tf.debugging.assert_all_finite(images, "images contain NaN or infinite values"),
        tf.debugging.assert_greater_equal(
            images,
            tf.constant(low - RANGE_TOLERANCE, images.dtype),
            message=f"images have values below the value range [{low:g}, {high:g}]",
        ),
        tf.debugging.assert_less_equal(
            images,
            tf.constant(high + RANGE_TOLERANCE, images.dtype),
            message=f"images have values above the value range [{low:g}, {high:g}]",
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(images)


def _write_warmup(export_dir: str, name: str, image_shape) -> None:
    """One `serving_default` request in `assets.extra/`, so TF Serving's first real call is warm."""
    import numpy as np
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=name, signature_name="serving_default"))
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, *image_shape), np.float32)))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    os.makedirs(os.path.join(export_dir, "assets.extra"), exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(export_dir, WARMUP_FILE)) as writer:
        writer.write(log.SerializeToString())


def build_archive(purifier: LQVAE, classifier: keras.Model | None = None) -> keras.export.ExportArchive:
    """The `ExportArchive` holding every signature of the module docstring."""
    config = purifier.config
    height, width, channels = config.image_shape
    images_spec = tf.TensorSpec((None, height, width, channels), tf.float32, name="images")
    bytes_spec = tf.TensorSpec((None,), tf.string, name="image_bytes")
    low, high = config.value_range

    def purify(images):
        return purifier(_checked(images, config.value_range), training=False)

    def decode(png):
        image = tf.ensure_shape(tf.io.decode_png(png, channels=channels), (height, width, channels))
        return tf.cast(image, tf.float32) * ((high - low) / 255.0) + low

    archive = keras.export.ExportArchive()
    archive.track(purifier)
    archive.add_endpoint("serving_default", lambda images: {"purified": purify(images)}, input_signature=[images_spec])

    def purify_and_score(images):
        purified = purify(images)
        error = tf.reduce_mean(tf.square(images - purified), axis=[1, 2, 3])
        return {"purified": purified, "reconstruction_error": error}

    archive.add_endpoint("purify_and_score", purify_and_score, input_signature=[images_spec])
    archive.add_endpoint(
        "purify_png",
        lambda image_bytes: {"purified": purify(tf.map_fn(decode, image_bytes, fn_output_signature=tf.float32))},
        input_signature=[bytes_spec],
    )
    if classifier is not None:
        archive.track(classifier)

        def classify(images):
            purified = purify(images)
            scores = classifier(purified, training=False)
            return {"purified": purified, "scores": scores, "classes": tf.argmax(scores, axis=-1)}

        archive.add_endpoint("classify", classify, input_signature=[images_spec])
    return archive


def export_purifier(
    purifier: LQVAE | str,
    base_path: str,
    name: str = "lqvae",
    classifier: keras.Model | str | None = None,
    version: int | None = None,
    warmup: bool = True,
) -> str:
    """Writes `<base_path>/<name>/<version>/` atomically and returns its path.

    Args:
        purifier: an `LQVAE`, a `DefendedClassifier` (its purifier, and its classifier for the
            `classify` signature), or the path of either's `.keras` file.
        base_path: the folder of TF Serving models (one sub-folder per model name).
        name: the model name (the URL's `/v1/models/<name>`).
        classifier: optional Keras classifier (or `.keras` path) for the `classify` signature.
        version: the version number; default one more than the newest present.
        warmup: ship a warm-up request in `assets.extra/` (needs tensorflow-serving-api).

    Raises:
        ValueError: a bad name or version, an existing version, or a classifier whose input
            shape does not match the purifier's images.
    """
    if not re.match(r"^[A-Za-z0-9_.-]+$", name) or name.startswith("."):
        raise ValueError(f"model name {name!r} must be letters, digits, '_', '-', '.'")
    purifier = _load(purifier, "purifier")
    if isinstance(purifier, DefendedClassifier):  # one .keras holding both: the classify signature too
        if classifier is not None:
            raise ValueError("a DefendedClassifier carries its classifier; pass no other")
        purifier, classifier = purifier.purifier, purifier.classifier
    if not isinstance(purifier, LQVAE):
        raise ValueError(f"the purifier must be an LQVAE model, got {type(purifier).__name__}")
    if classifier is not None:
        classifier = _load(classifier, "classifier")
        _check_classifier(classifier, purifier.config.image_shape)
    model_dir = os.path.join(base_path, name)
    version = next_version(model_dir) if version is None else int(version)
    if version < 1:
        raise ValueError(f"version must be a positive integer, got {version}")
    final = os.path.join(model_dir, str(version))
    if os.path.exists(final):
        raise ValueError(f"{final} exists already; versions are never overwritten")
    os.makedirs(model_dir, exist_ok=True)
    remove_stale_exports(model_dir)
    # Hidden, non-numeric name: TF Serving and the embedded server ignore it until the rename.
    # The process id in it tells a later export whether this one is still running.
    scratch = tempfile.mkdtemp(prefix=f".export-{version}-{os.getpid()}-", dir=model_dir)
    try:
        export_dir = os.path.join(scratch, "model")
        build_archive(purifier, classifier).write_out(export_dir, verbose=False)
        if warmup:
            _write_warmup(export_dir, name, purifier.config.image_shape)
        os.rename(export_dir, final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final
