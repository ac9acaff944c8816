"""The whole study in one command (`lqvae reproduce`): models by content hash, every table, the report."""

from lqvae_tf.study.config import DATASETS, StudyConfig, study_config
from lqvae_tf.study.run import ROBUST_COLUMNS, STACKED_COLUMNS, classifier_model, model_names, run_study, train_models
from lqvae_tf.study.store import ModelStore, settings_hash

__all__ = [
    "DATASETS",
    "ROBUST_COLUMNS",
    "STACKED_COLUMNS",
    "ModelStore",
    "StudyConfig",
    "classifier_model",
    "model_names",
    "run_study",
    "settings_hash",
    "study_config",
    "train_models",
]
