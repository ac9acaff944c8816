"""The robustness evaluation: attacks x classifiers x defenses, as the paper's tables measure it.

Three settings (rows of the paper's tables):

* white-box on the classifier: adversarials crafted on classifier X alone (the attacker knows
  X, not the filter), then fed to X with and without each defense;
* black-box transfer: adversarials crafted on a substitute Y, fed to X ("X/Y" rows);
* end-to-end: adversarials crafted on defense + X together, with the defense's BPDA gradient
  (or the identity or naive gradient), averaged over EOT samples for a stochastic defense.

Every number is an `Accuracy` (count, n, 95% interval). Adversarial batches are cached on disk
batch by batch under a key made of everything that determines them, so an interrupted run
resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from lqvae_tf.atomic import atomic_path
from lqvae_tf.attacks import logits_of
from lqvae_tf.defenses import Defense
from lqvae_tf.evaluation.stats import Accuracy, accuracy_of

SETTINGS = ("white-box", "black-box", "end-to-end")


@dataclasses.dataclass
class Row:
    """One line of a results table."""

    setting: str
    attack: str
    params: dict
    classifier: str
    source: str
    no_attack: Accuracy
    no_defense: Accuracy
    defended: dict[str, Accuracy]
    clean_defended: dict[str, Accuracy] = dataclasses.field(default_factory=dict)
    distortion: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.no_attack.n

    def to_dict(self) -> dict:
        return {
            "setting": self.setting,
            "attack": self.attack,
            "params": self.params,
            "classifier": self.classifier,
            "source": self.source,
            "n": self.n,
            "no_attack": self.no_attack.to_dict(),
            "no_defense": self.no_defense.to_dict(),
            "clean_defended": {name: acc.to_dict() for name, acc in self.clean_defended.items()},
            "distortion": self.distortion,
            "defended": {name: acc.to_dict() for name, acc in self.defended.items()},
        }


def fingerprint(*parts) -> str:
    """A short content hash of arrays, models (their weights) and JSON-able values."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, keras.Model):
            for weight in part.weights:
                digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
        elif isinstance(part, np.ndarray):
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:20]


def distortion(images: np.ndarray, adversarial: np.ndarray) -> dict[str, float]:
    """Mean L2 and mean L-inf size of the perturbations (how visible the attack is)."""
    delta = (adversarial - images).reshape(len(images), -1)
    return {
        "mean_l2": round(float(np.linalg.norm(delta, axis=1).mean()), 4),
        "mean_linf": round(float(np.abs(delta).max(axis=1).mean()), 4),
    }


class Evaluation:
    """Runs attacks on one labelled sample for a set of classifiers and defenses.

    Args:
        images: float32 (n, H, W, C) in the classifiers' and defenses' value range.
        labels: int labels (n,).
        classifiers: name -> Keras classifier (logits, or a final softmax).
        defenses: the purifiers compared in every row (not including "no defense").
        robust_classifiers: further columns that defend by replacing the classifier (adversarial
            training): column name -> classifier name -> its robust counterpart. White-box and
            end-to-end rows attack the robust model itself (it is the whole defended system);
            black-box rows feed it the same transferred adversarials as every other column.
        cache_dir: where adversarial batches are cached (None: no cache).
        batch_size: images per attack call and per prediction.
        verbose: progress bars.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        classifiers: Mapping[str, keras.Model],
        defenses: Sequence[Defense],
        cache_dir: str | None = None,
        batch_size: int = 250,
        verbose: bool = True,
        robust_classifiers: Mapping[str, Mapping[str, keras.Model]] | None = None,
    ):
        if len(images) != len(labels) or len(images) == 0:
            raise ValueError(f"{len(images)} images and {len(labels)} labels: need the same, non-zero count")
        robust_classifiers = {column: dict(models) for column, models in (robust_classifiers or {}).items()}
        names = [d.name for d in defenses] + list(robust_classifiers)
        if len(set(names)) != len(names) or "none" in names:
            raise ValueError(f"defense names must be unique and not 'none', got {names}")
        for column, models in robust_classifiers.items():
            unknown = sorted(set(models) - set(classifiers))
            if unknown:
                raise ValueError(f"robust column {column!r}: classifiers {unknown} are not among {sorted(classifiers)}")
        self.images = np.asarray(images, np.float32)
        self.labels = np.asarray(labels).astype(np.int64)
        self.classifiers = dict(classifiers)
        self.defenses = list(defenses)
        self.robust_classifiers = robust_classifiers
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.verbose = verbose
        self._sample_key = fingerprint(self.images, self.labels)
        self._clean: dict[tuple[str, str], Accuracy] = {}

    # ------------------------------------------------------------------ building blocks
    def predict(self, classifier: keras.Model, images: np.ndarray) -> np.ndarray:
        """Predicted classes, batched."""
        return np.concatenate(
            [
                np.asarray(classifier(images[i : i + self.batch_size], training=False)).argmax(axis=-1)
                for i in range(0, len(images), self.batch_size)
            ]
        )

    def accuracy(self, classifier: keras.Model, images: np.ndarray, defense: Defense | None = None) -> Accuracy:
        """Accuracy of `classifier` on `images`, through `defense.purify` if given."""
        if defense is not None:
            images = defense.purify(images)
        return accuracy_of(self.predict(classifier, images), self.labels)

    def clean_accuracy(self, classifier_name: str, defense: Defense | str | None = None) -> Accuracy:
        """Accuracy on the clean sample, alone, behind `defense`, or of the robust classifier of the
        column named `defense` (computed once per pair)."""
        column = defense if isinstance(defense, str) else (defense.name if defense else "")
        key = (classifier_name, column)
        if key not in self._clean:
            if isinstance(defense, str):
                model = self.robust_classifiers[defense][classifier_name]
                self._clean[key] = self.accuracy(model, self.images)
            else:
                self._clean[key] = self.accuracy(self.classifiers[classifier_name], self.images, defense)
        return self._clean[key]

    def craft(self, attack, model_fn: Callable, key: str, description: str) -> np.ndarray:
        """Adversarials of the whole sample against `model_fn`, batch by batch.

        Each finished batch is cached as `<cache_dir>/<key>-<start>.npy`, so an interrupted run
        redoes at most one batch.
        """
        parts = []
        batches = range(0, len(self.images), self.batch_size)
        for start in tqdm(batches, desc=description, disable=not self.verbose, leave=False):
            path = os.path.join(self.cache_dir, f"{key}-{start}.npy") if self.cache_dir else None
            if path and os.path.isfile(path):
                parts.append(np.load(path))
                continue
            stop = start + self.batch_size
            part = np.asarray(attack(model_fn, self.images[start:stop], self.labels[start:stop]), np.float32)
            if path:
                with atomic_path(path) as temporary:
                    np.save(temporary, part)
            parts.append(part)
        return np.concatenate(parts)

    def _robust_columns(self, setting, attack, classifier_name, adversarial) -> dict[str, Accuracy]:
        """Accuracies of the adversarially trained counterparts of `classifier_name`."""
        accuracies = {}
        for column, models in self.robust_classifiers.items():
            if classifier_name not in models:
                continue
            model = models[classifier_name]
            if setting != "black-box":  # the attacker knows the whole defended system: this model
                adversarial = self.adversarials_on(attack, f"{classifier_name} ({column})", model)
            accuracies[column] = self.accuracy(model, adversarial)
        return accuracies

    def _row(self, setting, attack, classifier_name, source, adversarial, per_defense=None) -> Row:
        classifier = self.classifiers[classifier_name]
        defended = {}
        for defense in self.defenses:
            images = per_defense[defense.name] if per_defense else adversarial
            defended[defense.name] = self.accuracy(classifier, images, defense)
        defended.update(self._robust_columns(setting, attack, classifier_name, adversarial))
        clean = {d.name: self.clean_accuracy(classifier_name, d) for d in self.defenses}
        clean.update(
            {
                column: self.clean_accuracy(classifier_name, column)
                for column, models in self.robust_classifiers.items()
                if classifier_name in models
            }
        )
        return Row(
            setting,
            attack.name,
            dict(attack.params),
            classifier_name,
            source,
            self.clean_accuracy(classifier_name),
            self.accuracy(classifier, adversarial),
            defended,
            clean,
            distortion(self.images, adversarial),
        )

    def _key(self, *parts) -> str:
        return fingerprint(self._sample_key, *parts)

    # ------------------------------------------------------------------ the three settings
    def adversarials_on(self, attack, classifier_name: str, model: keras.Model | None = None) -> np.ndarray:
        """Adversarials of the sample crafted on one model alone (cached; keyed by its weights, so
        white-box rows and transfer rows from the same model share them)."""
        model = self.classifiers[classifier_name] if model is None else model
        return self.craft(
            attack,
            logits_of(model),
            self._key("single-model", attack.name, attack.params, model),
            f"{attack.name} on {classifier_name}",
        )

    def white_box(self, attack, classifier_name: str) -> Row:
        """Adversarials crafted on the classifier alone, fed to it with and without defenses."""
        adversarial = self.adversarials_on(attack, classifier_name)
        return self._row("white-box", attack, classifier_name, classifier_name, adversarial)

    def black_box(self, attack, classifier_name: str, substitute_name: str, substitute: keras.Model) -> Row:
        """Adversarials crafted on `substitute`, transferred to the classifier ("X/Y")."""
        adversarial = self.adversarials_on(attack, substitute_name, substitute)
        return self._row("black-box", attack, classifier_name, substitute_name, adversarial)

    def end_to_end(self, attack, classifier_name: str, gradient: str = "bpda", eot_samples: int = 1) -> Row:
        """Adversarials crafted on defense + classifier together (BPDA; EOT if stochastic)."""
        classifier = self.classifiers[classifier_name]
        logits = logits_of(classifier)
        undefended = self.adversarials_on(attack, classifier_name)
        per_defense = {}
        for defense in self.defenses:
            samples = eot_samples if defense.stochastic else 1

            def model_fn(x, defense=defense, samples=samples):
                outputs = [logits(defense.differentiable(x, gradient)) for _ in range(samples)]
                return tf.add_n(outputs) / samples  # EOT: the expectation's gradient

            models = [getattr(defense, "model", None), classifier]
            per_defense[defense.name] = self.craft(
                attack,
                model_fn,
                self._key(
                    "end-to-end",
                    attack.name,
                    attack.params,
                    gradient,
                    samples,
                    defense.name,
                    getattr(defense, "settings", {}),
                    *[m for m in models if m is not None],
                ),
                f"{attack.name}+{gradient} on {defense.name}+{classifier_name}",
            )
        row = self._row("end-to-end", attack, classifier_name, f"defense+{classifier_name}", undefended, per_defense)
        row.params = {**row.params, "gradient": gradient, "eot_samples": eot_samples}
        return row
