"""The pipeline's Trainer module: `run_fn(fn_args)` trains the LQ-VAE purifier and the gate's classifier.

TFX's generic Trainer imports this file by path and calls `run_fn`; it uses the library only
(nothing of `pipelines/`), as TFX's penguin example keeps `penguin_utils_keras.py` apart from
the pipeline. The examples are streamed from ExampleGen's files through
`fn_args.data_accessor.tf_dataset_factory`, parsed with SchemaGen's schema (which fixes the
flat `image` feature's length), never held whole in memory. Everything else it needs comes in
`fn_args.custom_config`:

    purifier          LQVAEConfig fields over the named preset ({"preset": ..., "overrides": {...}}),
                      the data's image shape among them
    classifier        {"name": "A".."E", "epochs", "batch_size", "learning_rate", "image_shape",
                      "num_classes", "adapt_epochs"}, or None when the gate attacks the user's own
                      classifier; trained before the purifier, which it guides (`guidance`) and
                      which the adversarial modes "classifier" / "end_to_end" attack when the
                      purifier's config names no classifier; "adapt_epochs" > 0 then fine-tunes it
                      on purified training images
    distribute        the tf.distribute strategy (`lqvae_tf.distribute.make_strategy`): "auto" (default:
                      the workers of TF_CONFIG when it names two or more, else mirrored over every local
                      GPU when there are two or more), "multi_worker", "mirrored", "default"

It writes into `fn_args.serving_model_dir` (what the gate and the pusher read):

    purifier.keras    the trained LQVAE
    classifier.keras  the classifier the robustness gate attacks (not written when "classifier" is None);
                      the adapted one when "adapt_epochs" > 0
    classifier_unadapted.keras  with "adapt_epochs" > 0: the classifier before adapting (the gate
                      reports its clean accuracy beside the adapted one's)
    config.json       the resolved LQVAEConfig
    history.json      per-epoch metrics of the fits

and TensorBoard logs into `fn_args.model_run_dir` (`purifier/` and `classifier/`).
"""

from __future__ import annotations

import json
import os
import time

import keras
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from lqvae_tf import LQVAE
from lqvae_tf.atomic import atomic_path, write_text
from lqvae_tf.classifiers import build_classifier
from lqvae_tf.classifiers.train import compile_classifier
from lqvae_tf.config import config_from_settings
from lqvae_tf.data import batched, take_images
from lqvae_tf.data.image_folder import scale_pixels
from lqvae_tf.data.registry import CLASSIFIER_VALUE_RANGE
from lqvae_tf.distribute import make_strategy, shard_by_example, worker_dir
from lqvae_tf.pipeline_components.gate import CLASSIFIER_FILE, PURIFIER_FILE, UNADAPTED_CLASSIFIER_FILE
from lqvae_tf.pipeline_components.progress import progress
from lqvae_tf.pipeline_components.records import IMAGE_KEY, LABEL_KEY
from lqvae_tf.training import fit_purifier
from lqvae_tf.training.adapt import fine_tune_on_purified

GRID_IMAGES = 10  # eval images in the TensorBoard input-vs-purified summaries
READ_BATCH = 256  # examples parsed per step of the TFXIO reader (the models batch on their own)


class EpochProgress(keras.callbacks.Callback):
    """One progress line per epoch, `<what> epoch i/n: metric value, ... (seconds)`, for the main job's terminal.

    Args:
        what: the model's name in the line ("purifier", "classifier").
        metrics: the logs' keys to show, those present.
    """

    def __init__(self, what: str, metrics: tuple[str, ...] = ("loss_f", "loss", "accuracy", "val_accuracy")):
        super().__init__()
        self.what = what
        self.metrics = metrics
        self.started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        shown = ", ".join(f"{name} {float(logs[name]):.4g}" for name in self.metrics if name in logs)
        total = self.params.get("epochs", "?")
        seconds = time.monotonic() - self.started
        progress.info("%s epoch %d/%s: %s (%.0f s)", self.what, epoch + 1, total, shown, seconds)


def examples(data_accessor, file_patterns, schema, image_shape, value_range) -> tf.data.Dataset:
    """One pass over ExampleGen's examples as unbatched (float32 image in `value_range`, int64 label).

    Args:
        data_accessor: the Trainer's `fn_args.data_accessor`.
        file_patterns: the split's files (`fn_args.train_files` or `fn_args.eval_files`).
        schema: SchemaGen's schema (it gives the flat `image` feature its fixed length).
        image_shape: the images' (height, width, channels).
        value_range: the pixel range to scale to.
    """
    options = tfxio.TensorFlowDatasetOptions(batch_size=READ_BATCH, shuffle=False, num_epochs=1, label_key=LABEL_KEY)
    batches = data_accessor.tf_dataset_factory(file_patterns, options, schema)

    def to_images(features, labels):
        pixels = tf.reshape(features[IMAGE_KEY], (-1, *image_shape))
        return scale_pixels(pixels, value_range), tf.reshape(labels, (-1,))

    return batches.map(to_images, num_parallel_calls=tf.data.AUTOTUNE).unbatch()


def _save(model: keras.Model, path: str) -> None:
    with atomic_path(path) as temporary:
        model.save(temporary)


def train_purifier(
    config,
    train_set,
    eval_set,
    log_dir: str,
    strategy,
    guide: keras.Model | None = None,
    adversary: keras.Model | None = None,
) -> tuple[LQVAE, dict]:
    """Fits an LQVAE of `config` on the train split (validation on the eval split), TensorBoard in
    `log_dir`; `guide` / `adversary`: the classifiers of `config.guidance` / of an adversarial
    mode that attacks one, where the config names none."""
    grid = take_images(eval_set, GRID_IMAGES)
    return fit_purifier(
        config,
        train_set,
        eval_set,
        log_dir,
        grid,
        callbacks=[EpochProgress("purifier")],
        verbose=2,
        strategy=strategy,
        classifier=adversary,
        guide=guide,
    )


def train_classifier(
    settings: dict, train_set, eval_set, log_dir: str, seed: int, strategy
) -> tuple[keras.Model, dict]:
    """Fits the Defense-GAN classifier the robustness gate attacks, TensorBoard in `log_dir`."""
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        model = build_classifier(settings["name"], tuple(settings["image_shape"]), settings["num_classes"])
        compile_classifier(model, keras.optimizers.Adam(settings["learning_rate"]))
    history = model.fit(
        shard_by_example(batched(train_set, settings["batch_size"], shuffle=True, seed=seed)),
        validation_data=shard_by_example(batched(eval_set, settings["batch_size"])),
        epochs=settings["epochs"],
        callbacks=[keras.callbacks.TensorBoard(log_dir=log_dir), EpochProgress("classifier")],
        verbose=2,
    )
    return model, history.history


def adapt_classifier(classifier: keras.Model, purifier: LQVAE, train_set, settings: dict, seed: int) -> dict:
    """Fine-tunes the classifier in place on the purified training images (`fine_tune_on_purified`)."""
    progress.info("classifier: adapting to the purifier for %d epochs", settings["adapt_epochs"])
    keras.utils.set_random_seed(seed)
    return fine_tune_on_purified(
        classifier,
        purifier,
        train_set,
        epochs=settings["adapt_epochs"],
        batch_size=settings["batch_size"],
        seed=seed,
        verbose=2,
        value_range=CLASSIFIER_VALUE_RANGE,
    )


def run_fn(fn_args) -> None:
    """TFX Trainer entry point: trains the models and saves them into `fn_args.serving_model_dir`."""
    custom = fn_args.custom_config or {}
    purifier_settings, classifier_settings = custom["purifier"], custom.get("classifier")
    config = config_from_settings(purifier_settings)
    schema = tfx.utils.parse_pbtxt_file(fn_args.schema_path, schema_pb2.Schema())

    def splits(value_range) -> tuple[tf.data.Dataset, tf.data.Dataset]:
        return tuple(
            examples(fn_args.data_accessor, files, schema, config.image_shape, value_range)
            for files in (fn_args.train_files, fn_args.eval_files)
        )

    strategy = make_strategy(custom.get("distribute", "auto"))
    history = {}
    classifier = None
    if classifier_settings:  # None: the gate attacks the user's classifier, so none is trained here
        # Trained first: a guided purifier (`guidance` without a classifier of its own) keeps its answers.
        classifier, classifier_history = train_classifier(
            classifier_settings,
            *splits(CLASSIFIER_VALUE_RANGE),
            os.path.join(fn_args.model_run_dir, "classifier"),
            seed=config.seed,
            strategy=strategy,
        )
        history["classifier"] = {name: [float(v) for v in values] for name, values in classifier_history.items()}
    # Guidance, and adversarial modes that attack a classifier, naming none: the Trainer's own.
    adversarial = config.adversarial
    wanted = {
        "guide": config.guidance is not None and config.guidance.classifier is None,
        "adversary": adversarial is not None and adversarial.attacks_classifier and adversarial.classifier is None,
    }
    if any(wanted.values()) and classifier is None:
        raise ValueError("the purifier's guidance or adversarial mode names no classifier, and the Trainer trains none")
    own = {role: classifier if needed else None for role, needed in wanted.items()}
    purifier, history["purifier"] = train_purifier(
        config, *splits(config.value_range), os.path.join(fn_args.model_run_dir, "purifier"), strategy, **own
    )
    # Under several workers (TF_CONFIG) every worker saves, and only the chief's files are kept.
    with worker_dir(fn_args.serving_model_dir, strategy) as out:
        os.makedirs(out, exist_ok=True)
        _save(purifier, os.path.join(out, PURIFIER_FILE))
        write_text(os.path.join(out, "config.json"), purifier.config.to_json())
        if classifier is not None:
            if classifier_settings.get("adapt_epochs", 0) > 0:
                _save(classifier, os.path.join(out, UNADAPTED_CLASSIFIER_FILE))
                history["classifier_adapt"] = adapt_classifier(
                    classifier, purifier, splits(CLASSIFIER_VALUE_RANGE)[0], classifier_settings, config.seed
                )
            _save(classifier, os.path.join(out, CLASSIFIER_FILE))
        write_text(os.path.join(out, "history.json"), json.dumps(history, indent=2))
