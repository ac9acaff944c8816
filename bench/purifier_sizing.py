"""How fast a purifier configuration becomes useful: clean accuracy behind it after each epoch.

This sized the pipeline's default run (pipelines/configs.py: `default_config`): it trains an
LQ-VAE on the full Fashion-MNIST train split with the `fashion_mnist` preset plus the given
overrides, and after every epoch prints the epoch's seconds and the accuracy of a trained
classifier on 1,000 purified test images, as JSON lines.

    .venv/bin/lqvae classifiers train --dataset fashion_mnist --names A --epochs 3 --limit 30000 \\
        --out runs/classifiers
    python bench/purifier_sizing.py --classifier runs/classifiers/classifier_A.keras \\
        --set batch_size=64 --set learning_rate=0.001 --set epochs=3
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from lqvae_tf import LQVAE, preset  # noqa: E402
from lqvae_tf.data import DEBIAN_FASHION_MNIST, batched, load, load_idx_arrays  # noqa: E402
from lqvae_tf.defenses import LQVAEDefense  # noqa: E402

TEST_IMAGES = 1000


class CleanAccuracy(keras.callbacks.Callback):
    """Prints each epoch's seconds and the classifier's accuracy on the purified test images."""

    def __init__(self, classifier: keras.Model, images: np.ndarray, labels: np.ndarray, overrides: dict):
        super().__init__()
        self.classifier, self.images, self.labels, self.overrides = classifier, images, labels, overrides

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        purified = LQVAEDefense(self.model).purify(self.images)
        accuracy = float((self.classifier.predict(purified, verbose=0).argmax(1) == self.labels).mean())
        seconds = round(time.perf_counter() - self.start)
        print(json.dumps({"overrides": self.overrides, "epoch": epoch + 1, "seconds": seconds, "clean": accuracy}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier", required=True, help="a trained classifier (.keras, [0, 1] pixels)")
    parser.add_argument("--set", action="append", default=[], help="an LQVAEConfig field over the preset: NAME=JSON")
    args = parser.parse_args()
    overrides = {name: json.loads(value) for name, _, value in (item.partition("=") for item in args.set)}
    config = preset("fashion_mnist").replace(**overrides)
    keras.utils.set_random_seed(config.seed)
    images, labels = load_idx_arrays(DEBIAN_FASHION_MNIST, "test")
    images = (images[:TEST_IMAGES].astype(np.float32) / 255.0).reshape(-1, 28, 28, 1)
    model = LQVAE(config)
    model.compile()
    callback = CleanAccuracy(keras.models.load_model(args.classifier), images, labels[:TEST_IMAGES], overrides)
    train = load("fashion_mnist", "train", value_range=config.value_range)
    model.fit(
        batched(train, config.batch_size, shuffle=True, seed=config.seed),
        epochs=config.epochs,
        callbacks=[callback],
        verbose=0,
    )


if __name__ == "__main__":
    main()
