"""The classifiers the robustness evaluation attacks: Defense-GAN's A-E, and their training."""

from lqvae_tf.classifiers.architectures import (
    CELEB_A_SHAPE,
    CLASSIFIERS,
    GENDER_CLASSES,
    GENDER_CLASSIFIERS,
    TABLE_1,
    build_a,
    build_b,
    build_c,
    build_classifier,
    build_d,
    build_e,
    build_gender_classifier,
)
from lqvae_tf.classifiers.train import DATASET_SHAPES, classifier_filename, summary_path, train_classifier

__all__ = [
    "CELEB_A_SHAPE",
    "CLASSIFIERS",
    "DATASET_SHAPES",
    "GENDER_CLASSES",
    "GENDER_CLASSIFIERS",
    "TABLE_1",
    "build_a",
    "build_b",
    "build_c",
    "build_classifier",
    "build_d",
    "build_e",
    "build_gender_classifier",
    "classifier_filename",
    "summary_path",
    "train_classifier",
]
