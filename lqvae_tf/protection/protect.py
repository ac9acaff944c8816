"""`protect`: fine-tune the shipped filter for one classifier, and measure what it does for it.

Why a warm start: the guided recipe (guidance by the classifier, PGD through it behind the
filter) is what makes the filter cheap in clean accuracy and strong under the adaptive attack,
but trained from random weights it needs the full schedule (clean epochs first, or the code
collapses: `lqvae_tf.training.warm_start`). The shipped preset already carries a working code,
so the adversarial, guided epochs can start at once, on part of the training split.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import keras

from lqvae_tf.atomic import atomic_path, write_text
from lqvae_tf.config import DEFAULT_GUIDANCE, GUIDED_ADVERSARIAL, LQVAEConfig
from lqvae_tf.data import first_examples
from lqvae_tf.data.registry import CLASSIFIER_VALUE_RANGE, DatasetInfo, dataset_info
from lqvae_tf.defenses import LQVAEDefense
from lqvae_tf.evaluation.frontier import FrontierAttacks, measure_robustness
from lqvae_tf.evaluation.harness import clean_accuracies
from lqvae_tf.models import LQVAE, DefendedClassifier
from lqvae_tf.models.adversarial import check_classifier_shape
from lqvae_tf.presets import trained_config, trained_presets
from lqvae_tf.protection.report import markdown
from lqvae_tf.training import train_purifier
from lqvae_tf.training.train import MODEL_FILE

# Training images the fine-tune sees (the first of the split) and its epochs over them: two thirds
# of Fashion-MNIST's training split once, against the guided recipe's four full epochs from
# scratch (bench/bench_protect.py measures both in one run; docs/protect/ has reports at this
# setting and at a third of the split).
FINE_TUNE_IMAGES = 40_000
FINE_TUNE_EPOCHS = 1
# Test images the report measures (the first of the split): the adaptive attack costs about 800
# forward-backward passes of purifier + classifier per image and eps (PGD-40, 2 restarts, EOT 8
# on the soft path), so this is the report's cost; the interval in the report shows its width.
EVAL_IMAGES = 500
DEFAULT_EPS = (0.1,)
# Where a dataset has a customary larger radius, the report shows it beside 0.1 (MNIST's 0.3,
# Madry et al.'s).
REPORTED_EPS = {"mnist": (0.1, 0.3)}
PURIFIER_FILE, DEFENDED_FILE = "purifier.keras", "defended.keras"
REPORT_FILES = ("report.md", "report.json")
TRAINING_DIR = "training"  # the fine-tune's run folder (resumable), inside the output folder
SECONDS_FILE = "seconds.json"  # inside it: the finished fine-tune's wall time


def shipped_preset(dataset: DatasetInfo, name: str | None = None) -> str:
    """The trained preset the fine-tune starts from: `name`, else the dataset's own.

    Raises:
        ValueError: `name` ships no weights, or the dataset has no preset of its own and none is
            named (the message lists the trained presets whose images have its shape).
    """
    presets = trained_presets()
    if name is not None:
        if name not in presets:
            raise ValueError(f"no trained weights ship for preset {name!r}; choose one of {', '.join(presets)}")
        return name
    if dataset.name in presets and dataset.preset == dataset.name:
        return dataset.name
    fitting = [p for p in presets if tuple(trained_config(p).image_shape) == tuple(dataset.image_shape)]
    if not fitting:
        raise ValueError(
            f"no shipped preset takes images of shape {tuple(dataset.image_shape)} (trained presets: "
            f"{', '.join(presets)}); train a purifier from scratch with `lqvae train --data`"
        )
    raise ValueError(f"name the preset to start from with --preset: {', '.join(fitting)} take these images")


def fine_tune_config(
    preset_name: str,
    classifier_path: str | None = None,
    epochs: int = FINE_TUNE_EPOCHS,
    seed: int = 0,
) -> LQVAEConfig:
    """The fine-tune of the shipped preset `preset_name` for one classifier: its networks
    (`trained_config`), warm-started from its weights (`init_from`), with classifier guidance
    at the weight the preset was fine-tuned with (`DEFAULT_GUIDANCE`'s for a preset trained
    without guidance) and PGD through the classifier behind the filter on a quarter of each
    batch (`GUIDED_ADVERSARIAL`) from the first step (no clean epochs: the code already works).

    Args:
        preset_name: a trained preset.
        classifier_path: the classifier's `.keras` file, kept in the config so the run can be
            rebuilt; None when the caller hands the classifier to `train_purifier` as a model.
        epochs: the fine-tune's epochs.
        seed: the run's seed.
    """
    ranged = {"classifier": classifier_path, "classifier_range": CLASSIFIER_VALUE_RANGE}  # [0, 1] classifiers
    shipped = trained_config(preset_name)
    # The balance of guidance against reconstruction the shipped weights were tuned at, kept.
    guidance = shipped.guidance or DEFAULT_GUIDANCE
    return shipped.replace(
        adversarial=dataclasses.replace(GUIDED_ADVERSARIAL, clean_epochs=0, **ranged),
        guidance=dataclasses.replace(guidance, **ranged),
        epochs=epochs,
        init_from=preset_name,
        seed=seed,
    )


def _finished_run(folder: str, config: LQVAEConfig, images: int | None) -> tuple[str, dict, float] | None:
    """A fine-tune of `config` on `images` training images that finished in `folder` before:
    (model path, final metrics, seconds); None if there is none (an interrupted one resumes in
    `train_purifier`)."""
    paths = [os.path.join(folder, name) for name in (MODEL_FILE, "config.json", "history.json", SECONDS_FILE)]
    if not all(os.path.isfile(path) for path in paths):
        return None
    with open(paths[1], encoding="utf-8") as handle:
        if LQVAEConfig.from_json(handle.read()) != config:
            return None
    with open(paths[2], encoding="utf-8") as handle:
        history = json.load(handle)
    with open(paths[3], encoding="utf-8") as handle:
        record = json.load(handle)
    if record.get("images") != images:
        return None
    return paths[0], {name: values[-1] for name, values in history.items()}, record["seconds"]


def _saved(model: keras.Model, path: str) -> str:
    with atomic_path(path) as temporary:
        model.save(temporary)
    return path


def protect(
    classifier: keras.Model | str,
    out_dir: str,
    dataset: str | DatasetInfo = "fashion_mnist",
    preset: str | None = None,
    images: int | None = FINE_TUNE_IMAGES,
    epochs: int = FINE_TUNE_EPOCHS,
    eval_images: int = EVAL_IMAGES,
    eps: Sequence[float] | None = None,
    attacks: FrontierAttacks | None = None,
    data_dir: str | None = None,
    seed: int = 0,
    verbose: str | int = "auto",
    command: str | None = None,
) -> dict[str, Any]:
    """Fine-tunes the shipped filter for `classifier` and writes into `out_dir`:

    * `purifier.keras`, the fine-tuned `LQVAE`;
    * `defended.keras`, the purifier then the classifier as one `DefendedClassifier` (what
      `keras.models.load_model` gives back after `import lqvae_tf`, and `lqvae export` takes);
    * `report.md` / `report.json`: clean accuracy alone, behind the shipped preset and behind the
      fine-tuned filter, and at each eps the adaptive accuracy (per image the worst of PGD through
      BPDA, the soft path + EOT and the identity, with restarts) and the gradient-free Square
      attack, each with its 95% interval; the fine-tune's time.

    Re-running the same call resumes an interrupted fine-tune (`train_purifier`) and reuses the
    attacks already crafted (`out_dir/cache`).

    Args:
        classifier: a Keras classifier of images in [0, 1] (logits or a final softmax), or its
            `.keras` file.
        out_dir: the output folder.
        dataset: a registered dataset's name, or a `DatasetInfo` (a user's, from
            `lqvae_tf.data.inspect_user_data`).
        preset: the trained preset to start from (default: the dataset's own).
        images: fine-tune on the first `images` training images (None: all).
        epochs: the fine-tune's epochs over them.
        eval_images: the first test images the report measures.
        eps: the L-inf radii (in [0, 1] pixels) the report attacks at (default `DEFAULT_EPS`, or
            the dataset's `REPORTED_EPS`).
        attacks: the attack settings besides eps and the image count (default `FrontierAttacks`:
            PGD-40 with 2 restarts, EOT over 8 draws, Square with 1,000 queries).
        data_dir: the dataset's folder (see `lqvae_tf.data`).
        seed: the fine-tune's seed.
        verbose: Keras `fit` verbosity ("auto" shows a progress bar).
        command: the command line that made the report (written into it).

    Returns:
        The report (what `report.json` holds).

    Raises:
        ValueError / FileNotFoundError: a missing or unreadable classifier, one whose input shape
            is not the data's, or no shipped preset for the data (each naming what was wrong).
    """
    info = dataset_info(dataset) if isinstance(dataset, str) else dataset
    name = shipped_preset(info, preset)
    classifier_path = classifier if isinstance(classifier, str) else None
    if classifier_path is not None:
        if not os.path.isfile(classifier_path):
            raise FileNotFoundError(f"classifier file {classifier_path} does not exist")
        classifier = keras.models.load_model(classifier_path)
    if eval_images < 1:
        raise ValueError(f"eval_images must be >= 1, got {eval_images}")
    radii = tuple(eps) if eps is not None else REPORTED_EPS.get(info.name, DEFAULT_EPS)
    settings = attacks or FrontierAttacks()
    per_eps = [dataclasses.replace(settings, eps=float(radius), n=eval_images) for radius in radii]  # validates
    config = fine_tune_config(name, classifier_path, epochs=epochs, seed=seed)
    if tuple(config.image_shape) != tuple(info.image_shape):
        raise ValueError(
            f"preset {name!r} takes images of shape {tuple(config.image_shape)}, the data has {tuple(info.image_shape)}"
        )
    check_classifier_shape(classifier, config.image_shape)  # before anything is written
    os.makedirs(out_dir, exist_ok=True)

    training = os.path.join(out_dir, TRAINING_DIR)
    done = _finished_run(training, config, images)
    started = time.perf_counter()
    if done is None:
        result = train_purifier(
            config,
            info,
            training,
            limit=images,
            data_dir=data_dir,
            verbose=verbose,
            classifier=classifier,
            guide=classifier,
        )
        model_path, final = result.model_path, result.final
        fine_tune_seconds = time.perf_counter() - started + result.earlier_seconds
        write_text(
            os.path.join(training, SECONDS_FILE), json.dumps({"seconds": fine_tune_seconds, "images": images}) + "\n"
        )
    else:  # the same fine-tune finished before: reuse it
        model_path, final, fine_tune_seconds = done
    purifier = keras.models.load_model(model_path)
    paths = {
        "purifier": _saved(purifier, os.path.join(out_dir, PURIFIER_FILE)),
        "defended": _saved(DefendedClassifier(purifier, classifier), os.path.join(out_dir, DEFENDED_FILE)),
    }

    started = time.perf_counter()
    test_images, labels = first_examples(info, "test", eval_images, data_dir=data_dir)
    shipped = LQVAEDefense(LQVAE.from_preset(name), value_range=CLASSIFIER_VALUE_RANGE)
    cache = os.path.join(out_dir, "cache")
    robustness = {
        f"{attack.eps:g}": measure_robustness(purifier, classifier, test_images, labels, attack, cache_dir=cache)
        for attack in per_eps
    }
    first = next(iter(robustness.values()))
    report = {
        "date": datetime.date.today().isoformat(),
        "command": command,
        "dataset": info.name,
        "classifier": classifier_path or getattr(classifier, "name", "model"),
        "preset": name,
        "fine_tune": {
            "images": images,
            "epochs": epochs,
            "seconds": round(fine_tune_seconds, 1),
            "config": config.to_dict(),
            "final": final,
        },
        "test_images": int(len(labels)),
        "attacks": settings.to_dict() | {"eps": list(radii), "n": eval_images},
        "clean": {
            "alone": first["clean_alone"],
            "behind_preset": clean_accuracies(classifier, shipped, test_images, labels)["clean"],
            "behind_filter": first["clean_filtered"],
        },
        "robustness": robustness,
        "evaluation_seconds": round(time.perf_counter() - started, 1),
        "files": {part: os.path.basename(path) for part, path in paths.items()},
    }
    report["clean"]["cost_points"] = round(
        report["clean"]["alone"]["accuracy"] - report["clean"]["behind_filter"]["accuracy"], 2
    )
    write_text(os.path.join(out_dir, REPORT_FILES[1]), json.dumps(report, indent=2) + "\n")
    write_text(os.path.join(out_dir, REPORT_FILES[0]), markdown(report))
    return report
