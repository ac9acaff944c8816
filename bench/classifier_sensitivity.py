"""How much each classifier of the presets' store loses under small pixel changes, beside the filter.

Why: a preset's clean cost in front of a classifier is partly the filter's doing and partly the
classifier's own fragility. Here each classifier (the guides A, B, C and the held-out R of
`scripts/make_presets.py`) is measured on the first test images clean, behind the shipped
preset, and under changes no filter should be blamed for: a uniform +0.05 offset, a 0.9
contrast, a 3x3 box blur and Gaussian noise of std 0.05 (pixels in [0, 1], clipped). A
classifier that collapses under these will pay behind any filter that does not reproduce its
input exactly; `lqvae protect` fits the filter to such a classifier instead.

Usage:
    python bench/classifier_sensitivity.py --models runs/reproduce/models mnist fashion_mnist
"""

from __future__ import annotations

import argparse
import os
import sys

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))

from make_presets import GUIDES, HELD_OUT, base_study  # noqa: E402
from results_table import RESULTS, append_table  # noqa: E402

from lqvae_tf import LQVAE  # noqa: E402
from lqvae_tf.data import first_examples  # noqa: E402
from lqvae_tf.study import ModelStore  # noqa: E402

IMAGES = 2000


def changes(images: np.ndarray) -> dict[str, np.ndarray]:
    """The pixel changes measured, by name (images in [0, 1])."""
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    noise = np.random.default_rng(0).normal(0.0, 0.05, images.shape)
    return {
        "+0.05 offset": np.clip(images + 0.05, 0.0, 1.0),
        "x0.9 contrast": images * 0.9,
        "3x3 blur": tf.nn.avg_pool2d(padded, 3, 1, "VALID").numpy(),
        "noise std 0.05": np.clip(images + noise, 0.0, 1.0).astype(np.float32),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="+", choices=("fashion_mnist", "mnist"))
    parser.add_argument("--models", required=True, help="the model store make_presets used")
    parser.add_argument("--results", default=RESULTS)
    args = parser.parse_args(argv)
    store = ModelStore(args.models)
    rows = []
    for dataset in args.datasets:
        study = base_study(dataset)
        images, labels = first_examples(dataset, "test", IMAGES)
        inputs = {"clean": images, "behind the preset": LQVAE.from_preset(dataset).purify(images), **changes(images)}
        for name in (*GUIDES, *HELD_OUT):
            settings = {"dataset": dataset, "seed": study.seed, **study.classifier}
            path = store.path(f"classifier_{name}", settings)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"classifier {name} of {dataset} is not in {args.models}: run make presets")
            model = keras.models.load_model(path)
            cells = [
                f"{100 * float(np.mean(model.predict(x, batch_size=500, verbose=0).argmax(1) == labels)):.1f}"
                for x in inputs.values()
            ]
            rows.append(
                f"| {dataset} | {name}{' (held out)' if name in HELD_OUT else ''} | " + " | ".join(cells) + " |"
            )
    append_table(
        "Classifier fragility: accuracy under small pixel changes, beside the shipped preset",
        f"first {IMAGES:,} test images; accuracy in percent; classifiers of the presets' model store",
        ["dataset", "classifier", *inputs],
        rows,
        path=args.results,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
