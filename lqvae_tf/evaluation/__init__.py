"""Robustness evaluation: attacks run against defended classifiers (the harness, the frontier), and the
tables and figures that report them."""

from lqvae_tf.evaluation.harness import SETTINGS, Evaluation, Row, fingerprint
from lqvae_tf.evaluation.report import csv_text, markdown, write_reports
from lqvae_tf.stats import Accuracy, accuracy_of

__all__ = [
    "SETTINGS",
    "Accuracy",
    "Evaluation",
    "Row",
    "accuracy_of",
    "csv_text",
    "fingerprint",
    "markdown",
    "write_reports",
]
