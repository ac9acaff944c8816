"""Training a purifier end to end: data, `fit` with callbacks, and the artifacts of a run.

A run folder holds:
    config.json        the resolved LQVAEConfig (the model can be rebuilt from it)
    purifier.keras     the trained model (written atomically)
    history.json       per-epoch metrics, train and validation, every epoch (a resumed run too)
    training.json      how far it trained: epochs finished of those planned, optimizer steps, batch
    purified.png       test images above their purified versions
    logs/              TensorBoard scalars and input-vs-purified images
    backup/            BackupAndRestore state and the per-epoch record while a run is unfinished
                       (resume by re-running)
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from lqvae_tf.atomic import atomic_path, write_text
from lqvae_tf.config import LQVAEConfig
from lqvae_tf.data import batched, load, take_images
from lqvae_tf.distribute import make_strategy, shard_by_example, worker_dir
from lqvae_tf.models import LQVAE
from lqvae_tf.models.adversarial import check_classifier_shape
from lqvae_tf.training.callbacks import AdversarialSchedule, EpochRecord, PurifiedImages, SharpnessSchedule
from lqvae_tf.training.figures import save_purification_grid
from lqvae_tf.training.warm_start import COLLAPSED_BELOW, CodeCollapseCheck, checked_source, warm_start

GRID_IMAGES = 10  # test images in purified.png and in the TensorBoard summaries
CODE_CHECK_IMAGES = 256  # validation images whose codes tell a working code from a collapsed one
VALIDATION_LIMIT = 2_000  # test images used for the per-epoch validation losses
MODEL_FILE, GRID_FILE = "purifier.keras", "purified.png"
RECORD_FILE = "epochs.json"  # inside backup/: the EpochRecord of an unfinished run
TRAINING_FILE = "training.json"


@dataclasses.dataclass
class TrainResult:
    """Where a run's artifacts are, its per-epoch metrics, and the time that interrupted runs spent.

    `earlier_seconds` is the wall time of the epochs that earlier, interrupted calls trained
    before this one resumed (0 for a run trained in one call): add it to a timer around the call
    for the run's whole training time.
    """

    out_dir: str
    model_path: str
    grid_path: str
    history: dict[str, list[float]]
    earlier_seconds: float = 0.0

    @property
    def final(self) -> dict[str, float]:
        return {name: values[-1] for name, values in self.history.items()}

    @property
    def collapsed(self) -> bool:
        """Whether the trained code collapsed (`warm_start.CodeCollapseCheck`)."""
        return self.final.get("val_distinct_codes", 1.0) < COLLAPSED_BELOW


def _check_resumable(out_dir: str, config: LQVAEConfig) -> None:
    """Refuses to resume an interrupted run that was started with another configuration."""
    saved = os.path.join(out_dir, "config.json")
    if os.path.isdir(os.path.join(out_dir, "backup")) and os.path.isfile(saved):
        with open(saved, encoding="utf-8") as handle:
            previous = LQVAEConfig.from_json(handle.read())
        if previous != config:
            raise ValueError(
                f"{out_dir} holds an unfinished run with another configuration; resume it with "
                f"the same settings, or train into a new --out folder"
            )


Classifiers = keras.Model | str | Sequence[keras.Model | str]
"""One classifier or several (attacked or followed together), each a model or a `.keras` path."""


def _loaded_classifier(classifier: Classifiers | None, config: LQVAEConfig, role: str, missing: str):
    """`classifier` (a model or a `.keras` path, or a list of them) loaded and checked against the
    purifier's image shape now, before any data is read; `missing` is the error when there is none."""
    if isinstance(classifier, (list, tuple)):
        if not classifier:
            raise ValueError(missing)
        return [_loaded_classifier(one, config, role, missing) for one in classifier]
    if classifier is None:
        raise ValueError(missing)
    if isinstance(classifier, str):
        if not os.path.isfile(classifier):
            raise FileNotFoundError(f"{role} file {classifier} does not exist")
        classifier = keras.models.load_model(classifier)
    check_classifier_shape(classifier, config.image_shape)
    return classifier


def adversary_classifier(config: LQVAEConfig, classifier: Classifiers | None = None):
    """The classifier(s) the adversarial modes "classifier" and "end_to_end" attack: `classifier` (a
    model or a `.keras` path, or a list of them), else the config's `adversarial.classifier` path; None for every
    other config.

    Raises:
        ValueError: such a mode without any classifier, or one whose input shape is not
            the purifier's (checked here, before any data is read).
        FileNotFoundError: the classifier's file is missing.
    """
    adversarial = config.adversarial
    if adversarial is None or not adversarial.attacks_classifier:
        return None
    return _loaded_classifier(
        classifier if classifier is not None else adversarial.classifier,
        config,
        "classifier",
        f"adversarial mode {adversarial.mode!r} needs a classifier (.keras file or model) to attack",
    )


def guide_classifier(config: LQVAEConfig, guide: Classifiers | None = None):
    """The classifier(s) `config.guidance` trains the reconstructions to keep the answers of: `guide`
    (a model or a `.keras` path, or a list of them), else the config's `guidance.classifier` file;
    None without guidance.

    Raises:
        ValueError: guidance without any classifier, or one whose input shape is not the
            purifier's (checked here, before any data is read).
        FileNotFoundError: the classifier's file is missing.
    """
    if config.guidance is None:
        return None
    return _loaded_classifier(
        guide if guide is not None else config.guidance.classifier,
        config,
        "guidance classifier",
        "guidance needs a classifier (a .keras file or model) whose answers to keep",
    )


def fit_purifier(
    config: LQVAEConfig,
    train_images: tf.data.Dataset,
    validation_images: tf.data.Dataset,
    log_dir: str,
    grid_images: np.ndarray,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: str | int = "auto",
    strategy: tf.distribute.Strategy | None = None,
    classifier: Classifiers | None = None,
    init_source: LQVAE | None = None,
    epoch_record: EpochRecord | None = None,
    guide: Classifiers | None = None,
) -> tuple[LQVAE, dict[str, list[float]]]:
    """Builds an LQVAE under `strategy` and fits it: the one training loop of the CLI and the TFX Trainer.

    With `config.init_from` the networks start as that trained purifier's (`warm_start`).

    Callbacks: `callbacks` first (e.g. BackupAndRestore), then the sharpness schedule when the
    config anneals it, the adversarial schedule when adversarial retraining starts with clean
    epochs, the code-collapse check (`val_distinct_codes` on the first validation images, a
    `CollapsedCodeWarning` at the end when the code collapsed), TensorBoard scalars and
    input-vs-purified images of `grid_images` in `log_dir`, and last `epoch_record`.

    Args:
        config: the model and training configuration.
        train_images / validation_images: unbatched (image, label) pairs, images in
            `config.value_range` (adversarial mode "classifier" attacks at the labels).
        log_dir: the TensorBoard folder.
        grid_images: a few validation images shown purified in TensorBoard each epoch.
        callbacks: extra callbacks, run before the others.
        verbose: Keras `fit` verbosity.
        strategy: the `tf.distribute` strategy (default: `make_strategy("auto")`: every local GPU).
        classifier: for adversarial mode "classifier", the classifier to attack (a model or a
            `.keras` path; default the config's `adversarial.classifier`).
        init_source: the purifier `config.init_from` names, when the caller already loaded it
            (`checked_source`); default: read it from `config.init_from`.
        epoch_record: keeps each epoch's metrics and seconds across an interrupted and resumed
            fit (with BackupAndRestore among `callbacks`).
        guide: with `config.guidance`, its classifier (a model or a `.keras` path; default the
            config's `guidance.classifier`).

    Returns:
        The trained model and its per-epoch history (train and validation metrics): with
        `epoch_record`, every epoch's, those of interrupted earlier fits included; else this
        fit's.

    Raises:
        FileNotFoundError / ValueError: `config.init_from` names no trained purifier, or one with
            networks of other shapes.
    """
    strategy = strategy or make_strategy("auto")
    keras.utils.set_random_seed(config.seed)
    classifier = adversary_classifier(config, classifier)
    guide = guide_classifier(config, guide)
    with strategy.scope():
        model = LQVAE(config)
        model.compile()
        if config.init_from is not None:
            warm_start(model, config.init_from, init_source)  # before fit, so a resumed backup still wins
    if classifier is not None:
        model.attach_classifier(classifier)
    if guide is not None:
        model.attach_guide(guide)
    every = list(callbacks)
    if config.soft_sharpness_final is not None:
        every.append(SharpnessSchedule(config.soft_sharpness_final, config.epochs))
    if model.adversarial_active is not None:  # clean epochs first, then adversarial retraining
        every.append(AdversarialSchedule())
    every.append(CodeCollapseCheck(take_images(validation_images, CODE_CHECK_IMAGES)))
    every += [keras.callbacks.TensorBoard(log_dir=log_dir), PurifiedImages(grid_images, log_dir)]
    if epoch_record is not None:
        every.append(epoch_record)  # last: its logs hold what the callbacks above add
    # Every worker of a cluster shuffles with the same seed, so their shares of a batch are disjoint.
    history = model.fit(
        shard_by_example(batched(train_images, config.batch_size, shuffle=True, seed=config.seed)),
        validation_data=shard_by_example(batched(validation_images, config.batch_size)),
        epochs=config.epochs,
        callbacks=every,
        verbose=verbose,
    )
    if epoch_record is not None:
        return model, epoch_record.history
    return model, {name: [float(v) for v in values] for name, values in history.history.items()}


def training_record(model: LQVAE, history: dict[str, list[float]], config: LQVAEConfig) -> dict[str, int]:
    """How far a purifier trained: the epochs it finished (a resumed run's earlier ones included)
    of those its config plans, and the encoder optimizer's step count (restored on resume, so it
    counts every step the weights took), at the config's batch size."""
    return {
        "epochs": max((len(values) for values in history.values()), default=0),
        "planned_epochs": int(config.epochs),
        "optimizer_steps": int(model.optimizer.iterations.numpy()),
        "batch_size": int(config.batch_size),
    }


def train_purifier(
    config: LQVAEConfig,
    dataset: str,
    out_dir: str,
    limit: int | None = None,
    data_dir: str | None = None,
    verbose: str | int = "auto",
    strategy: tf.distribute.Strategy | None = None,
    classifier: Classifiers | None = None,
    validation_limit: int = VALIDATION_LIMIT,
    guide: Classifiers | None = None,
) -> TrainResult:
    """Trains an LQ-VAE on `dataset` and writes the run folder (see module docstring).

    Re-running the same call after an interruption resumes from the last finished epoch; the
    history then holds every epoch, and `TrainResult.earlier_seconds` the interrupted calls' time.

    Args:
        config: the model and training configuration (epochs, batch size and seed included).
        dataset: "fashion_mnist", "mnist" or "celeb_a".
        out_dir: the run folder.
        limit: train on the first `limit` training images only (quick runs).
        data_dir: the dataset's folder (see `lqvae_tf.data`).
        verbose: Keras `fit` verbosity ("auto" shows a progress bar).
        strategy: the `tf.distribute` strategy (default: `make_strategy("auto")`: the workers
            `TF_CONFIG` names, else every local GPU). On a worker that is not the chief, the
            run folder is a scratch folder inside `out_dir`, removed at the end, and the paths
            returned are those the chief writes.
        classifier: for adversarial mode "classifier", the classifier to attack (a model or a
            `.keras` path; default the config's `adversarial.classifier`).
        validation_limit: test images used for the per-epoch validation losses.
        guide: with `config.guidance`, the classifier(s) whose answers to keep (default the
            config's `guidance.classifier`).

    Raises:
        FileNotFoundError / ValueError: a missing classifier or `config.init_from`, or one that
            does not fit the purifier (checked before any data is read).
    """
    strategy = strategy or make_strategy("auto")  # first: a multi-worker strategy starts this worker's server
    _check_resumable(out_dir, config)
    classifier = adversary_classifier(config, classifier)
    guide = guide_classifier(config, guide)  # a missing or mismatched guide fails now too
    source = checked_source(config)  # a missing or mismatched init_from fails now, before any data is read
    with worker_dir(out_dir, strategy) as run_dir:
        os.makedirs(run_dir, exist_ok=True)
        write_text(os.path.join(run_dir, "config.json"), config.to_json())

        loader_args = {"value_range": config.value_range}
        if data_dir is not None:
            loader_args["data_dir"] = data_dir
        train_images = load(dataset, "train", limit=limit, **loader_args)
        test_images = load(dataset, "test", limit=validation_limit, **loader_args)
        grid_images = take_images(test_images, GRID_IMAGES)

        backup = os.path.join(run_dir, "backup")
        record = EpochRecord(os.path.join(backup, RECORD_FILE))  # removed with the backup when the fit ends
        model, history = fit_purifier(
            config,
            train_images,
            test_images,
            log_dir=os.path.join(run_dir, "logs"),
            grid_images=grid_images,
            callbacks=[keras.callbacks.BackupAndRestore(backup)],
            verbose=verbose,
            strategy=strategy,
            classifier=classifier,
            init_source=source,
            epoch_record=record,
            guide=guide,
        )

        with atomic_path(os.path.join(run_dir, MODEL_FILE)) as temporary:
            model.save(temporary)
        write_text(os.path.join(run_dir, "history.json"), json.dumps(history, indent=2))
        write_text(os.path.join(run_dir, TRAINING_FILE), json.dumps(training_record(model, history, config), indent=2))
        save_purification_grid(
            grid_images, model.purify(grid_images), os.path.join(run_dir, GRID_FILE), config.value_range
        )
    return TrainResult(
        out_dir, os.path.join(out_dir, MODEL_FILE), os.path.join(out_dir, GRID_FILE), history, record.earlier_seconds
    )
