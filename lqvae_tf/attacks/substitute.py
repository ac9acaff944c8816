"""Black-box substitute training with Jacobian-based data augmentation (Papernot et al. 2017).

The attacker has only query access to the target (its predicted labels) and a few held-out
images. It trains a substitute on them, labelled by the target, then grows the set along the
sign of the substitute's Jacobian (`x + lambda * sign(dF_y(x)/dx)`, y the target's label) and
retrains, for several rounds. Adversarials crafted on the substitute are then transferred.
Defense-GAN's black-box setting (kabkabm/defensegan): 150 seeds, 6 rounds, lambda 0.1.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

PAPERNOT_SEEDS = 150
PAPERNOT_ROUNDS = 6
PAPERNOT_STEP = 0.1


def jacobian_augmentation(
    substitute: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    step: float,
    clip: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 256,
) -> np.ndarray:
    """`x + step * sign(d substitute_y(x) / dx)` for each image and its oracle label y.

    The gradients are taken `batch_size` images at a time: the set doubles every round, and one
    pass over 2,400 CelebA faces holds activations of 5 GB per convolution.
    """
    gradients = []
    for start in range(0, len(images), batch_size):
        x = tf.constant(images[start : start + batch_size], tf.float32)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            outputs = substitute(x, training=False)
            chosen = tf.gather(outputs, tf.constant(labels[start : start + batch_size], tf.int64), axis=1, batch_dims=1)
        gradients.append(np.sign(tape.gradient(chosen, x).numpy()))
    return np.clip(images + step * np.concatenate(gradients), *clip).astype(np.float32)


def train_substitute(
    oracle: Callable[[np.ndarray], np.ndarray],
    build: Callable[[], keras.Model],
    seeds: np.ndarray,
    rounds: int = PAPERNOT_ROUNDS,
    step: float = PAPERNOT_STEP,
    epochs: int = 10,
    batch_size: int = 128,
    clip: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
) -> keras.Model:
    """Trains a substitute of the `oracle` by Papernot's procedure.

    Args:
        oracle: images -> predicted integer labels of the attacked system (query access only).
        build: returns a fresh, uncompiled Keras classifier that outputs logits.
        seeds: the attacker's initial images (e.g. 150 held-out ones).
        rounds: substitute training rounds; the set doubles after each but the last.
        step: lambda, the augmentation step.
        epochs: training epochs per round.
        batch_size: training batch size.
        clip: valid pixel range.
        seed: seeds the substitute's initialisation and shuffling.

    Returns:
        The trained substitute (logits).
    """
    if rounds < 1 or len(seeds) == 0:
        raise ValueError(f"need rounds >= 1 and some seed images, got rounds={rounds}, {len(seeds)} seeds")
    keras.utils.set_random_seed(seed)
    substitute = build()
    substitute.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    images = np.asarray(seeds, np.float32)
    for round_index in range(rounds):
        labels = np.asarray(oracle(images)).astype(np.int64)
        substitute.fit(images, labels, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True)
        if round_index < rounds - 1:
            images = np.concatenate([images, jacobian_augmentation(substitute, images, labels, step, clip)])
    return substitute
