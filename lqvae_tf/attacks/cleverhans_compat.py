"""CleverHans 4.0.0's Carlini-Wagner L2 and SPSA, made to run under Keras 3.

CleverHans 4.0.0 (2021) was written against Keras 2's optimizers. Under Keras 3:

- `carlini_wagner_l2` restarts Adam before each binary-search step with
  `for var in self.optimizer.variables(): var.assign(zeros)`. In Keras 3 `variables` is a property
  holding a list, so the call raises `TypeError: 'list' object is not callable`. Making it callable
  is not enough: Keras 3 keeps the learning rate among an optimizer's `variables`, so that loop
  would set it to 0 and the attack would silently stop moving. `CarliniWagnerL2` here gives it an
  Adam whose `variables` can be called and whose learning rate is not a variable (a callable
  learning rate is kept out of them), so the restart zeroes exactly the step count and moments.
  A Keras 3 optimizer is also built once, for one set of variables, where CleverHans makes a new
  perturbation variable for each batch: each batch gets its own Adam here.
- `spsa` builds `SPSAAdam`, a `keras.optimizers.Adam` subclass, as `Adam(lr=...)`: Keras 3 rejects
  the `lr` argument (and has no `lr` attribute, which `SPSAAdam._apply_gradients` reads); and a
  Keras 3 optimizer creates variables when constructed, which `tf.function` forbids after the
  first trace, so SPSA could only run eagerly, an image at a time. SPSAAdam never uses the Keras
  optimizer it inherits from (its Adam state lives in explicit tensors), so `spsa` here runs
  CleverHans's `spsa` with `SPSAAdam` swapped for `SPSAAdamState`: the same methods on a plain
  object carrying the four constants they read.

Three bugs of CleverHans 4.0.0's TF2 Carlini-Wagner itself, not Keras 3's doing, are fixed on
the way, as `CarliniWagnerL2` meets them:

- Its trade-off constant is built with the images' shape (batch, H, W, C) where the loss needs one
  per image, so `const * loss_per_image` broadcasts to (batch, H, W, batch): the constant is scaled
  by batch*H*W for one-channel images, and three-channel batches fail with a shape error. Each
  step here passes one constant per image.
- The binary search's bookkeeping mixes the same shapes (`tf.minimum(upper_bound, const)`), which
  fails for three channels. Images are handed to it folded to one channel, (batch, H, W*C, 1), and
  unfolded for the model: nothing else changes, as the attack's change of variables is per value
  and its distance sums over all values. That bookkeeping still makes a (batch, H, W*C, batch)
  tensor once per batch, so keep `batch_size` moderate for large images. Its results would be
  wrong after the first step, so only `binary_search_steps=1` is accepted.
- `attack` cuts `x` into batches of `batch_size` but not `y`, so given labels fail for any batch
  larger than that. Both are cut here.
"""

from __future__ import annotations

from unittest import mock

import cleverhans.tf2.attacks.carlini_wagner_l2 as cleverhans_cw
import cleverhans.tf2.attacks.spsa as cleverhans_spsa
import keras
import numpy as np
import tensorflow as tf


class _CallableList(list):
    """A list that returns itself when called, for code that calls what is now a list property."""

    def __call__(self) -> list:
        return self


class CarliniWagnerAdam(keras.optimizers.Adam):
    """Keras 3 Adam as CleverHans's Carlini-Wagner uses it: `variables()` callable, no rate among them.

    Args:
        learning_rate: the fixed step size; held as a callable so that Keras does not make it one
            of `variables`, which CleverHans zeroes to restart Adam.
    """

    def __init__(self, learning_rate: float, **kwargs):
        super().__init__(learning_rate=lambda: learning_rate, **kwargs)

    @property
    def variables(self) -> _CallableList:
        return _CallableList(super().variables)


class CarliniWagnerL2(cleverhans_cw.CarliniWagnerL2):
    """CleverHans's `CarliniWagnerL2`, runnable under Keras 3 (see the module docstring).

    Takes CleverHans's arguments, but `binary_search_steps` must be 1, and is by default.
    """

    def __init__(self, model_fn, binary_search_steps: int = 1, **kwargs):
        super().__init__(model_fn, binary_search_steps=binary_search_steps, **kwargs)
        if self.binary_search_steps != 1:
            raise ValueError(
                f"binary_search_steps must be 1, got {self.binary_search_steps}: CleverHans 4.0.0's "
                "binary search gives its constant the images' shape instead of one per image"
            )
        self._image_shape = None  # set by `attack`, read when CleverHans calls the model
        self.model_fn = lambda folded: model_fn(tf.reshape(folded, [-1, *self._image_shape]))

    def attack(self, x) -> np.ndarray:
        x = np.asarray(x, np.float32)
        self._image_shape = x.shape[1:]
        folded = x.reshape(len(x), x.shape[1], -1, 1)
        adversarial = np.empty_like(folded)
        labels = self.y
        try:
            for start in range(0, len(x), self.batch_size):
                batch = slice(start, start + self.batch_size)
                self.y = None if labels is None else np.asarray(labels)[batch]
                # A Keras 3 optimizer is built for one set of variables; each batch has its own.
                self.optimizer = CarliniWagnerAdam(self.learning_rate)
                adversarial[batch] = self._attack(folded[batch]).numpy()
        finally:
            self.y = labels
        return adversarial.reshape(x.shape)

    def attack_step(self, x, y, modifier, const):
        # `const` has the images' shape and, with one binary-search step, a single value per image.
        return super().attack_step(x, y, modifier, const[:, 0, 0, 0])


def carlini_wagner_l2(model_fn, x, **kwargs) -> np.ndarray:
    """CleverHans's `carlini_wagner_l2`, runnable under Keras 3; same arguments."""
    return CarliniWagnerL2(model_fn, **kwargs).attack(x)


class SPSAAdamState:
    """CleverHans's `SPSAAdam` on a plain object instead of a Keras 3 optimizer; same arguments.

    Its methods are CleverHans's own; they read only the constants set here (Keras Adam's default
    betas and epsilon, which `SPSAAdam` inherited) and keep Adam's state in explicit tensors.
    """

    _get_delta = cleverhans_spsa.SPSAAdam._get_delta
    _compute_gradients = cleverhans_spsa.SPSAAdam._compute_gradients
    _apply_gradients = cleverhans_spsa.SPSAAdam._apply_gradients
    init_state = cleverhans_spsa.SPSAAdam.init_state
    minimize = cleverhans_spsa.SPSAAdam.minimize

    def __init__(self, lr=0.01, delta=0.01, num_samples=128, num_iters=1, compare_to_analytic_grad=False):
        if num_samples % 2:
            raise ValueError(f"num_samples must be even (SPSA mirrors each sample), got {num_samples}")
        self.lr = lr
        self.beta_1, self.beta_2, self.epsilon = 0.9, 0.999, 1e-7
        self._delta = delta
        self._num_samples = num_samples // 2
        self._num_iters = num_iters
        self._compare_to_analytic_grad = compare_to_analytic_grad


def spsa(model_fn, x, y, eps, nb_iter, **kwargs) -> tf.Tensor:
    """CleverHans's `spsa`, runnable under Keras 3 and inside `tf.function`; same arguments.

    Like CleverHans's, it takes a batch of one image.
    """
    with mock.patch.object(cleverhans_spsa, "SPSAAdam", SPSAAdamState):
        return cleverhans_spsa.spsa(model_fn, x, y, eps, nb_iter, **kwargs)
