"""Does free adversarial training (Shafahi et al. 2019) make a Madry column on this CPU?

Why: issue 27 asks for Madry baselines trained as the literature trains them. The studies' recipe,
PGD-10 from scratch for 12 epochs (`lqvae_tf.study.config._madry_from_scratch`), costs about eleven
passes of the classifier per image per epoch, the largest share of a study's models phase. Free
adversarial training costs what plain training costs: each minibatch is replayed `m` times, every
replay one forward-backward pass that updates the weights AND steps the perturbation (kept across
minibatches), for `epochs` passes over the data, `m * epochs` passes in all. Shafahi et al. report
it on par with PGD training; the issue cites 98.38% clean and 88.13% under PGD on MNIST. Single-
step training (FGSM with random start, N-FGSM) already failed the MNIST floors in issue 27's probe.

This trains classifier A (the study's architecture, Adam 1e-3, batch 128) from scratch by free
training at `--eps`, with the radius ramped linearly over the first `--ramp` share of the replays
(from scratch at MNIST's 0.3 the study's PGD training collapsed without a ramp), and after every
pass over the data measures clean accuracy and accuracy under the package's PGD-40 (step 0.01,
random start; the study's floors use 2 restarts) on the first `--images` test images.

Usage:
    python bench/free_adversarial_training.py --replays 8 --epochs 2 --ramp 0.4 mnist
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from results_table import append_table  # noqa: E402

from lqvae_tf.attacks import logits_of, make_attack  # noqa: E402
from lqvae_tf.classifiers.architectures import build_classifier  # noqa: E402
from lqvae_tf.classifiers.train import VALUE_RANGE  # noqa: E402
from lqvae_tf.data import split_arrays  # noqa: E402
from lqvae_tf.data.registry import dataset_info  # noqa: E402
from lqvae_tf.evaluation.suite import load_test_arrays  # noqa: E402
from lqvae_tf.stats import accuracy_of  # noqa: E402

BATCH_SIZE = 128
LEARNING_RATE = 1e-3
PGD_STEPS, PGD_STEP = 40, 0.01


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=("mnist", "fashion_mnist"))
    parser.add_argument("--replays", type=int, default=8, help="m: replays of each minibatch")
    parser.add_argument("--epochs", type=int, default=2, help="passes over the training data")
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--ramp", type=float, default=0.4, help="share of the replays over which eps grows")
    parser.add_argument("--images", type=int, default=1000, help="first test images attacked")
    parser.add_argument("--note", default="", help="how the machine was loaded, stated beside the table")
    args = parser.parse_args(argv)
    if args.replays < 1 or args.epochs < 1 or not 0.0 < args.ramp <= 1.0 or not 0.0 < args.eps <= 1.0:
        parser.error("replays and epochs must be positive, ramp and eps in (0, 1]")
    keras.utils.set_random_seed(0)
    images, labels = split_arrays(args.dataset, "train", value_range=VALUE_RANGE)
    test_images, test_labels = load_test_arrays(args.dataset)
    test_images, test_labels = test_images[: args.images], test_labels[: args.images]
    info = dataset_info(args.dataset)
    model = build_classifier("A", info.image_shape, info.num_classes)
    optimizer = keras.optimizers.Adam(LEARNING_RATE)
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    delta = tf.Variable(tf.zeros((BATCH_SIZE, *images.shape[1:])), trainable=False)

    @tf.function
    def replay(x, y, eps):
        # One pass: the weights descend and the perturbation ascends on the same gradient computation.
        with tf.GradientTape() as tape:
            tape.watch(delta)
            loss = cross_entropy(y, model(tf.clip_by_value(x + delta, 0.0, 1.0), training=True))
        *weight_grads, input_grad = tape.gradient(loss, [*model.trainable_variables, delta])
        optimizer.apply_gradients(zip(weight_grads, model.trainable_variables))
        delta.assign(tf.clip_by_value(delta + eps * tf.sign(input_grad), -eps, eps))
        return loss

    pgd = make_attack("pgd", eps=args.eps, eps_iter=PGD_STEP, nb_iter=PGD_STEPS)
    steps = len(images) // BATCH_SIZE
    total, done, start, rows = args.epochs * steps * args.replays, 0, time.perf_counter(), []
    for epoch in range(args.epochs):
        order = np.random.default_rng(epoch).permutation(len(images))
        for batch in range(steps):
            chosen = order[batch * BATCH_SIZE : (batch + 1) * BATCH_SIZE]
            x, y = tf.constant(images[chosen]), tf.constant(labels[chosen])
            for _ in range(args.replays):
                eps = args.eps * min(1.0, (done + 1) / (args.ramp * total))
                replay(x, y, tf.constant(eps, tf.float32))
                done += 1
        seconds = time.perf_counter() - start
        clean = accuracy_of(model.predict(test_images, verbose=0), test_labels)
        adversarial = pgd(logits_of(model), test_images, test_labels)
        robust = accuracy_of(model.predict(adversarial, verbose=0), test_labels)
        rows.append(f"| {epoch + 1} | {(epoch + 1) * args.replays} | {seconds:,.0f} | {clean} | {robust} |")
        print(rows[-1], flush=True)
    append_table(
        f"Free adversarial training of {args.dataset} classifier A at eps {args.eps:g}",
        f"m = {args.replays} replays, eps ramped over the first {args.ramp:g} of them, Adam {LEARNING_RATE:g}, "
        f"batch {BATCH_SIZE}; the first {args.images} test images, PGD-{PGD_STEPS} of {PGD_STEP:g} with a random "
        "start; accuracy in % [95% interval]; seconds of training, cumulative"
        + (f"; {args.note}" if args.note else ""),
        ["pass over the data", "forward-backward passes per image", "seconds", "clean", f"PGD-{PGD_STEPS}"],
        rows,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
