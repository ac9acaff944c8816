"""The robustness evaluation: attacks x classifiers x defenses, as the paper's tables measure it.

Three settings (rows of the paper's tables):

* white-box on the classifier: adversarials crafted on classifier X alone (the attacker knows
  X, not the filter), then fed to X with and without each defense;
* black-box transfer: adversarials crafted on a substitute Y, fed to X ("X/Y" rows);
* end-to-end: adversarials crafted on defense + X together, with the defense's BPDA gradient
  (or the identity or naive gradient), averaged over EOT samples for a stochastic defense.

Every number is an `Accuracy` (count, n, 95% interval). Adversarial batches are cached on disk
batch by batch under a key made of everything that determines them (each defense's
`cache_parts()` among them), and so are the purifications of costly defenses (Defense-GAN's
searches), so an interrupted run resumes without redoing finished work. A costly defense can be
scored on the first `defense_limits[name]` images of the sample only; its cells then carry that n.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from lqvae_tf.atomic import atomic_path, write_text
from lqvae_tf.attacks import logits_of
from lqvae_tf.defenses import Defense
from lqvae_tf.stats import Accuracy

SETTINGS = ("white-box", "black-box", "end-to-end")
# The key of the undefended classifier's column in `Row.outcomes`.
NO_DEFENSE = "no defense"
# Beside each cached batch `<key>-<start>.npy`: the seconds making it took (`<...>.npy.seconds`).
SECONDS_SUFFIX = ".seconds"


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
    # Mean L2 and L-inf size of the adversarials fed to the classifier alone; `column_distortion`:
    # the same per column that was fed adversarials of its own (crafted through its defense, or on
    # its robust classifier), which the classifier alone's do not measure.
    distortion: dict[str, float] = dataclasses.field(default_factory=dict)
    # Per LQ-VAE column, the mean share (in %) of latent code symbols the row's adversarials
    # change (the paper's Fig. 3 measure): how far the attack moves the input in the code space.
    bit_flips: dict[str, float] = dataclasses.field(default_factory=dict)
    # Wall seconds this run spent on the row (crafting, scoring and, for a black-box row, training
    # its substitute when it is the first to need it); a row read from the cache costs less.
    seconds: float | None = None
    # Of `seconds`, those recorded when an earlier run crafted (or purified) the batches this run
    # read from the cache: `seconds` is what the row costs from scratch, however often it was
    # interrupted. `untimed_batches`: cached batches made before their times were kept (not counted).
    recorded_seconds: float = 0.0
    untimed_batches: int = 0
    column_distortion: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    # The attack parameters the row's spec set over the attack's defaults ("eps_iter=0.075"; empty:
    # the defaults). A white-box or black-box row with a variant is not the paper's setting, so no
    # page or index sets the paper's number beside it.
    variant: str = ""
    # In memory only (results.json keeps the totals above): per column (`NO_DEFENSE` for the
    # classifier alone), whether each image that column was scored on is still classified right,
    # and per LQ-VAE column the share of code symbols each image's adversarial flips. What the
    # per-image worst of several rows is made of (`lqvae_tf.evaluation.worst`); `sizes`, per column
    # (`NO_DEFENSE` too), each image's perturbation L2 and L-inf (`perturbation_sizes`).
    outcomes: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False, compare=False)
    flips: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False, compare=False)
    sizes: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False, compare=False)

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
            "column_distortion": self.column_distortion,
            "bit_flips": self.bit_flips,
            "defended": {name: acc.to_dict() for name, acc in self.defended.items()},
            "seconds": self.seconds,
            "recorded_seconds": self.recorded_seconds,
            "untimed_batches": self.untimed_batches,
            "variant": self.variant,
        }


def predict_classes(classifier: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """`classifier`'s predicted classes of `images`, `batch_size` at a time."""
    return np.concatenate(
        [
            np.asarray(classifier(images[i : i + batch_size], training=False)).argmax(axis=-1)
            for i in range(0, len(images), batch_size)
        ]
    )


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


def perturbation_sizes(images: np.ndarray, adversarial: np.ndarray) -> np.ndarray:
    """Per adversarial, the L2 and L-inf size of its perturbation (n x 2), against the first
    len(adversarial) images (a column scored on a subsample is fed that many)."""
    delta = (adversarial - images[: len(adversarial)]).reshape(len(adversarial), -1)
    return np.stack([np.linalg.norm(delta, axis=1), np.abs(delta).max(axis=1)], axis=1)


def mean_distortion(sizes: np.ndarray) -> dict[str, float]:
    """Mean L2 and mean L-inf of `perturbation_sizes` (how visible the attack is)."""
    return {"mean_l2": round(float(sizes[:, 0].mean()), 4), "mean_linf": round(float(sizes[:, 1].mean()), 4)}


def distortion(images: np.ndarray, adversarial: np.ndarray) -> dict[str, float]:
    """Mean L2 and mean L-inf size of the perturbations (how visible the attack is)."""
    return mean_distortion(perturbation_sizes(images, adversarial))


def own_distortion(fed: Mapping[str, np.ndarray], sizes: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """`mean_distortion` of each column that was fed adversarials of its own, not the classifier
    alone's (`NO_DEFENSE` in `fed`; a column fed those, or their first images, is left out)."""
    alone = fed[NO_DEFENSE]
    return {
        column: mean_distortion(sizes[column])
        for column, images in fed.items()
        if column != NO_DEFENSE and not np.may_share_memory(images, alone)
    }


def flipped_fraction(clean_codes: np.ndarray, adversarial_codes: np.ndarray) -> np.ndarray:
    """Per image, the fraction of latent code symbols the attack changed."""
    return (np.asarray(clean_codes) != np.asarray(adversarial_codes)).reshape(len(clean_codes), -1).mean(axis=1)


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
        defense_limits: defense name -> score it on the first this-many images of the sample
            only (a costly defense on a subsample; its cells report that n).
        stacked: further columns that put a purifier in front of a robust classifier (what a
            user who wants the most robustness deploys): column name -> (defense name, robust
            column name). White-box rows craft on the robust classifier alone (the attacker knows
            the classifier, not the filter) and feed the result through the purifier; black-box
            rows feed the transferred adversarials through both; end-to-end rows attack purifier
            and robust classifier together, through the purifier's gradient mode.
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
        defense_limits: Mapping[str, int] | None = None,
        stacked: Mapping[str, tuple[str, str]] | None = None,
    ):
        if len(images) != len(labels) or len(images) == 0:
            raise ValueError(f"{len(images)} images and {len(labels)} labels: need the same, non-zero count")
        robust_classifiers = {column: dict(models) for column, models in (robust_classifiers or {}).items()}
        stacked = {column: tuple(parts) for column, parts in (stacked or {}).items()}
        names = [d.name for d in defenses] + list(robust_classifiers) + list(stacked)
        if len(set(names)) != len(names) or "none" in names:
            raise ValueError(f"defense names must be unique and not 'none', got {names}")
        for column, models in robust_classifiers.items():
            unknown = sorted(set(models) - set(classifiers))
            if unknown:
                raise ValueError(f"robust column {column!r}: classifiers {unknown} are not among {sorted(classifiers)}")
        for column, (defense_name, robust_column) in stacked.items():
            if defense_name not in [d.name for d in defenses] or robust_column not in robust_classifiers:
                raise ValueError(
                    f"stacked column {column!r}: ({defense_name!r}, {robust_column!r}) must name a defense of "
                    f"{[d.name for d in defenses]} and a robust column of {sorted(robust_classifiers)}"
                )
        defense_limits = dict(defense_limits or {})
        for name, limit in defense_limits.items():
            if name not in names[: len(defenses)] or not isinstance(limit, int) or limit < 1:
                raise ValueError(f"defense_limits: {name!r}: {limit!r} must be a positive count for a defense's name")
        self.defense_limits = {name: min(limit, len(images)) for name, limit in defense_limits.items()}
        self._clean_codes: dict[str, np.ndarray] = {}  # defense name -> codes of the clean sample
        self.images = np.asarray(images, np.float32)
        self.labels = np.asarray(labels).astype(np.int64)
        self.classifiers = dict(classifiers)
        self.defenses = list(defenses)
        self.robust_classifiers = robust_classifiers
        self.stacked = stacked
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.verbose = verbose
        self._sample_key = fingerprint(self.images, self.labels)
        self._defense_keys = {d.name: self.defense_key(d) for d in self.defenses}
        self._clean: dict[tuple[str, str], Accuracy] = {}
        # Seconds recorded beside the cached batches this run read (what making them cost), and
        # the cached batches without a record: a row's time from scratch (`Row.recorded_seconds`).
        self.recorded_seconds = 0.0
        self.untimed_batches = 0
        # Per crafting (by its progress bar's description: attack, gradient, column, classifier),
        # its seconds from scratch, cached batches' recorded seconds included: what each column
        # of a row costs, for sizing a study's samples (results.json's `craft_seconds`).
        self.craft_seconds: dict[str, float] = {}

    @staticmethod
    def defense_key(defense: Defense) -> str:
        """The fingerprint of everything that determines `defense` (its `cache_parts()`)."""
        return fingerprint(type(defense).__name__, *defense.cache_parts())

    def count_for(self, defense: Defense | None) -> int:
        """How many images of the sample `defense` is scored on (all, unless limited)."""
        return self.defense_limits.get(defense.name, len(self.images)) if defense else len(self.images)

    # ------------------------------------------------------------------ building blocks
    def predict(self, classifier: keras.Model, images: np.ndarray) -> np.ndarray:
        """Predicted classes, batched."""
        return predict_classes(classifier, images, self.batch_size)

    def accuracy(self, classifier: keras.Model, images: np.ndarray, defense: Defense | None = None) -> Accuracy:
        """Accuracy of `classifier` on `images` (the sample's first len(images) or all), through
        `defense.purify` if given, on the images the defense is scored on."""
        return Accuracy.of_outcomes(self.correct(classifier, images, defense))

    def correct(self, classifier: keras.Model, images: np.ndarray, defense: Defense | None = None) -> np.ndarray:
        """Per image of `accuracy`'s, whether `classifier` answers its label (bool)."""
        if defense is not None:
            images = self.purified(defense, images[: self.count_for(defense)])
        return self.predict(classifier, images) == self.labels[: len(images)]

    def purified(self, defense: Defense, images: np.ndarray) -> np.ndarray:
        """`defense.purify(images)`; for a costly defense cached on disk batch by batch."""
        if not (defense.costly and self.cache_dir):
            return defense.purify(images)
        key = fingerprint(self._defense_keys[defense.name], "purified", images)
        parts = []
        batches = range(0, len(images), self.batch_size)
        for start in tqdm(batches, desc=f"{defense.name} purifying", disable=not self.verbose, leave=False):
            path = os.path.join(self.cache_dir, f"{key}-{start}.npy")
            part = self._cached_batch(path)
            if part is None:
                began = time.perf_counter()
                part = np.asarray(defense.purify(images[start : start + self.batch_size]), np.float32)
                self._cache_batch(path, part, time.perf_counter() - began)
            parts.append(part)
        return np.concatenate(parts)

    def _cached_batch(self, path: str | None) -> np.ndarray | None:
        """The batch cached at `path` (None: not there), adding the seconds recorded beside it when
        it was made to `recorded_seconds` (or counting it in `untimed_batches`)."""
        if not path or not os.path.isfile(path):
            return None
        try:
            with open(path + SECONDS_SUFFIX, encoding="utf-8") as handle:
                self.recorded_seconds += float(handle.read())
        except (OSError, ValueError):
            self.untimed_batches += 1
        return np.load(path)

    @staticmethod
    def _cache_batch(path: str | None, part: np.ndarray, seconds: float) -> None:
        """Caches `part` at `path` with the `seconds` making it took beside it (both atomically)."""
        if not path:
            return
        with atomic_path(path) as temporary:
            np.save(temporary, part)
        write_text(path + SECONDS_SUFFIX, f"{seconds:.3f}\n")

    def clean_accuracy(self, classifier_name: str, defense: Defense | str | None = None) -> Accuracy:
        """Accuracy on the clean sample, alone, behind `defense`, or of the robust classifier of the
        column named `defense`, or behind that stacked column's purifier (computed once per pair)."""
        column = defense if isinstance(defense, str) else (defense.name if defense else "")
        key = (classifier_name, column)
        if key not in self._clean:
            if isinstance(defense, str) and defense in self.stacked:
                purifier, model = self._stacked_parts(defense, classifier_name)
                self._clean[key] = self.accuracy(model, self.images, purifier)
            elif isinstance(defense, str):
                model = self.robust_classifiers[defense][classifier_name]
                self._clean[key] = self.accuracy(model, self.images)
            else:
                self._clean[key] = self.accuracy(self.classifiers[classifier_name], self.images, defense)
        return self._clean[key]

    def craft(
        self,
        attack,
        model_fn: Callable,
        key: str,
        description: str,
        count: int | None = None,
        restarts: int = 1,
        judge: Callable | None = None,
    ) -> np.ndarray:
        """Adversarials of the sample's first `count` images (default all) against `model_fn`.

        With `restarts` > 1 the attack is run again, up to `restarts` runs in all, on the images
        that `judge` (the logits of what is scored; default `model_fn`) still classifies
        correctly; each image keeps the first adversarial that fools it (else the last run's).
        A gradient path whose forward pass is not the deployed one (the soft surrogate) needs the
        deployed judge: by its own prediction it would leave unretried the images it fools and
        the filter does not. Each finished
        batch is cached as `<cache_dir>/<key>-<start>.npy`, so an interrupted run redoes at most
        one batch.
        """
        count = len(self.images) if count is None else count
        parts = []
        spent, recorded_before = 0.0, self.recorded_seconds
        batches = range(0, count, self.batch_size)
        for start in tqdm(batches, desc=description, disable=not self.verbose, leave=False):
            path = os.path.join(self.cache_dir, f"{key}-{start}.npy") if self.cache_dir else None
            cached = self._cached_batch(path)
            if cached is not None:
                parts.append(cached)
                continue
            began = time.perf_counter()
            stop = min(start + self.batch_size, count)
            images, labels = self.images[start:stop], self.labels[start:stop]
            part = np.asarray(attack(model_fn, images, labels), np.float32)
            for _ in range(restarts - 1):  # again on the images no run has fooled yet, only
                standing = np.flatnonzero(np.asarray((judge or model_fn)(tf.constant(part))).argmax(axis=-1) == labels)
                if len(standing) == 0:
                    break
                part[standing] = np.asarray(attack(model_fn, images[standing], labels[standing]), np.float32)
            seconds = time.perf_counter() - began
            self._cache_batch(path, part, seconds)
            spent += seconds
            parts.append(part)
        spent += self.recorded_seconds - recorded_before
        self.craft_seconds[description] = self.craft_seconds.get(description, 0.0) + spent
        return np.concatenate(parts)

    def _stacked_parts(self, column: str, classifier_name: str) -> tuple[Defense, keras.Model]:
        """The purifier and the robust classifier of stacked column `column` for `classifier_name`."""
        defense_name, robust_column = self.stacked[column]
        purifier = next(d for d in self.defenses if d.name == defense_name)
        return purifier, self.robust_classifiers[robust_column][classifier_name]

    def _stacked_columns_for(self, classifier_name: str) -> list[str]:
        return [c for c, (_, robust) in self.stacked.items() if classifier_name in self.robust_classifiers[robust]]

    def _robust_columns(
        self, setting, attack, classifier_name, adversarial, restarts=1, per_stacked=None
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Per image, whether the adversarially trained counterparts of `classifier_name` answer
        right, alone and behind a purifier (`stacked`; `per_stacked` holds end-to-end rows'
        adversarials for them); and per column, the adversarials it was fed."""
        outcomes, on_robust, fed = {}, {}, {}
        for column, models in self.robust_classifiers.items():
            if classifier_name not in models:
                continue
            model = models[classifier_name]
            on_robust[column] = adversarial
            if setting != "black-box":  # the attacker knows the whole defended system: this model
                on_robust[column] = self.adversarials_on(attack, f"{classifier_name} ({column})", model, restarts)
            outcomes[column] = self.correct(model, on_robust[column])
            fed[column] = on_robust[column]
        for column in self._stacked_columns_for(classifier_name):
            if per_stacked is not None and column not in per_stacked:
                continue  # not attacked in this row
            purifier, model = self._stacked_parts(column, classifier_name)
            images = per_stacked[column] if per_stacked is not None else on_robust[self.stacked[column][1]]
            outcomes[column] = self.correct(model, images, purifier)
            fed[column] = images[: self.count_for(purifier)]
        return outcomes, fed

    def _row(
        self, setting, attack, classifier_name, source, adversarial, per_defense=None, restarts=1, per_stacked=None
    ) -> Row:
        classifier = self.classifiers[classifier_name]
        outcomes = {NO_DEFENSE: self.correct(classifier, adversarial)}
        fed = {NO_DEFENSE: adversarial}  # the adversarials each column was shown
        for defense in self.defenses:
            if per_defense is not None and defense.name not in per_defense:
                continue  # not attacked in this row
            images = per_defense[defense.name] if per_defense is not None else adversarial
            outcomes[defense.name] = self.correct(classifier, images, defense)
            fed[defense.name] = images[: self.count_for(defense)]
        robust, robust_fed = self._robust_columns(setting, attack, classifier_name, adversarial, restarts, per_stacked)
        outcomes.update(robust)
        fed.update(robust_fed)
        sizes = {column: perturbation_sizes(self.images, images) for column, images in fed.items()}
        defended = {column: Accuracy.of_outcomes(hits) for column, hits in outcomes.items() if column != NO_DEFENSE}
        clean = {d.name: self.clean_accuracy(classifier_name, d) for d in self.defenses}
        clean.update(
            {
                column: self.clean_accuracy(classifier_name, column)
                for column, models in self.robust_classifiers.items()
                if classifier_name in models
            }
        )
        clean.update(
            {
                column: self.clean_accuracy(classifier_name, column)
                for column in self._stacked_columns_for(classifier_name)
            }
        )
        flips = self._bit_flips(adversarial, per_defense)
        return Row(
            setting,
            attack.name,
            dict(attack.params),
            classifier_name,
            source,
            self.clean_accuracy(classifier_name),
            Accuracy.of_outcomes(outcomes[NO_DEFENSE]),
            defended,
            clean,
            mean_distortion(sizes[NO_DEFENSE]),
            {name: round(100 * float(changed.mean()), 2) for name, changed in flips.items()},
            column_distortion=own_distortion(fed, sizes),
            outcomes=outcomes,
            flips=flips,
            sizes=sizes,
        )

    def _bit_flips(
        self, adversarial: np.ndarray, per_defense: Mapping[str, np.ndarray] | None
    ) -> dict[str, np.ndarray]:
        """Per image, the share of code symbols changed, per defense with a latent code (`codes`),
        on the images that defense was shown in this row (the first `count_for` of them)."""
        flips = {}
        for defense in self.defenses:
            if not hasattr(defense, "codes") or (per_defense is not None and defense.name not in per_defense):
                continue
            if defense.name not in self._clean_codes:
                self._clean_codes[defense.name] = defense.codes(self.images)
            images = (per_defense[defense.name] if per_defense is not None else adversarial)[: self.count_for(defense)]
            clean = self._clean_codes[defense.name][: len(images)]
            flips[defense.name] = flipped_fraction(clean, defense.codes(images))
        return flips

    def _key(self, *parts) -> str:
        return fingerprint(self._sample_key, *parts)

    # ------------------------------------------------------------------ the three settings
    def adversarials_on(
        self, attack, classifier_name: str, model: keras.Model | None = None, restarts: int = 1
    ) -> np.ndarray:
        """Adversarials of the sample crafted on one model alone (cached; keyed by its weights, so
        white-box rows and transfer rows from the same model share them)."""
        model = self.classifiers[classifier_name] if model is None else model
        parts = ("single-model", attack.name, attack.params, model) + ((restarts,) if restarts > 1 else ())
        return self.craft(
            attack, logits_of(model), self._key(*parts), f"{attack.name} on {classifier_name}", restarts=restarts
        )

    def white_box(self, attack, classifier_name: str, restarts: int = 1) -> Row:
        """Adversarials crafted on the classifier alone, fed to it with and without defenses."""
        adversarial = self.adversarials_on(attack, classifier_name, restarts=restarts)
        row = self._row("white-box", attack, classifier_name, classifier_name, adversarial, restarts=restarts)
        if restarts > 1:
            row.params = {**row.params, "restarts": restarts}
        return row

    def black_box(
        self, attack, classifier_name: str, substitute_name: str, substitute: keras.Model, restarts: int = 1
    ) -> Row:
        """Adversarials crafted on `substitute`, transferred to the classifier ("X/Y")."""
        adversarial = self.adversarials_on(attack, substitute_name, substitute, restarts)
        row = self._row("black-box", attack, classifier_name, substitute_name, adversarial)
        if restarts > 1:
            row.params = {**row.params, "restarts": restarts}
        return row

    def end_to_end(
        self,
        attack,
        classifier_name: str,
        gradient: str = "bpda",
        eot_samples: int = 1,
        restarts: int = 1,
        skip: Sequence[str] = (),
    ) -> Row:
        """Adversarials crafted on defense + classifier together: the defense's `gradient` mode
        (BPDA, identity, naive or its soft surrogate), averaged over `eot_samples` draws where
        that gradient is random (EOT), the best of `restarts` runs per image. Defenses named in
        `skip` are left out of the row (their cells are absent)."""
        unknown = sorted(set(skip) - {d.name for d in self.defenses})
        if unknown:
            raise ValueError(f"skip names no defense of this evaluation: {unknown}")
        classifier = self.classifiers[classifier_name]
        undefended = self.adversarials_on(attack, classifier_name, restarts=restarts)

        def through(defense: Defense, model: keras.Model, description: str) -> np.ndarray:
            """Adversarials crafted on `defense` + `model` together."""
            logits = logits_of(model)
            samples = eot_samples if defense.random_gradient(gradient) else 1

            def model_fn(x):
                outputs = [logits(defense.differentiable(x, gradient)) for _ in range(samples)]
                return tf.add_n(outputs) / samples  # EOT: the expectation's gradient

            parts = (
                "end-to-end",
                attack.name,
                attack.params,
                gradient,
                samples,
                *judged_restarts(defense, gradient, restarts),
            )
            return self.craft(
                attack,
                model_fn,
                self._key(*parts, self._defense_keys[defense.name], model),
                f"{attack.name}+{gradient} on {description}",
                count=self.count_for(defense),
                restarts=restarts,
                judge=deployed_logits(defense, logits),
            )

        per_defense = {
            defense.name: through(defense, classifier, f"{defense.name}+{classifier_name}")
            for defense in self.defenses
            if defense.name not in skip
        }
        per_stacked = {}
        for column in self._stacked_columns_for(classifier_name):
            purifier, model = self._stacked_parts(column, classifier_name)
            if purifier.name not in skip:
                per_stacked[column] = through(purifier, model, f"{column} ({classifier_name})")
        row = self._row(
            "end-to-end",
            attack,
            classifier_name,
            f"defense+{classifier_name}",
            undefended,
            per_defense,
            restarts=restarts,
            per_stacked=per_stacked,
        )
        row.params = {**row.params, "gradient": gradient, "eot_samples": eot_samples, "restarts": restarts}
        if skip:
            row.params["skip"] = sorted(skip)
        return row


def judged_restarts(defense: Defense, gradient: str, restarts: int) -> tuple:
    """The restarts' part of an end-to-end crafting's cache key. Where the gradient path is random
    (the soft surrogate), batches cached before restarts were judged by `deployed_logits` were
    retried by the surrogate's own prediction, so the key tells the two apart."""
    if restarts > 1 and defense.random_gradient(gradient):
        return (restarts, "restarts judged by the deployed defense")
    return (restarts,)


def deployed_logits(defense: Defense, logits: Callable) -> Callable:
    """The logits of what an end-to-end row scores, `logits` behind `defense` as deployed: the
    judge of which images a restart retries (`Evaluation.craft`)."""

    def judge(x):
        return logits(tf.constant(defense.purify(np.asarray(x))))

    return judge


def clean_accuracies(
    classifier: keras.Model, defense: Defense, images: np.ndarray, labels: np.ndarray, batch_size: int = 250
) -> dict[str, dict]:
    """A classifier's clean accuracy behind `defense` (`clean`) and alone (`clean_alone`), as
    `Accuracy.to_dict()`s: what the gate and the frontier report beside an adapted classifier."""
    evaluation = Evaluation(images, labels, {"classifier": classifier}, [], batch_size=batch_size, verbose=False)
    return {
        "clean": evaluation.clean_accuracy("classifier", defense).to_dict(),
        "clean_alone": evaluation.clean_accuracy("classifier").to_dict(),
    }
