"""Accuracy with a 95% confidence interval (Wilson score interval for a binomial proportion)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

Z_95 = 1.959963984540054


@dataclasses.dataclass(frozen=True)
class Accuracy:
    """`correct` of `n` predictions right, in percent, with its 95% Wilson interval."""

    correct: int
    n: int

    @classmethod
    def of_outcomes(cls, hits: np.ndarray) -> Accuracy:
        """The accuracy of per-image outcomes (True: answered right)."""
        return cls(int(np.count_nonzero(hits)), int(np.size(hits)))

    @property
    def percent(self) -> float:
        return 100.0 * self.correct / self.n

    @property
    def interval(self) -> tuple[float, float]:
        """The 95% Wilson score interval, in percent."""
        p, n = self.correct / self.n, self.n
        centre = (p + Z_95**2 / (2 * n)) / (1 + Z_95**2 / n)
        half = Z_95 * math.sqrt(p * (1 - p) / n + Z_95**2 / (4 * n * n)) / (1 + Z_95**2 / n)
        return 100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half)

    def to_dict(self) -> dict:
        low, high = self.interval
        return {
            "accuracy": round(self.percent, 2),
            "ci95": [round(low, 2), round(high, 2)],
            "correct": self.correct,
            "n": self.n,
        }

    def __str__(self) -> str:
        low, high = self.interval
        return f"{self.percent:.2f} [{low:.1f}, {high:.1f}]"


def accuracy_of(predictions: np.ndarray, labels: np.ndarray) -> Accuracy:
    """Accuracy of predicted classes (or logits/scores, argmax taken) against labels."""
    predictions = np.asarray(predictions)
    if predictions.ndim == 2:
        predictions = predictions.argmax(axis=-1)
    labels = np.asarray(labels).reshape(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"{predictions.shape[0]} predictions for {labels.shape[0]} labels")
    if labels.size == 0:
        raise ValueError("no predictions to score")
    return Accuracy(int((predictions == labels).sum()), int(labels.size))
