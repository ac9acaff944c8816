"""The CleverHans TF2 attacks behind the `Attack` interface: FGSM, BIM, PGD (L-inf, L2), MIM, CW-L2, SPSA.

All are untargeted: they push each image away from its true label `y`. Defaults are for images
in [0, 1] of MNIST-like data, the setting of the papers they come from.

The gradient attacks run CleverHans's own loops eagerly: their gradient step is a `tf.function`
already, and tracing a whole 40-step PGD into one graph costs seconds, more than the eager loop
takes for a batch of a few hundred images. SPSA, which is op-by-op slow eagerly, runs in a graph.

PGD and BIM return CleverHans' last iterate, not the first that fooled the model on the way;
`python bench/pgd_iterates.py` measures what the difference is worth through the LQ-VAE filter
(bench/RESULTS.md), where a quantized prediction could let a walk pass a fooling point and leave it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
from cleverhans.tf2.attacks.momentum_iterative_method import momentum_iterative_method
from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent

from lqvae_tf.attacks import cleverhans_compat
from lqvae_tf.attacks.base import ModelFn, register_attack

CLIP = dict(clip_min=0.0, clip_max=1.0)

# Defense-GAN (Samangouei et al. 2018; kabkabm/defensegan whitebox.py): FGSM eps 0.3 on [0, 1].
FGSM_DEFAULTS = dict(eps=0.3, norm="inf", **CLIP)
# Madry et al. 2018, MNIST challenge config.json (MadryLab/mnist_challenge): eps 0.3, 40 steps
# of 0.01. BIM (Kurakin et al. 2016) gets the same budget, so the two differ only in PGD's
# random start. The norm is in the name: L-inf for these two, L2 for pgd_l2.
PGD_DEFAULTS = dict(eps=0.3, eps_iter=0.01, nb_iter=40, **CLIP)
BIM_DEFAULTS = dict(PGD_DEFAULTS)
# eps 2.0: the MNIST L2 radius of Tsipras et al. 2019 ("Robustness may be at odds with
# accuracy"); 40 steps as for L-inf, of eps / 20 (our choice), so a walk can cross the ball twice.
PGD_L2_DEFAULTS = dict(eps=2.0, eps_iter=0.1, nb_iter=40, **CLIP)
# CleverHans 4.0.0's defaults for momentum_iterative_method (Dong et al. 2018: 10 iterations,
# decay 1.0), eps 0.3 as the other L-inf attacks.
MIM_DEFAULTS = dict(eps=0.3, eps_iter=0.06, nb_iter=10, decay_factor=1.0, norm="inf", **CLIP)
# Defense-GAN's white-box CW (kabkabm/defensegan whitebox.py): 1 binary-search step, 100
# iterations, learning rate 10, initial constant 100; confidence 0, early abort and batches of
# 128 images (the early abort looks at a batch's total loss) as CleverHans's defaults.
CW_DEFAULTS = dict(
    batch_size=128,
    binary_search_steps=1,
    max_iterations=100,
    learning_rate=10.0,
    initial_const=100.0,
    confidence=0.0,
    abort_early=True,
    **CLIP,
)
# CleverHans 4.0.0's SPSA defaults (learning rate 0.01, delta 0.01, 128 samples per step, from
# Uesato et al. 2018); eps 0.3 as the other L-inf attacks; 100 steps, stopping an image as soon
# as it is misclassified (a margin loss below 0), which CleverHans's docstring recommends.
SPSA_DEFAULTS = dict(
    eps=0.3,
    nb_iter=100,
    learning_rate=0.01,
    delta=0.01,
    spsa_samples=128,
    spsa_iters=1,
    early_stop_loss_threshold=0.0,
    **CLIP,
)

_NORMS = {"inf": np.inf, 1: 1, 2: 2}


def _canonical_norm(norm: Any, allowed: tuple) -> str | int:
    """`norm` as written in params ("inf", 1 or 2), accepting np.inf for "inf"."""
    if isinstance(norm, float) and norm == np.inf:
        norm = "inf"
    elif isinstance(norm, (int, float, np.number)) and not isinstance(norm, bool) and norm in (1, 2):
        norm = int(norm)
    if isinstance(norm, bool) or norm not in allowed:
        raise ValueError(f"norm must be one of {list(allowed)}, got {norm!r}")
    return norm


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _check_eps(params: dict, norms: tuple) -> dict:
    _require(params["eps"] > 0, f"eps must be > 0, got {params['eps']}")
    if "eps_iter" in params:
        _require(
            0 < params["eps_iter"] <= params["eps"],
            f"eps_iter must be in (0, eps={params['eps']}], got {params['eps_iter']}",
        )
    if "nb_iter" in params:
        _require(params["nb_iter"] >= 1, f"nb_iter must be >= 1, got {params['nb_iter']}")
    if "norm" in params:
        params = {**params, "norm": _canonical_norm(params["norm"], norms)}
    return params


@register_attack("fgsm", FGSM_DEFAULTS, lambda params: _check_eps(params, ("inf", 1, 2)))
def fgsm(model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, *, eps, norm, clip_min, clip_max) -> tf.Tensor:
    """Fast gradient (sign) method, Goodfellow et al. 2015: one step of size eps."""
    return fast_gradient_method(model_fn, x, eps, _NORMS[norm], clip_min=clip_min, clip_max=clip_max, y=y)


def _projected_gradient_descent(model_fn, x, y, norm, rand_init, *, eps, eps_iter, nb_iter, clip_min, clip_max):
    return projected_gradient_descent(
        model_fn,
        x,
        eps,
        eps_iter,
        nb_iter,
        norm,
        clip_min=clip_min,
        clip_max=clip_max,
        y=y,
        rand_init=rand_init,
    )


@register_attack("bim", BIM_DEFAULTS, lambda params: _check_eps(params, ()))
def bim(model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, **params) -> tf.Tensor:
    """Basic iterative method (iterative FGSM), Kurakin et al. 2016: PGD from x itself."""
    return _projected_gradient_descent(model_fn, x, y, np.inf, False, **params)


@register_attack("pgd", PGD_DEFAULTS, lambda params: _check_eps(params, ()))
def pgd(model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, **params) -> tf.Tensor:
    """Projected gradient descent, Madry et al. 2018, from a uniformly random start in the ball."""
    return _projected_gradient_descent(model_fn, x, y, np.inf, True, **params)


@register_attack("pgd_l2", PGD_L2_DEFAULTS, lambda params: _check_eps(params, ()))
def pgd_l2(model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, **params) -> tf.Tensor:
    """Projected gradient descent in an L2 ball (Madry et al. 2018), from a random start."""
    return _projected_gradient_descent(model_fn, x, y, 2, True, **params)


@register_attack("mim", MIM_DEFAULTS, lambda params: _check_eps(params, ("inf", 2)))
def mim(
    model_fn: ModelFn,
    x: tf.Tensor,
    y: tf.Tensor,
    *,
    eps,
    eps_iter,
    nb_iter,
    decay_factor,
    norm,
    clip_min,
    clip_max,
) -> tf.Tensor:
    """Momentum iterative method, Dong et al. 2018: BIM with normalised-gradient momentum."""
    return momentum_iterative_method(
        model_fn,
        x,
        eps=eps,
        eps_iter=eps_iter,
        nb_iter=nb_iter,
        norm=_NORMS[norm],
        clip_min=clip_min,
        clip_max=clip_max,
        y=y,
        decay_factor=decay_factor,
        sanity_checks=False,  # Attack.__call__ has checked the range
    )


def _check_cw(params: dict) -> dict:
    _require(params["batch_size"] >= 1, f"batch_size must be >= 1, got {params['batch_size']}")
    _require(
        params["binary_search_steps"] == 1,
        f"binary_search_steps must be 1 (see cleverhans_compat), got {params['binary_search_steps']}",
    )
    _require(params["max_iterations"] >= 1, f"max_iterations must be >= 1, got {params['max_iterations']}")
    _require(params["learning_rate"] > 0, f"learning_rate must be > 0, got {params['learning_rate']}")
    _require(params["initial_const"] > 0, f"initial_const must be > 0, got {params['initial_const']}")
    _require(params["confidence"] >= 0, f"confidence must be >= 0, got {params['confidence']}")
    return params


@register_attack("cw", CW_DEFAULTS, _check_cw)
def cw(model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, **params) -> np.ndarray:
    """Carlini-Wagner L2, Carlini & Wagner 2017: Adam on a tanh-space perturbation, margin loss."""
    attack = cleverhans_compat.CarliniWagnerL2(model_fn, y=y.numpy(), **params)
    # CleverHans takes a given `y` as the TARGET class; ours are true labels, to move away from.
    attack.targeted = False
    return attack.attack(x.numpy())


def _check_spsa(params: dict) -> dict:
    params = _check_eps(params, ())
    _require(params["learning_rate"] > 0, f"learning_rate must be > 0, got {params['learning_rate']}")
    _require(params["delta"] > 0, f"delta must be > 0, got {params['delta']}")
    _require(
        params["spsa_samples"] >= 2 and params["spsa_samples"] % 2 == 0,
        f"spsa_samples must be even and >= 2, got {params['spsa_samples']}",
    )
    _require(params["spsa_iters"] >= 1, f"spsa_iters must be >= 1, got {params['spsa_iters']}")
    return params


@register_attack("spsa", SPSA_DEFAULTS, _check_spsa)
def spsa(model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, **params) -> tf.Tensor:
    """SPSA, Uesato et al. 2018: gradient-free L-inf attack on the logit margin.

    CleverHans's SPSA estimates gradients one image at a time; the batch is mapped through it
    inside one `tf.function`, so the graph is built once per call instead of run op by op.
    """

    @tf.function
    def attack_batch(x, y):
        def attack_one(image_and_label):
            image, label = image_and_label
            return cleverhans_compat.spsa(model_fn, image[None], label[None], **params)[0]

        return tf.map_fn(attack_one, (x, y), fn_output_signature=x.dtype)

    return attack_batch(x, y)
