"""Training runs: callbacks, figures and the end-to-end `train_purifier`."""

from lqvae_tf.training.callbacks import PurifiedImages, SharpnessSchedule
from lqvae_tf.training.figures import save_purification_grid
from lqvae_tf.training.train import TrainResult, fit_purifier, train_purifier

__all__ = [
    "PurifiedImages",
    "SharpnessSchedule",
    "TrainResult",
    "fit_purifier",
    "save_purification_grid",
    "train_purifier",
]
