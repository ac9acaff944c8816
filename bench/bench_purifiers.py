"""Benchmark: purification throughput of LQ-VAE against Defense-GAN, measured in one run.

LQ-VAE purifies in one forward pass (`g(H(mu(x)))`); Defense-GAN searches its generator's latent
space for every image (L descent steps from each of R random starts, Samangouei et al. 2018).
The paper claims LQ-VAE is orders of magnitude faster; this measures by how much, at
Defense-GAN's reference search (L = 200, R = 10) and at reduced ones.

Throughput does not depend on the weights, only on the networks' shapes, so the models are
freshly built (no training needed): the LQ-VAE presets and a WGAN-GP generator with the reference
latent size 128. Every setting is timed in alternating rounds (median images/s), so the ratios
compare like with like on a noisy machine. Run: `python bench/bench_purifiers.py`; the table is
printed and appended to bench/RESULTS.md with the command and the machine.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from results_table import RESULTS, append_table  # noqa: E402

from lqvae_tf import LQVAE, preset  # noqa: E402
from lqvae_tf.data import DEBIAN_FASHION_MNIST, load_idx_arrays  # noqa: E402
from lqvae_tf.defenses import DefenseGANDefense, LQVAEDefense  # noqa: E402
from lqvae_tf.models import WGANGP  # noqa: E402
from lqvae_tf.training import GANTrainingConfig  # noqa: E402


def images_per_second(purifiers: dict[str, tuple[Callable, np.ndarray]], rounds: int) -> dict[str, float]:
    """Median images/s of each `purify(images)` over `rounds` alternating rounds (after one warm-up call)."""
    for purify, images in purifiers.values():
        purify(images[:2])  # trace
    rates: dict[str, list[float]] = {name: [] for name in purifiers}
    for _ in range(rounds):
        for name, (purify, images) in purifiers.items():
            start = time.perf_counter()
            purify(images)
            rates[name].append(len(images) / (time.perf_counter() - start))
    return {name: float(np.median(values)) for name, values in rates.items()}


def critic_step_ms(width: float, images: np.ndarray) -> float:
    """Milliseconds per WGAN-GP critic step (batch 64, latent 128) in `fit`, after a warm-up epoch."""
    model = GANTrainingConfig(width=width, latent_dim=128, batch_size=64).model()
    model.fit(images, batch_size=64, epochs=1, steps_per_epoch=5, verbose=0)
    start = time.perf_counter()
    model.fit(images, batch_size=64, epochs=1, verbose=0)
    return 1000 * (time.perf_counter() - start) / (len(images) // 64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lqvae-images", type=int, default=2048, help="images per LQ-VAE round")
    parser.add_argument("--dgan-images", type=int, default=64, help="images per Defense-GAN round")
    parser.add_argument("--searches", default="200x10,50x4,10x1", help="Defense-GAN L x R settings")
    parser.add_argument("--gan-widths", default="1.0", help="generator widths, comma-separated (1.0: the reference's)")
    parser.add_argument("--critic-steps", type=int, default=25, help="timed WGAN-GP critic steps per width")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", default=RESULTS)
    args = parser.parse_args()

    images = load_idx_arrays(DEBIAN_FASHION_MNIST, "test")[0].astype(np.float32) / 255.0
    images = images.reshape(-1, 28, 28, 1)
    purifiers: dict[str, tuple[Callable, np.ndarray]] = {}
    for name in ("fashion_mnist", "paper"):
        defense = LQVAEDefense(LQVAE(preset(name)))
        purifiers[f"LQ-VAE, preset {name} (width {preset(name).width})"] = (
            lambda x, d=defense: d.purify(x, batch_size=256),
            images[: args.lqvae_images],
        )
    widths = [float(w) for w in args.gan_widths.split(",")]
    for width in widths:
        generator = WGANGP((28, 28, 1), latent_dim=128, width=width)
        for search in args.searches.split(","):
            steps, restarts = (int(v) for v in search.split("x"))
            defense = DefenseGANDefense(generator, steps=steps, restarts=restarts)
            label = f"Defense-GAN, generator width {width}, L = {steps}, R = {restarts}"
            purifiers[label] = (defense.purify, images[: args.dgan_images])

    rates = images_per_second(purifiers, args.rounds)
    fastest_lqvae = max(rate for name, rate in rates.items() if name.startswith("LQ-VAE"))
    rows = [
        f"| {name} | {len(purifiers[name][1])} | {rate:.1f} | {fastest_lqvae / rate:,.1f}x |"
        for name, rate in rates.items()
    ]
    append_table(
        "Purification throughput: LQ-VAE against Defense-GAN",
        f"rounds={args.rounds} alternating, median; untrained networks of the real shapes (throughput does not "
        "depend on weights); Defense-GAN generator latent 128, lr 10, momentum 0.7; "
        "LQ-VAE batch 256; real Fashion-MNIST test images",
        ["purifier", "images per round", "images/s", "fastest LQ-VAE is ... faster"],
        rows,
        args.results,
    )
    train = images[: 64 * args.critic_steps]
    append_table(
        "WGAN-GP training step (Defense-GAN's generator)",
        f"{args.critic_steps} critic steps of batch 64 after a warm-up, Keras fit; a generator step every 5th",
        ["generator width", "ms per critic step"],
        [f"| {width} | {critic_step_ms(width, train):.0f} |" for width in widths],
        args.results,
    )


if __name__ == "__main__":
    main()
