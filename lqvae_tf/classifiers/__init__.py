"""The classifiers the robustness evaluation attacks: Defense-GAN's A-E, and their training.

Plain training (`train_classifier`) and the adversarial-training baselines
(`AdversarialTrainer`, `train_adversarial_classifier`: Madry PGD, Goodfellow FGSM) both save a
plain logits classifier, loaded the same way by every consumer.
"""

from lqvae_tf.classifiers.adversarial import (
    AdversarialTrainer,
    EpsRamp,
    check_adversarial_settings,
    train_adversarial_classifier,
)
from lqvae_tf.classifiers.architectures import (
    CELEB_A_SHAPE,
    CLASSIFIERS,
    GENDER_CLASSES,
    GENDER_CLASSIFIERS,
    HELD_OUT_CLASSIFIERS,
    TABLE_1,
    build_a,
    build_b,
    build_c,
    build_classifier,
    build_d,
    build_e,
    build_gender_classifier,
    build_keras_example,
    build_residual,
)
from lqvae_tf.classifiers.train import (
    ADVERSARIAL_METHODS,
    DATASET_SHAPES,
    classifier_filename,
    summary_path,
    train_classifier,
)

__all__ = [
    "ADVERSARIAL_METHODS",
    "AdversarialTrainer",
    "EpsRamp",
    "CELEB_A_SHAPE",
    "CLASSIFIERS",
    "DATASET_SHAPES",
    "GENDER_CLASSES",
    "GENDER_CLASSIFIERS",
    "HELD_OUT_CLASSIFIERS",
    "TABLE_1",
    "build_a",
    "build_b",
    "build_c",
    "build_classifier",
    "build_d",
    "build_e",
    "build_gender_classifier",
    "build_residual",
    "build_keras_example",
    "check_adversarial_settings",
    "classifier_filename",
    "summary_path",
    "train_adversarial_classifier",
    "train_classifier",
]
