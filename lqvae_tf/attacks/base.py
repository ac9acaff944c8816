"""The one interface of every attack: `make_attack(name, **params)(model_fn, x, y) -> adversarial x`.

An attack is a name and a dict of parameters, nothing else, so what was run can be written next
to its results as JSON and rebuilt from it with `make_attack(name, **params)`. Each attack module
adds its attacks to the registry with `register_attack`.

Attacks take `model_fn`, a callable from images to LOGITS, not probabilities: a softmax output
saturates, and the vanishing gradients through it would hide a classifier's weakness instead of
measuring it. `logits_of(keras_model)` gives that callable for a Keras classifier, softmax or not.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from lqvae_tf.models.inputs import check_images
from lqvae_tf.models.logits import ModelFn, logits_of  # noqa: F401  (the attacks' public name)

ATTACKS: dict[str, dict[str, Any]] = {}
"""Every registered attack's name -> its default parameters."""


@dataclasses.dataclass(frozen=True)
class _Registration:
    run: Callable[..., tf.Tensor | np.ndarray]
    validate: Callable[[dict[str, Any]], dict[str, Any]]


_REGISTRY: dict[str, _Registration] = {}


def register_attack(
    name: str,
    defaults: dict[str, Any],
    validate: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Callable:
    """Decorator adding an attack function to the registry under `name`.

    Args:
        name: the attack's name in `make_attack` and in results.
        defaults: every parameter with its default value (JSON-serialisable); it must hold
            `clip_min` and `clip_max`, the range inputs and outputs live in.
        validate: takes the complete, type-checked parameters and returns them normalised, or
            raises `ValueError` saying which value is wrong and why.

    The decorated function is called as `run(model_fn, x, y, **params)` with `x` a float32
    tensor and `y` an int64 tensor of true labels, and returns the adversarial batch.
    """
    missing = {"clip_min", "clip_max"} - set(defaults)
    if missing:
        raise ValueError(f"attack {name!r} needs default parameters {sorted(missing)}")

    def add(run: Callable) -> Callable:
        ATTACKS[name] = dict(defaults)
        _REGISTRY[name] = _Registration(run=run, validate=validate or (lambda params: params))
        return run

    return add


def _check_type(attack: str, key: str, default: Any, value: Any) -> Any:
    """`value` coerced to the kind of `default` (bool, int, float, or float-or-None)."""
    is_number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if isinstance(default, bool):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"attack {attack!r}: {key} must be True or False, got {value!r}")
        return bool(value)
    if isinstance(default, int):
        if not is_number or not math.isfinite(value) or int(value) != value:
            raise ValueError(f"attack {attack!r}: {key} must be an integer, got {value!r}")
        return int(value)
    if isinstance(default, float) or default is None:
        if value is None and default is None:
            return None
        if not is_number or not math.isfinite(value):
            raise ValueError(f"attack {attack!r}: {key} must be a finite number, got {value!r}")
        return float(value)
    return value  # other kinds (a norm given as "inf" or 2) are the attack's `validate` to check


@dataclasses.dataclass(frozen=True)
class Attack:
    """A registered attack with all its parameters: call it on a model and a batch.

    Build one with `make_attack`; `Attack(name, params)` does the same, filling in defaults.

    Args:
        name: a key of `ATTACKS`, e.g. "fgsm".
        params: every parameter, JSON-serialisable, as it will be written next to results.

    Example:
        >>> attack = make_attack("pgd", eps=0.1)
        >>> x_adv = attack(logits_of(classifier), x, y)
        >>> json.dumps({"attack": attack.name, **attack.params})
    """

    name: str
    params: dict[str, Any]

    def __post_init__(self):
        if self.name not in _REGISTRY:
            raise ValueError(f"unknown attack {self.name!r}; known attacks: {sorted(_REGISTRY)}")
        if not isinstance(self.params, dict):
            raise ValueError(f"attack {self.name!r}: params must be a dict, got {type(self.params).__name__}")
        defaults = ATTACKS[self.name]
        unknown = sorted(set(self.params) - set(defaults))
        if unknown:
            raise ValueError(
                f"attack {self.name!r} has no parameter {', '.join(unknown)}; its parameters: {sorted(defaults)}"
            )
        params = {
            key: _check_type(self.name, key, default, self.params.get(key, default))
            for key, default in defaults.items()
        }
        if not params["clip_min"] < params["clip_max"]:
            raise ValueError(
                f"attack {self.name!r}: clip_min ({params['clip_min']}) must be below clip_max ({params['clip_max']})"
            )
        try:
            params = _REGISTRY[self.name].validate(params)
        except ValueError as error:
            raise ValueError(f"attack {self.name!r}: {error}") from None
        object.__setattr__(self, "params", params)

    def __call__(self, model_fn: ModelFn, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Adversarial versions of a batch of images, attacked all at once.

        Args:
            model_fn: images -> LOGITS (batch, classes), differentiable with `tf.GradientTape`
                (see `logits_of`).
            x: float images (batch, height, width, channels) in [clip_min, clip_max].
            y: their true integer labels (batch,); untargeted attacks push away from them.

        Returns:
            float32 numpy array of x's shape, in [clip_min, clip_max].
        """
        clip_min, clip_max = self.params["clip_min"], self.params["clip_max"]
        if np.ndim(x) != 4:
            raise ValueError(f"x must be images (batch, height, width, channels), got shape {np.shape(x)}")
        x = check_images(x, np.shape(x)[1:], (clip_min, clip_max), name="x")
        x = np.clip(x, clip_min, clip_max)  # check_images lets float round-off through
        y = np.asarray(y)
        if not np.issubdtype(y.dtype, np.integer) or y.shape != x.shape[:1]:
            raise ValueError(f"y must be {len(x)} integer labels, got {y.dtype} of shape {y.shape}")
        x_adv = _REGISTRY[self.name].run(model_fn, tf.constant(x), tf.constant(y, tf.int64), **self.params)
        # The attacks clip already; this makes the range a guarantee, whatever their round-off.
        return np.clip(np.asarray(x_adv, np.float32), clip_min, clip_max)


def make_attack(name: str, **params: Any) -> Attack:
    """The attack registered as `name`, with `params` overriding its defaults.

    Raises:
        ValueError: for an unknown name or parameter (naming the known ones), or a bad value.
    """
    return Attack(name, params)
