"""`lqvae protect`'s fine-tune against the guided recipe trained from random weights, timed in one run.

Both train the filter for the same classifier on the same dataset: the fine-tune as
`lqvae_tf.protect` runs it (`fine_tune_config`: warm-started from the shipped preset, on the
first `FINE_TUNE_IMAGES` training images, one epoch), and the recipe the pipeline trained before
it warm-started (`fashion_mnist_guided` / `mnist_guided`: two clean epochs, then two with PGD
through the classifier, on the whole split). The ratio of their wall times is what the issue
bounds (<= 1/3); each run's clean accuracy behind the filter (first 2,000 test images) is printed
beside it, so the shorter run is not bought with a worse filter.

Usage (one heavy job at a time on a 2-core machine):
    python bench/bench_protect.py --classifier mine.keras --dataset fashion_mnist
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import keras

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from results_table import RESULTS, append_table  # noqa: E402

from lqvae_tf.config import preset  # noqa: E402
from lqvae_tf.data import first_examples  # noqa: E402
from lqvae_tf.protection import FINE_TUNE_IMAGES, fine_tune_config  # noqa: E402
from lqvae_tf.stats import accuracy_of  # noqa: E402
from lqvae_tf.training import train_purifier  # noqa: E402

TEST_IMAGES = 2000


def clean_behind(model_path: str, classifier: keras.Model, dataset: str) -> float:
    """The classifier's clean accuracy (%) behind the purifier on the first test images."""
    images, labels = first_examples(dataset, "test", TEST_IMAGES)
    purifier = keras.models.load_model(model_path)
    scores = classifier.predict(purifier.purify(images), batch_size=256, verbose=0)
    return accuracy_of(scores, labels).percent


def timed(config, dataset: str, folder: str, limit: int | None, classifier: str) -> tuple[float, str]:
    started = time.perf_counter()
    result = train_purifier(config, dataset, folder, limit=limit, verbose=2, classifier=classifier, guide=classifier)
    return time.perf_counter() - started, result.model_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classifier", required=True, help="the classifier both runs train for (.keras, [0, 1])")
    parser.add_argument("--dataset", choices=("fashion_mnist", "mnist"), default="fashion_mnist")
    parser.add_argument("--images", type=int, default=FINE_TUNE_IMAGES, help="the fine-tune's training images")
    parser.add_argument("--scratch-limit", type=int, help="train from scratch on the first N images (default all)")
    parser.add_argument("--results", default=RESULTS)
    args = parser.parse_args(argv)
    classifier = keras.models.load_model(args.classifier)
    with tempfile.TemporaryDirectory() as scratch:
        tune = fine_tune_config(args.dataset, os.path.abspath(args.classifier))
        tune_seconds, tune_model = timed(
            tune, args.dataset, os.path.join(scratch, "tune"), args.images, args.classifier
        )
        tune_clean = clean_behind(tune_model, classifier, args.dataset)
        recipe = preset(f"{args.dataset}_guided").with_classifier(os.path.abspath(args.classifier))
        limit = args.scratch_limit
        scratch_seconds, scratch_model = timed(
            recipe, args.dataset, os.path.join(scratch, "scratch"), limit, args.classifier
        )
        scratch_clean = clean_behind(scratch_model, classifier, args.dataset)
    images = "all" if limit is None else f"{limit:,}"
    append_table(
        f"`lqvae protect`'s fine-tune against training the guided filter from scratch ({args.dataset})",
        f"one run, one after the other; classifier `{args.classifier}`; clean accuracy of that classifier behind "
        f"each filter on the first {TEST_IMAGES:,} test images; ratio = fine-tune / scratch (the same at any scale "
        "where both take the same share of their full-scale images: protect's default and the whole split)",
        ["run", "training images", "epochs", "wall s", "clean behind filter %", "ratio"],
        [
            f"| protect fine-tune (from the shipped preset) | {args.images:,} | {tune.epochs} | {tune_seconds:.0f} | "
            f"{tune_clean:.2f} | {tune_seconds / scratch_seconds:.3f} |",
            f"| guided recipe from random weights | {images} | {recipe.epochs} | {scratch_seconds:.0f} | "
            f"{scratch_clean:.2f} | 1 |",
        ],
        path=args.results,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
