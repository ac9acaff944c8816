"""The reparameterised draw `z ~ N(mu, (s * sigma)^2)` of Algorithm 1, line 5."""

from __future__ import annotations

import keras
from keras import ops

from lqvae_tf.models.quantizers import PACKAGE

SEED_STATE_KEY = "seed_state"


def save_seed_state(store, generator: keras.random.SeedGenerator) -> None:
    """Stores a generator's state, which Keras' own `save_own_variables` leaves out."""
    store[SEED_STATE_KEY] = ops.convert_to_numpy(generator.state)


def load_seed_state(store, generator: keras.random.SeedGenerator) -> None:
    """Restores what `save_seed_state` stored (absent in files from before it existed)."""
    if SEED_STATE_KEY in store.keys():
        generator.state.assign(store[SEED_STATE_KEY])


@keras.saving.register_keras_serializable(package=PACKAGE)
class Sampling(keras.layers.Layer):
    """Draws `z = mu + noise_scale * exp(log_var / 2) * eps`, `eps ~ N(0, I)`.

    Randomness comes from the layer's own `SeedGenerator`, so a seeded run repeats; its state
    is saved with the weights, so a run resumed by `BackupAndRestore` draws the noise it would
    have drawn uninterrupted.

    Args:
        noise_scale: `s`; 1 is Algorithm 1 as written, 0.05 (= t / 2) the authors' script.
        seed: seed of the layer's generator.
    """

    def __init__(self, noise_scale: float = 1.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.noise_scale = noise_scale
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        mean, log_var = inputs
        eps = keras.random.normal(ops.shape(mean), dtype=mean.dtype, seed=self.seed_generator)
        return mean + self.noise_scale * ops.exp(0.5 * log_var) * eps

    def save_own_variables(self, store):
        save_seed_state(store, self.seed_generator)

    def load_own_variables(self, store):
        load_seed_state(store, self.seed_generator)

    def get_config(self):
        return {**super().get_config(), "noise_scale": self.noise_scale, "seed": self.seed}
