"""Adversarial attacks on Keras classifiers, all behind one interface.

`make_attack(name, **params)` gives an `Attack`; calling it as `attack(model_fn, x, y)` returns
the adversarial batch. `model_fn` must return logits: `logits_of(keras_model)` makes one.
`ATTACKS` lists every name with its default parameters.

Example:
    >>> from lqvae_tf.attacks import logits_of, make_attack
    >>> attack = make_attack("pgd", eps=0.1)
    >>> x_adv = attack(logits_of(classifier), images, labels)
"""

from lqvae_tf.attacks import authors, carlini_wagner, cleverhans_attacks, deepfool, square  # noqa: F401  (they register their attacks)
from lqvae_tf.attacks.base import ATTACKS, Attack, ModelFn, logits_of, make_attack, register_attack

__all__ = ["ATTACKS", "Attack", "ModelFn", "logits_of", "make_attack", "register_attack"]
