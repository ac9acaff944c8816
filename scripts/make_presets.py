"""Makes the shipped purifiers behind `LQVAE.from_preset(name)`: the studies' own, measured.

A preset's weights are a purifier of `lqvae reproduce DATASET`'s model store (the study's
settings with the preset's config: the full training split, seed 0; a guided preset is trained
with the study's classifier A), taken from, or trained into, that store (`--models`, the folder
`lqvae reproduce --models` uses), so the preset that is the study's purifier (`*_guided`) ships
the filter whose LQ-VAE column the study reports. Classifier A of the same store measures it.
Into `lqvae_tf/presets/<name>/` go the filter's weights only
(`lqvae_tf.presets.WEIGHT_FILES`, float32, no optimizer state), its config, `metrics.json` and
`README.md`: clean accuracy of classifier A alone and behind the filter, and the reconstruction
error of the trained and the untrained filter, on the first `--test-images` test images, with
this command and its parameters.

Resumable: a model missing from the store is trained into it (an interrupted purifier resumes
from its last finished epoch), one already there is reused.

Usage (MNIST's IDX folder in $LQVAE_MNIST_DIR, as the Makefile sets it):
    python scripts/make_presets.py --models runs/models mnist fashion_mnist
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import keras
import numpy as np

from lqvae_tf import LQVAE
from lqvae_tf.atomic import write_text
from lqvae_tf.config import config_from_settings
from lqvae_tf.data import load
from lqvae_tf.data.registry import CLASSIFIER_VALUE_RANGE
from lqvae_tf.generated import marker
from lqvae_tf.models.inputs import rescale
from lqvae_tf.presets import METRICS_FILE, PRESET_ROOT, save_filter_weights
from lqvae_tf.stats import accuracy_of
from lqvae_tf.study import ModelStore, StudyConfig, study_config, train_models

CLASSIFIER = "A"  # the Defense-GAN classifier the metrics put behind the filter (and guided presets train with)
# Each preset's study: the dataset whose `lqvae reproduce` settings (and model store) it is made with.
PRESET_STUDIES = {
    "fashion_mnist": "fashion_mnist",
    "mnist": "mnist",
    "fashion_mnist_guided": "fashion_mnist",
    "mnist_guided": "mnist",
}
MAX_FILE_BYTES = 16 * 1024 * 1024  # the most any shipped file may weigh


def first_test_images(dataset: str, count: int, value_range) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` test images of `dataset` in `value_range`, and their labels."""
    pairs = list(load(dataset, "test", limit=count, value_range=value_range).batch(count).as_numpy_iterator())
    return pairs[0]


def measure(model: LQVAE, classifier: keras.Model, dataset: str, count: int) -> dict:
    """Clean accuracy alone and behind the filter, and reconstruction error, on `count` test images."""
    value_range = model.config.value_range
    images, labels = first_test_images(dataset, count, value_range)
    purified = model.purify(images)
    untrained = LQVAE(model.config)  # the same config, its seeded random weights

    def accuracy(inputs: np.ndarray) -> dict:
        scores = classifier.predict(rescale(inputs, value_range, CLASSIFIER_VALUE_RANGE), batch_size=256, verbose=0)
        return accuracy_of(scores, labels).to_dict()

    return {
        "test_images": int(len(images)),
        "clean_accuracy": {"alone": accuracy(images), "behind_filter": accuracy(purified)},
        # Mean squared error per pixel, in the config's value range.
        "reconstruction_mse": {
            "trained": float(np.mean(np.square(purified - images))),
            "untrained": float(np.mean(np.square(untrained.purify(images) - images))),
        },
    }


def markdown(metrics: dict) -> str:
    """The short README beside the weights: what was measured, how, and by which command."""
    accuracy, mse = metrics["clean_accuracy"], metrics["reconstruction_mse"]
    files = "\n".join(f"| `{name}` | {size / 1e6:.1f} MB |" for name, size in metrics["files"].items())
    limit = metrics["train_limit"]
    split = "the full" if limit is None else f"the first {limit} images of the"
    seconds = metrics["training_seconds"]
    trained = f"{seconds / 60:.0f} minutes of training" if seconds else "training time not recorded"
    return f"""{marker("`make presets` (`scripts/make_presets.py`)")}
# Preset `{metrics["preset"]}`

The LQ-VAE filter behind `LQVAE.from_preset("{metrics["preset"]}")`: a purifier of the
`lqvae reproduce {metrics["dataset"]}` study's model store (`metrics.json` has its settings), trained on {split}
{metrics["dataset"]} training split for {metrics["epochs"]} epochs with the preset's config
(`config.json`, seed 0; {trained} on a shared 2-core CPU); float32 weights of the encoder and
Decoder1 only (no optimizer state).

Measured on the first {metrics["test_images"]} test images, the study's classifier {metrics["classifier"]["name"]}
({metrics["classifier"]["epochs"]} epochs) behind the filter and alone (95% Wilson intervals):

| | clean accuracy (%) |
|---|---|
| classifier alone | {accuracy["alone"]["accuracy"]} {accuracy["alone"]["ci95"]} |
| behind the filter | {accuracy["behind_filter"]["accuracy"]} {accuracy["behind_filter"]["ci95"]} |

Reconstruction error (mean squared error per pixel, pixels in {list(metrics["value_range"])}):
{mse["trained"]:.4f} trained, {mse["untrained"]:.4f} untrained (the same config, random weights).

| file | size |
|---|---|
{files}

Made by `{metrics["command"]}`; `metrics.json` holds every number, the study's settings and the
model store's keys of the purifier and the classifier.
"""


def preset_study(name: str, quick: bool = False) -> StudyConfig:
    """The study of preset `name`'s dataset with `name` as its purifier's preset (trained with
    classifier A where the preset needs a classifier); the study itself where that is its purifier."""
    study = study_config(PRESET_STUDIES[name], quick=quick)
    purifier = {key: value for key, value in study.purifier.items() if key != "classifier"}
    purifier["preset"] = name
    if config_from_settings(purifier).needs_classifier:
        purifier["classifier"] = CLASSIFIER
    return study.replace(purifier=purifier)


def make_preset(name: str, args: argparse.Namespace) -> dict:
    """The study's purifier and classifier A of preset `name` (trained if missing); writes its folder and metrics."""
    started = time.monotonic()
    study = preset_study(name, quick=args.quick)
    dataset = study.dataset
    store = ModelStore(args.models)
    paths = train_models(study, store, only=("purifier", f"classifier {CLASSIFIER}"))
    model = keras.models.load_model(paths["purifier"])
    classifier = keras.models.load_model(paths[f"classifier {CLASSIFIER}"])
    config = model.config
    record = store.training_record(paths["purifier"])
    metrics = {
        "preset": name,
        "dataset": dataset,
        "epochs": config.epochs,
        "train_limit": study.purifier.get("limit"),
        "value_range": list(config.value_range),
        "study": {"quick": args.quick, "purifier": study.purifier, "classifier": study.classifier},
        "store": {part: os.path.basename(os.path.dirname(path)) for part, path in paths.items()},
        "training_seconds": record.get("seconds"),
        "classifier": {"name": CLASSIFIER, "epochs": study.classifier["epochs"]},
        **measure(model, classifier, dataset, args.test_images),
    }
    folder = os.path.join(args.out, name)
    paths = save_filter_weights(model, folder)
    metrics["files"] = {os.path.basename(path): os.path.getsize(path) for path in paths.values()}
    too_large = [f"{file} ({size / 1e6:.1f} MB)" for file, size in metrics["files"].items() if size > MAX_FILE_BYTES]
    if too_large:
        raise ValueError(f"preset {name}: files over {MAX_FILE_BYTES / 2**20:.0f} MiB: {', '.join(too_large)}")
    metrics["command"] = " ".join(["python scripts/make_presets.py", *args.argv])
    metrics["seconds"] = round(time.monotonic() - started)
    write_text(os.path.join(folder, METRICS_FILE), json.dumps(metrics, indent=2) + "\n")
    write_text(os.path.join(folder, "README.md"), markdown(metrics))
    return metrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("presets", nargs="+", choices=tuple(PRESET_STUDIES), help="presets to make")
    parser.add_argument("--models", required=True, help="the studies' model store (lqvae reproduce --models)")
    parser.add_argument("--test-images", type=int, default=2000, help="test images the metrics are measured on")
    parser.add_argument("--quick", action="store_true", help="the --quick studies' tiny models (a smoke check)")
    parser.add_argument("--out", default=PRESET_ROOT, help="where the preset folders go (the package's)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    for name in args.presets:
        metrics = make_preset(name, args)
        accuracy = metrics["clean_accuracy"]
        print(
            f"{name}: accuracy alone {accuracy['alone']['accuracy']}%, behind the filter "
            f"{accuracy['behind_filter']['accuracy']}%, reconstruction MSE {metrics['reconstruction_mse']}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
