"""Square attack (Andriushchenko et al. 2020, "Square Attack: a query-efficient black-box
adversarial attack via random search"), L-inf, untargeted: a gradient-free check of gradient masking.

Random search on the margin loss `logit_y - max_{j != y} logit_j`: from vertical stripes of
+-eps, each query moves one random square window of every image still standing to a fresh
random corner of the eps-ball (one sign per channel), kept only where it lowers the margin.
The window's area is a fraction `p` of the image that halves on the paper's schedule. It only
calls `model_fn` forward, so a filter's zero or false gradients cannot stop it: if it beats the
gradient attacks on a defense, that defense masks its gradients.

Imported by `lqvae_tf.attacks`, which registers "square" with `make_attack`.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from lqvae_tf.attacks.base import ModelFn, register_attack

# eps 0.3 as the other L-inf attacks; p_init 0.8 and 5,000 queries as AutoAttack's standard
# L-inf Square (fra31/auto-attack, autoattack.py); 1,000 queries keep a CPU run short.
SQUARE_DEFAULTS = dict(eps=0.3, n_queries=1000, p_init=0.8, seed=0, clip_min=0.0, clip_max=1.0)
# The paper's schedule (Andriushchenko et al. 2020, p_selection in square.py) for 10,000
# queries: p halves at these iterations, rescaled to `n_queries`.
HALVING_POINTS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
SCHEDULE_QUERIES = 10_000


def _check(params: dict) -> dict:
    if not params["eps"] > 0:
        raise ValueError(f"eps must be > 0, got {params['eps']}")
    if params["n_queries"] < 1:
        raise ValueError(f"n_queries must be >= 1, got {params['n_queries']}")
    if not 0 < params["p_init"] <= 1:
        raise ValueError(f"p_init must be in (0, 1], got {params['p_init']}")
    return params


def square_fraction(p_init: float, query: int, n_queries: int) -> float:
    """The fraction of the image a window covers at `query` (the paper's halving schedule)."""
    scaled = query * SCHEDULE_QUERIES / n_queries
    return p_init / 2 ** sum(scaled > point for point in HALVING_POINTS)


def _margins(model_fn: ModelFn, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    logits = np.asarray(model_fn(tf.constant(images, tf.float32)), np.float64)
    true = logits[np.arange(len(labels)), labels]
    logits[np.arange(len(labels)), labels] = -np.inf
    return true - logits.max(axis=1)


@register_attack("square", SQUARE_DEFAULTS, _check)
def square(
    model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, *, eps, n_queries, p_init, seed, clip_min, clip_max
) -> np.ndarray:
    """L-inf Square attack on a batch; stops each image as soon as it is misclassified."""
    rng = np.random.default_rng(seed)
    x, y = x.numpy(), y.numpy()
    count, height, width, channels = x.shape
    lower, upper = np.maximum(x - eps, clip_min), np.minimum(x + eps, clip_max)
    stripes = rng.choice([-eps, eps], size=(count, 1, width, channels))
    adversarial = np.clip(x + stripes, lower, upper).astype(np.float32)
    margins = _margins(model_fn, adversarial, y)
    for query in range(1, n_queries):
        standing = np.flatnonzero(margins > 0)
        if len(standing) == 0:
            break
        side = max(1, min(height - 1, round(math.sqrt(square_fraction(p_init, query, n_queries) * height * width))))
        candidates = adversarial[standing].copy()
        for row, index in enumerate(standing):
            top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
            corner = rng.choice([-eps, eps], size=(1, 1, channels))
            window = (slice(top, top + side), slice(left, left + side))
            candidates[row][window] = np.clip(x[index][window] + corner, lower[index][window], upper[index][window])
        new_margins = _margins(model_fn, candidates, y[standing])
        better = new_margins < margins[standing]
        adversarial[standing[better]] = candidates[better]
        margins[standing[better]] = new_margins[better]
    return adversarial
