"""Training speed of the purifier: steps per second with XLA (`jit_compile`) on and off.

For each combination of `--jit` and `--adversarial` it builds an LQ-VAE from the preset plus the
overrides, compiles it, runs `--warmup` steps (tracing and compiling, not counted), then times
`--steps` steps of `fit` over real Fashion-MNIST images already in memory (so the input pipeline
is not what is measured), and prints one JSON line per combination: steps/s, images/s, and the
seconds the warm-up took.

    python bench/train_speed.py                                  # fashion_mnist preset, 50 steps
    python bench/train_speed.py --set width=1.0 --adversarial reconstruction --steps 100
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
from lqvae_tf.config import ADVERSARIAL_MODES  # noqa: E402

CLASSIFIER_FREE = tuple(mode for mode in ADVERSARIAL_MODES if mode != "classifier")  # need no classifier
from lqvae_tf.data import DEBIAN_FASHION_MNIST, load_idx_arrays  # noqa: E402


def _override(text: str) -> tuple[str, object]:
    name, _, raw = text.partition("=")
    try:
        return name, json.loads(raw)
    except json.JSONDecodeError:
        return name, raw


def measure(config, images: np.ndarray, jit: bool, warmup: int, steps: int) -> dict:
    """Steps per second of `fit` on `images` for one configuration and XLA setting."""
    keras.utils.set_random_seed(config.seed)
    model = LQVAE(config)
    model.compile(jit_compile=jit)
    batch = config.batch_size
    start = time.perf_counter()
    model.fit(images[: warmup * batch], batch_size=batch, epochs=1, verbose=0, shuffle=False)
    warmup_seconds = time.perf_counter() - start
    start = time.perf_counter()
    model.fit(images[: steps * batch], batch_size=batch, epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    return {
        "jit_compile": jit,
        "adversarial": config.adversarial.mode if config.adversarial else None,
        "steps": steps,
        "batch_size": batch,
        "steps_per_s": round(steps / seconds, 3),
        "images_per_s": round(steps * batch / seconds, 1),
        "warmup_s": round(warmup_seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fashion_mnist")
    parser.add_argument("--set", dest="overrides", type=_override, action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per combination")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (tracing, XLA compilation)")
    parser.add_argument("--jit", default="off,on", help="which XLA settings to time: off, on or off,on")
    parser.add_argument(
        "--adversarial", action="append", default=[], choices=CLASSIFIER_FREE, help="also time this mode"
    )
    parser.add_argument("--adv-steps", type=int, default=5, help="PGD steps of the adversarial modes")
    parser.add_argument("--data-dir", default=DEBIAN_FASHION_MNIST)
    args = parser.parse_args()

    config = preset(args.preset).replace(**dict(args.overrides))
    needed = (max(args.steps, args.warmup)) * config.batch_size
    images, _ = load_idx_arrays(args.data_dir, "train")
    images = images[:needed].reshape(-1, *config.image_shape).astype(np.float32) / 255.0
    if len(images) < needed:
        images = np.resize(images, (needed, *config.image_shape))
    low, high = config.value_range
    images = images * (high - low) + low
    configs = [config] + [
        config.replace(adversarial={"mode": mode, "steps": args.adv_steps}) for mode in args.adversarial
    ]
    for each in configs:
        for jit in ({"off": False, "on": True}[value] for value in args.jit.split(",")):
            print(json.dumps(measure(each, images, jit, args.warmup, args.steps)), flush=True)


if __name__ == "__main__":
    main()
