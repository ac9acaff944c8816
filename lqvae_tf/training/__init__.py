"""Training runs: the purifier (`train_purifier`), Defense-GAN's generator (`train_gan`), a classifier adapted
to the filter (`adapt`), with their callbacks and figures and the flags every training front end takes."""

from lqvae_tf.training.callbacks import PurifiedImages, SharpnessSchedule
from lqvae_tf.training.figures import save_purification_grid
from lqvae_tf.training.gan import GANTrainingConfig, train_gan
from lqvae_tf.training.train import TrainResult, adversary_classifier, fit_purifier, guide_classifier, train_purifier

__all__ = [
    "GANTrainingConfig",
    "PurifiedImages",
    "SharpnessSchedule",
    "TrainResult",
    "adversary_classifier",
    "guide_classifier",
    "fit_purifier",
    "save_purification_grid",
    "train_gan",
    "train_purifier",
]
