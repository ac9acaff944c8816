"""What the standard Carlini-Wagner L2 costs beside Defense-GAN's CW, per image, on one classifier.

Why: issue 27 asks for both CW settings in every study's white-box table, and for the tables phase
of `lqvae reproduce DATASET` to fit 150 minutes on a 2-core CPU. `cw_l2` (9 binary-search rounds of
up to 1,000 Adam steps, early abort) costs many times `cw` (one round of 100 steps); this measures
both on the same test images in one run (a ratio, which a shared machine's noise leaves standing)
and projects a white-box row of `cw_l2` on the study's whole sample, for each classifier it attacks
(the clean one and each robust column's).

Usage:
    python bench/cw_cost.py --classifier MODEL.keras --images 128 mnist
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from results_table import append_table  # noqa: E402

from lqvae_tf.attacks import logits_of, make_attack  # noqa: E402
from lqvae_tf.evaluation.suite import load_test_arrays  # noqa: E402
from lqvae_tf.study import ROBUST_COLUMNS, study_config  # noqa: E402


def measure(name: str, model: keras.Model, images: np.ndarray, labels: np.ndarray) -> dict:
    """Seconds per image, mean L2 of the changes and the share of images still classified right."""
    attack = make_attack(name)
    start = time.perf_counter()
    adversarial = attack(logits_of(model), images, labels)
    seconds = time.perf_counter() - start
    l2 = np.sqrt(((adversarial - images) ** 2).reshape(len(images), -1).sum(axis=1))
    right = (np.argmax(model.predict(adversarial, verbose=0), axis=-1) == labels).mean()
    return {"per_image": seconds / len(images), "mean_l2": float(l2.mean()), "accuracy": 100 * float(right)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=("mnist", "fashion_mnist", "celeb_a"))
    parser.add_argument("--classifier", required=True, help="a study classifier's .keras file")
    parser.add_argument("--images", type=int, default=128, help="first test images attacked")
    parser.add_argument("--note", default="", help="how the machine was loaded, stated beside the table")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.classifier):
        parser.error(f"--classifier {args.classifier} does not exist")
    images, labels = load_test_arrays(args.dataset)
    images, labels = images[: args.images], labels[: args.images]
    model = keras.models.load_model(args.classifier)
    study = study_config(args.dataset)
    attacked = len(study.classifiers) * (1 + len(ROBUST_COLUMNS))  # clean and robust classifiers
    results = {name: measure(name, model, images, labels) for name in ("cw", "cw_l2")}
    ratio = results["cw_l2"]["per_image"] / results["cw"]["per_image"]
    rows = [
        f"| {name} | {1000 * r['per_image']:.1f} | {r['mean_l2']:.2f} | {r['accuracy']:.1f} | "
        f"{r['per_image'] * study.n * attacked / 60:.0f} |"
        for name, r in results.items()
    ]
    append_table(
        f"Carlini-Wagner cost on {args.dataset}",
        f"{args.images} test images, classifier `{os.path.basename(os.path.dirname(args.classifier))}`; the "
        f"projection: the study's n = {study.n} images on each of its {attacked} classifiers (clean and robust); "
        f"cw_l2 / cw per image: {ratio:.1f}{'; ' + args.note if args.note else ''}",
        ["attack", "ms per image", "mean L2", "accuracy left (%)", "projected white-box rows (min)"],
        rows,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
