"""Is a robust classifier masking its gradients, or is the iterative attack too weak? PGD and BIM
with several step sizes against FGSM, at one eps, on the same test images.

Why: issue 27 asks that no robust classifier of a study be weaker under PGD than under FGSM. On
CelebA the Madry and FGSM-trained classifiers (fine-tuned at eps 8/255) kept far more under the
study's PGD-40 of 0.01 at eps 0.3 than under FGSM. Forty steps of 0.01 from a random start in a
ball of radius 0.3 can move a pixel by 0.4 only, short of the far corner FGSM reaches in one step;
a step of 2.5 * eps / steps (Madry et al.'s rule) can, and a quarter of eps a step moves as coarsely
as the first steps of APGD's schedule. This measures which it is: an attack whose steps are too fine
(accuracy falls with the larger steps) or a classifier whose gradients mislead every step size (it
does not). Two more columns say where a random start goes wrong: PGD with a second random start on
the images the first left standing (the study's `restarts=2`), and how many random starts land where
the classifier's input gradient is exactly zero (every ReLU path off: sign steps of a zero gradient
never move, so PGD stays where it started while BIM, from the image itself, is not stuck).

Usage:
    python bench/masking_check.py --images 200 --eps 0.3 celeb_a MODEL.keras [MODEL.keras ...]
"""

from __future__ import annotations

import argparse
import os
import sys

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from results_table import append_table  # noqa: E402

from lqvae_tf.attacks import logits_of, make_attack  # noqa: E402
from lqvae_tf.evaluation.suite import load_test_arrays  # noqa: E402
from lqvae_tf.stats import Accuracy, accuracy_of  # noqa: E402

STEPS = 40


def attacks(eps: float) -> dict[str, tuple[str, dict]]:
    """The attacks compared, by label: FGSM, then BIM and PGD at the study's step and at Madry's rule."""
    rule, quarter = round(2.5 * eps / STEPS, 6), round(eps / 4, 6)
    return {
        "FGSM": ("fgsm", {"eps": eps}),
        f"BIM-{STEPS}, step 0.01": ("bim", {"eps": eps, "eps_iter": 0.01, "nb_iter": STEPS}),
        f"PGD-{STEPS}, step 0.01 (the study's)": ("pgd", {"eps": eps, "eps_iter": 0.01, "nb_iter": STEPS}),
        f"BIM-{STEPS}, step {rule:g}": ("bim", {"eps": eps, "eps_iter": rule, "nb_iter": STEPS}),
        f"PGD-{STEPS}, step {rule:g}": ("pgd", {"eps": eps, "eps_iter": rule, "nb_iter": STEPS}),
        # A quarter of eps a step: coarse, as the first steps of APGD's schedule (Croce & Hein 2020).
        f"BIM-{STEPS}, step {quarter:g}": ("bim", {"eps": eps, "eps_iter": quarter, "nb_iter": STEPS}),
        f"PGD-{STEPS}, step {quarter:g}": ("pgd", {"eps": eps, "eps_iter": quarter, "nb_iter": STEPS}),
    }


def zero_gradient_starts(model: keras.Model, images: np.ndarray, labels: np.ndarray, eps: float, seed: int) -> int:
    """How many of PGD's uniformly random starts in the eps-ball (clipped to [0, 1], as CleverHans
    starts) give an input gradient of the cross-entropy that is exactly zero everywhere."""
    start = np.clip(images + np.random.default_rng(seed).uniform(-eps, eps, images.shape), 0.0, 1.0)
    start = tf.constant(start.astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(start)
        logits = model(start, training=False)
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    gradient = tape.gradient(loss, start).numpy().reshape(len(images), -1)
    return int(np.sum(np.all(gradient == 0.0, axis=1)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=("mnist", "fashion_mnist", "celeb_a"))
    parser.add_argument("models", nargs="+", help="classifier .keras files (e.g. a study's robust ones)")
    parser.add_argument("--images", type=int, default=200, help="first test images attacked")
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--note", default="", help="how the machine was loaded, stated beside the table")
    args = parser.parse_args(argv)
    for path in args.models:
        if not os.path.isfile(path):
            parser.error(f"{path} does not exist")
    images, labels = load_test_arrays(args.dataset)
    images, labels = images[: args.images], labels[: args.images]
    chosen = attacks(args.eps)
    rows = []
    for path in args.models:
        model = keras.models.load_model(path)
        cells = [str(accuracy_of(model.predict(images, verbose=0), labels))]
        standing = {}  # per image, whether each PGD row left it correctly classified
        for label, (name, params) in chosen.items():
            adversarial = make_attack(name, **params)(logits_of(model), images, labels)
            standing[label] = np.argmax(model.predict(adversarial, verbose=0), axis=-1) == labels
            cells.append(str(Accuracy(int(standing[label].sum()), len(labels))))
        quarter_pgd = list(chosen)[-1]
        name, params = chosen[quarter_pgd]
        second = make_attack(name, **params)(logits_of(model), images, labels)  # another random start
        both = standing[quarter_pgd] & (np.argmax(model.predict(second, verbose=0), axis=-1) == labels)
        cells.append(str(Accuracy(int(both.sum()), len(labels))))
        cells.append(str(zero_gradient_starts(model, images, labels, args.eps, seed=0)))
        label = os.path.basename(os.path.dirname(path)) or os.path.basename(path)
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    append_table(
        f"PGD against FGSM on {args.dataset} at eps {args.eps:g}",
        f"the first {args.images} test images; accuracy in % [95% interval]" + (f"; {args.note}" if args.note else ""),
        ["classifier", "clean", *chosen, f"{quarter_pgd}, 2 restarts", "random starts with a zero gradient"],
        rows,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
