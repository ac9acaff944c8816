"""Benchmark: LQ-VAE train-step time with and without the Lipschitz penalty, and purify throughput.

The step is `LQVAE.train_step` compiled with `tf.function`, on batches of real images: what the
penalty costs, without `fit`'s own per-step work (data adapter, callbacks), which adds about the
same time to both variants.

Everything is measured in one process, one configuration after the other, so the ratios compare
like with like on a noisy machine. Run: `make bench` (or `python bench/bench_train_purify.py`);
the table is printed and appended to bench/RESULTS.md with the command and the machine.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from results_table import RESULTS, append_table  # noqa: E402

from lqvae_tf import LQVAE, preset  # noqa: E402
from lqvae_tf.data import DEBIAN_FASHION_MNIST, load_idx_arrays  # noqa: E402


class WithoutPenalty(LQVAE):
    """The same training step with the encoder run plainly: no inner tape, no penalty term."""

    def encode_with_gradient_norm(self, x, training):
        mean, log_var = self.encoder(x, training=training)
        return mean, log_var, tf.zeros(tf.shape(mean)[:1])


def seconds_per_step(
    models: dict[str, LQVAE], images: np.ndarray, batch: int, steps: int, warmup: int, rounds: int
) -> dict[str, float]:
    """Median seconds per `train_step` (compiled with tf.function) of each model on real batches.

    The variants are timed in alternating blocks of `steps`, round after round, so the machine's
    noise falls on all of them alike and their ratio holds even where absolute times drift.
    """
    batches = [tf.constant(images[i * batch : (i + 1) * batch]) for i in range(steps)]
    compiled = {}
    for name, model in models.items():
        model.compile()
        compiled[name] = tf.function(model.train_step)
        for x in batches[:warmup]:
            compiled[name](x)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, step in compiled.items():
            start = time.perf_counter()
            for x in batches:
                step(x)
            times[name].append((time.perf_counter() - start) / steps)
    return {name: float(np.median(values)) for name, values in times.items()}


def purify_throughput(model: LQVAE, images: np.ndarray, batch_size: int, count: int) -> float:
    model.purify(images[:batch_size], batch_size=batch_size)  # trace once
    start = time.perf_counter()
    if batch_size == 1:
        for i in range(count):
            model.purify(images[i : i + 1])
    else:
        model.purify(images[:count], batch_size=batch_size)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--presets", default="fashion_mnist,paper")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per variant")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (median taken)")
    parser.add_argument("--results", default=RESULTS)
    args = parser.parse_args()

    images = load_idx_arrays(DEBIAN_FASHION_MNIST, "train")[0][:6000].astype(np.float32) / 255.0
    rows = []
    for name in args.presets.split(","):
        config = preset(name)
        x = images * (config.value_range[1] - config.value_range[0]) + config.value_range[0]
        timed = seconds_per_step(
            {"with": LQVAE(config), "without": WithoutPenalty(config)},
            x,
            config.batch_size,
            args.steps,
            args.warmup,
            args.rounds,
        )
        with_penalty, without = timed["with"], timed["without"]
        model = LQVAE(config)
        batch1 = purify_throughput(model, x, 1, 200)
        batch256 = purify_throughput(model, x, 256, 2560)
        rows.append(
            f"| {name} | {config.width} | {config.batch_size} | {with_penalty * 1000:.0f} | "
            f"{without * 1000:.0f} | {with_penalty / without:.2f} | "
            f"{config.batch_size / with_penalty:.0f} | "
            f"{batch1:.0f} | {batch256:.0f} |"
        )
    append_table(
        "Train step and purify throughput",
        f"steps={args.steps}, warmup={args.warmup}, rounds={args.rounds} alternating, median of"
        " tf.function(train_step); real Fashion-MNIST",
        [
            "preset",
            "width",
            "batch",
            "ms/step with penalty",
            "ms/step without",
            "ratio",
            "train images/s",
            "purify img/s, batch 1",
            "purify img/s, batch 256",
        ],
        rows,
        args.results,
    )


if __name__ == "__main__":
    main()
