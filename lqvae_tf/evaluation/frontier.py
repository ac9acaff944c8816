"""The purifier's trade-off frontier: clean accuracy behind the filter against adaptive robust accuracy.

`run_frontier` trains one purifier per setting of a grid (resumable: each point's run folder is
keyed by a hash of its settings, and `train_purifier` resumes an interrupted one), then measures
each against one classifier on one test sample:

* clean accuracy of the classifier alone and behind the filter;
* adaptive robust accuracy: per image, the worst of L-inf PGD (random start, `restarts` runs)
  through the filter's BPDA gradient, through the soft path `g(H~(z))` averaged over
  `eot_samples` draws (EOT: it samples `z`), and through the identity (BPDA with the whole
  filter as identity); plus PGD on the classifier alone for reference;
* a gradient-free check, the Square attack on the deployed filter + classifier: flagged when it
  beats the gradient attacks (then the filter's gradients are masked, and the adaptive number
  is an overestimate);
* the ROC AUC of the served detection score (`purify_and_score`'s reconstruction error, taken
  here in the classifier's pixel range: a constant multiple of the served one, so the same AUC)
  separating clean test images from FGSM (on the classifier) and from BPDA-PGD adversarials, and
  from a detector-aware BPDA-PGD that also minimises the score (`score_evading_pgd`, after
  Carlini & Wagner 2017, "Adversarial examples are not easily detected"): an AUC that only holds
  against attacks ignorant of the detector says nothing.

With `adapt_epochs`, each point's classifier is first adapted to that point's filter (fine-tuned
on its purified training images, `lqvae_tf.training.adapt`) and every measurement above is of
the adapted classifier, the deployed pair; the original classifier's clean accuracy alone and
behind the filter are recorded beside it (`clean_alone_unadapted`, `clean_filtered_unadapted`).

It writes `frontier.json`, `frontier.md` and `frontier.png` (one point per setting), then
rebuilds the index of the folder above (`frontier_index.write_index`). Every
measurement is cached per point under a hash of the attack settings, the classifier's weights
and the sample, so a rerun with more points redoes nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import lqvae_tf.attacks.square  # noqa: F401  (registers "square")
from lqvae_tf.atomic import write_text
from lqvae_tf.attacks import logits_of, make_attack
from lqvae_tf.config import LQVAEConfig, preset
from lqvae_tf.data.registry import CLASSIFIER_VALUE_RANGE
from lqvae_tf.defenses import LQVAEDefense
from lqvae_tf.evaluation.figures import _pyplot, _save
from lqvae_tf.evaluation.frontier_index import write_index
from lqvae_tf.evaluation.harness import Evaluation, clean_accuracies, deployed_logits, fingerprint, judged_restarts
from lqvae_tf.generated import marker
from lqvae_tf.models.inputs import rescale
from lqvae_tf.stats import accuracy_of
from lqvae_tf.training.warm_start import COLLAPSED_BELOW, distinct_code_fraction

CLASSIFIER_RANGE = CLASSIFIER_VALUE_RANGE  # the library's classifiers take [0, 1] pixels (the registry's)
GRADIENTS = ("bpda", "soft", "identity")  # the adaptive attack's three backward passes


@dataclasses.dataclass
class FrontierAttacks:
    """How each point of the frontier is measured.

    Args:
        eps: the L-inf radius in [0, 1] pixels.
        steps: PGD's iterations (the issue asks >= 40 for a reported number).
        step_size: PGD's step; None takes `2.5 eps / steps` (Madry et al.).
        restarts: PGD runs per image (each from a random start; the first success counts).
        eot_samples: draws averaged per gradient through the soft path (EOT).
        square_queries: queries of the gradient-free Square attack.
        n: test images measured (the first n of the test split).
        batch_size: images per attack call.
    """

    eps: float = 0.1
    steps: int = 40
    step_size: float | None = None
    restarts: int = 2
    eot_samples: int = 8
    square_queries: int = 1000
    n: int = 1000
    batch_size: int = 250

    def __post_init__(self) -> None:
        if not 0.0 < self.eps <= 1.0:
            raise ValueError(f"eps must be in (0, 1] ([0, 1] pixels), got {self.eps}")
        for name in ("steps", "restarts", "eot_samples", "square_queries", "n", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.step_size is not None and not 0.0 < self.step_size <= self.eps:
            raise ValueError(f"step_size must be in (0, eps={self.eps}] or None, got {self.step_size}")

    @property
    def pgd_step_size(self) -> float:
        return self.step_size if self.step_size is not None else min(self.eps, 2.5 * self.eps / self.steps)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def grid_configs(grid: dict[str, Any]) -> list[LQVAEConfig]:
    """The purifier configurations of a grid description.

    A grid is `{"preset": name, "base": {field: value}, "axes": {field: [values]}, "points":
    [{field: value}]}` (every key optional): the cartesian product of the axes, then each
    explicit point, all over `preset` + `base`. A field may be `adversarial` (an
    `AdversarialConfig` dict). With neither axes nor points the grid is the base alone.
    `init_from` may be `"point:N"`: fine-tune the grid's N-th configuration (0-based, an earlier
    one) once trained (`run_frontier` resolves it).

    Raises:
        ValueError: an unknown key, preset or field, or an impossible value (naming it).
    """
    unknown = sorted(set(grid) - {"preset", "base", "axes", "points"})
    if unknown:
        raise ValueError(f"unknown grid keys {unknown}; a grid has preset, base, axes, points")
    base = preset(grid.get("preset", "fashion_mnist")).replace(**grid.get("base", {}))
    axes = grid.get("axes", {})
    points = [dict(zip(axes, values)) for values in itertools.product(*axes.values())] if axes else []
    points += list(grid.get("points", []))
    return [base.replace(**point) for point in points] or [base]


def point_key(config: LQVAEConfig, dataset: str, train_limit: int | None) -> str:
    """The hash a grid point's run folder is named by: everything its training depends on."""
    return fingerprint("frontier-point", config.to_dict(), dataset, train_limit)[:12]


def roc_auc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of a score meant to be higher on `positives` (Mann-Whitney U, ties half)."""
    negatives, positives = np.asarray(negatives, np.float64), np.asarray(positives, np.float64)
    below = (negatives[None, :] < positives[:, None]).sum()
    ties = (negatives[None, :] == positives[:, None]).sum()
    return float((below + 0.5 * ties) / (len(negatives) * len(positives)))


def detection_scores(defense: LQVAEDefense, images: np.ndarray) -> np.ndarray:
    """The served detection score per image: mean squared distance to the purified image."""
    return np.mean(np.square(images - defense.purify(images)), axis=(1, 2, 3))


# The detector-aware attack's objective: a margin loss capped at EVADING_MARGIN logits (so that
# once an image is misclassified with that margin only the score is pushed) plus the score, in
# units of the clean images' median score, times EVADING_WEIGHT.
EVADING_MARGIN = 2.0
EVADING_WEIGHT = 1.0


def score_evading_pgd(defense: LQVAEDefense, logits, attacks: FrontierAttacks, score_scale: float):
    """An attack callable `(model_fn, x, y) -> adversarial x`: L-inf PGD from a random start that
    minimises `max(z_y - max_{j != y} z_j, -EVADING_MARGIN) + EVADING_WEIGHT * score(x) / score_scale`.

    `z` are the classifier's logits behind the filter and `score(x)` the detection score
    (`detection_scores`), both differentiated through the filter's BPDA gradient. `model_fn` is
    ignored (the objective needs the filter and the classifier apart); it is there so that
    `Evaluation.craft` can cache and restart this attack like the registered ones.
    """
    eps, step, low, high = attacks.eps, attacks.pgd_step_size, *CLASSIFIER_RANGE
    if not score_scale > 0.0:
        raise ValueError(f"score_scale must be positive, got {score_scale!r}")

    @tf.function(reduce_retracing=True)
    def objective_gradient(x, y):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            purified = defense.differentiable(x, "bpda")
            z = logits(purified)
            true = tf.gather(z, y, axis=1, batch_dims=1)
            others = tf.where(tf.one_hot(y, tf.shape(z)[1]) > 0, tf.fill(tf.shape(z), -np.inf), z)
            margin = tf.maximum(true - tf.reduce_max(others, axis=1), -EVADING_MARGIN)
            score = tf.reduce_mean(tf.square(x - purified), axis=[1, 2, 3]) / score_scale
            loss = tf.reduce_sum(margin + EVADING_WEIGHT * score)
        return tape.gradient(loss, x)

    def attack(model_fn, images, labels):
        x0 = tf.constant(images, tf.float32)
        y = tf.constant(labels, tf.int64)
        x = tf.clip_by_value(x0 + tf.random.uniform(tf.shape(x0), -eps, eps), low, high)
        for _ in range(attacks.steps):  # descend: lower margin (misclassified) and lower score
            x = x - step * tf.sign(objective_gradient(x, y))
            x = tf.clip_by_value(tf.clip_by_value(x, x0 - eps, x0 + eps), low, high)
        return x.numpy()

    return attack


def _through(defense: LQVAEDefense, logits, gradient: str, samples: int):
    def model_fn(images):
        outputs = [logits(defense.differentiable(images, gradient)) for _ in range(samples)]
        return tf.add_n(outputs) / samples  # EOT: the expectation's gradient

    return model_fn


def _scored(flags: np.ndarray) -> dict:
    return accuracy_of(flags.astype(np.int64), np.ones(len(flags), np.int64)).to_dict()


def _evaluation(purifier, classifier, images, labels, attacks: FrontierAttacks, cache_dir, verbose):
    """The filter in [0, 1] pixels, and the harness over one classifier and test sample."""
    defense = LQVAEDefense(purifier, value_range=CLASSIFIER_RANGE)
    evaluation = Evaluation(
        images, labels, {"classifier": classifier}, [defense], cache_dir, attacks.batch_size, verbose
    )
    return defense, evaluation


def _robustness(defense: LQVAEDefense, classifier: keras.Model, evaluation: Evaluation, attacks: FrontierAttacks):
    """The clean and adaptive numbers of `measure_robustness`, and the per-gradient PGD adversarials."""
    logits = logits_of(classifier)
    pgd = make_attack("pgd", eps=attacks.eps, eps_iter=attacks.pgd_step_size, nb_iter=attacks.steps)
    square = make_attack("square", eps=attacks.eps, n_queries=attacks.square_queries)
    defense_key = Evaluation.defense_key(defense)
    sample_key = fingerprint(evaluation.images, evaluation.labels, classifier)

    def correct_behind_filter(adversarial: np.ndarray) -> np.ndarray:
        return evaluation.predict(classifier, defense.purify(adversarial)) == evaluation.labels

    def craft(attack, gradient: str, samples: int, restarts: int) -> np.ndarray:
        parts = (attack.name, attack.params, gradient, samples, *judged_restarts(defense, gradient, restarts))
        key = fingerprint("frontier", sample_key, defense_key, *parts)
        model_fn = _through(defense, logits, gradient, samples)
        judge = deployed_logits(defense, logits)
        return evaluation.craft(attack, model_fn, key, f"{attack.name}+{gradient}", restarts=restarts, judge=judge)

    correct, adversarials = {}, {}
    for gradient in GRADIENTS:
        samples = attacks.eot_samples if defense.random_gradient(gradient) else 1
        adversarials[gradient] = craft(pgd, gradient, samples, attacks.restarts)
        correct[gradient] = correct_behind_filter(adversarials[gradient])
    adaptive = np.logical_and.reduce([correct[g] for g in GRADIENTS])
    correct_square = correct_behind_filter(craft(square, "naive", 1, 1))
    adaptive_accuracy, square_accuracy = _scored(adaptive), _scored(correct_square)
    metrics = {
        "clean_alone": evaluation.clean_accuracy("classifier").to_dict(),
        "clean_filtered": evaluation.clean_accuracy("classifier", defense).to_dict(),
        "pgd": {gradient: _scored(correct[gradient]) for gradient in GRADIENTS},
        "adaptive": adaptive_accuracy,
        "square": square_accuracy,
        "worst": _scored(adaptive & correct_square),
        "square_beats_gradient": square_accuracy["correct"] < adaptive_accuracy["correct"],
        "square_only_fooled": int((adaptive & ~correct_square).sum()),
    }
    return metrics, adversarials


def measure_robustness(
    purifier,
    classifier: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    attacks: FrontierAttacks,
    cache_dir: str | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """What a filter does for one classifier, as a JSON-able dict: clean accuracy alone
    (`clean_alone`) and behind the filter (`clean_filtered`), L-inf PGD through each of the three
    backward passes (`pgd`: BPDA, soft path + EOT, identity), the per-image worst of the three
    (`adaptive`), the gradient-free Square attack (`square`), the per-image worst of all four
    (`worst`), and whether Square beats the gradient attacks (`square_beats_gradient`: then the
    adaptive number overestimates). Accuracies are `Accuracy.to_dict()`s (percent, 95% interval,
    counts). Images are in [0, 1], as the classifier takes them.

    The one robustness measurement of the frontier, the shipped presets' metrics and
    `lqvae protect`'s report.
    """
    defense, evaluation = _evaluation(purifier, classifier, images, labels, attacks, cache_dir, verbose)
    return _robustness(defense, classifier, evaluation, attacks)[0]


def measure_point(
    purifier,
    classifier: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    attacks: FrontierAttacks,
    cache_dir: str | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Every number of one frontier point (see module docstring), as a JSON-able dict:
    `measure_robustness`'s, PGD on the classifier alone (`pgd_alone`), and the detection AUCs.
    """
    defense, evaluation = _evaluation(purifier, classifier, images, labels, attacks, cache_dir, verbose)
    metrics, adversarials = _robustness(defense, classifier, evaluation, attacks)
    logits = logits_of(classifier)
    pgd = make_attack("pgd", eps=attacks.eps, eps_iter=attacks.pgd_step_size, nb_iter=attacks.steps)
    defense_key = Evaluation.defense_key(defense)
    sample_key = fingerprint(evaluation.images, evaluation.labels, classifier)
    undefended = evaluation.adversarials_on(pgd, "classifier", restarts=attacks.restarts)
    fgsm = evaluation.adversarials_on(make_attack("fgsm", eps=attacks.eps), "classifier")

    def correct_behind_filter(adversarial: np.ndarray) -> np.ndarray:
        return evaluation.predict(classifier, defense.purify(adversarial)) == evaluation.labels

    clean_scores = detection_scores(defense, evaluation.images)
    scale = float(np.median(clean_scores))
    evading_key = fingerprint(
        "frontier-evading", sample_key, defense_key, attacks.to_dict(), EVADING_MARGIN, EVADING_WEIGHT, scale
    )
    evading = evaluation.craft(
        score_evading_pgd(defense, logits, attacks, scale),
        _through(defense, logits, "bpda", 1),
        evading_key,
        "score-evading pgd",
        restarts=attacks.restarts,
    )
    evading_correct = correct_behind_filter(evading)
    evading_scores = detection_scores(defense, evading)
    return {
        "clean_alone": metrics["clean_alone"],
        "clean_filtered": metrics["clean_filtered"],
        "pgd_alone": evaluation.accuracy(classifier, undefended).to_dict(),
        **{key: value for key, value in metrics.items() if key not in ("clean_alone", "clean_filtered")},
        "detection_auc": {
            "fgsm": roc_auc(clean_scores, detection_scores(defense, fgsm)),
            "bpda_pgd": roc_auc(clean_scores, detection_scores(defense, adversarials["bpda"])),
            # Against the detector-aware attack: all its images, and those that fool the filter.
            "score_evading": roc_auc(clean_scores, evading_scores),
            "score_evading_fooling": (
                roc_auc(clean_scores, evading_scores[~evading_correct]) if (~evading_correct).any() else None
            ),
        },
        "score_evading": _scored(evading_correct),
    }


POINT_REFERENCE = "point:"


def resolve_point_references(
    configs: Sequence[LQVAEConfig], out_dir: str, dataset: str, train_limit: int | None
) -> list[LQVAEConfig]:
    """`configs` with each `init_from="point:N"` replaced by the purifier file of configuration N.

    Raises:
        ValueError: N is not an integer naming an earlier configuration.
    """
    resolved: list[LQVAEConfig] = []
    for index, config in enumerate(configs):
        source = config.init_from
        if source is not None and source.startswith(POINT_REFERENCE):
            number = source[len(POINT_REFERENCE) :]
            if not number.isdigit() or int(number) >= index:
                raise ValueError(
                    f"grid point {index}: init_from {source!r} must name an earlier point, point:0 to point:{index - 1}"
                )
            key = point_key(resolved[int(number)], dataset, train_limit)
            path = os.path.abspath(os.path.join(out_dir, "points", key, "purifier.keras"))
            config = config.replace(init_from=path)
        resolved.append(config)
    return resolved


def _setting(name: str, value: Any) -> str:
    """One changed field as the table shows it (a point's own purifier file by its point key)."""
    if name == "init_from" and isinstance(value, str) and value.endswith(os.path.join("", "purifier.keras")):
        return f"init_from=point {os.path.basename(os.path.dirname(value))}"
    return f"{name}={json.dumps(value)}"


def _changed(config: LQVAEConfig, base: LQVAEConfig) -> dict[str, Any]:
    """The fields where `config` differs from `base` (what names a point in the table)."""
    ours, theirs = config.to_dict(), base.to_dict()
    return {name: value for name, value in ours.items() if theirs.get(name) != value}


def _train_point(config, dataset, folder, train_limit, data_dir, classifier_path, verbose, validation_limit) -> dict:
    from lqvae_tf.training import train_purifier

    summary_path = os.path.join(folder, "trained.json")
    if os.path.isfile(summary_path) and os.path.isfile(os.path.join(folder, "purifier.keras")):
        with open(summary_path, encoding="utf-8") as handle:
            return json.load(handle)
    start = time.perf_counter()
    result = train_purifier(
        config,
        dataset,
        folder,
        limit=train_limit,
        data_dir=data_dir,
        verbose=verbose,
        classifier=classifier_path,
        validation_limit=validation_limit,
    )
    # The whole training time: an interrupted run's earlier epochs too, not only this call's.
    summary = {"seconds": round(time.perf_counter() - start + result.earlier_seconds, 1), "final": result.final}
    write_text(summary_path, json.dumps(summary, indent=2))
    return summary


def run_frontier(
    configs: Sequence[LQVAEConfig],
    dataset: str,
    classifier_path: str,
    out_dir: str,
    attacks: FrontierAttacks | None = None,
    train_limit: int | None = None,
    data_dir: str | None = None,
    verbose: bool = False,
    command: str | None = None,
    validation_limit: int = 2_000,
    adapt_epochs: int = 0,
    training_classifier: str | None = None,
) -> list[dict[str, Any]]:
    """Trains (or reuses) a purifier per configuration, measures each, and writes the frontier.

    Args:
        configs: the grid's purifier configurations (`grid_configs`); the first is the base the
            table names the others against.
        dataset: "fashion_mnist", "mnist" or "celeb_a".
        classifier_path: the `.keras` classifier (images in [0, 1]) behind every filter.
        out_dir: `points/<key>/` (each run folder and its cached measurements), `cache/`
            (adversarials) and the three reports.
        attacks: the measurement settings (default `FrontierAttacks()`).
        train_limit: train each purifier on the first N training images only.
        data_dir: the dataset's folder (see `lqvae_tf.data`).
        verbose: progress bars and Keras output.
        command: the command line that made the frontier, written into the reports.
        validation_limit: test images of each training run's per-epoch validation.
        adapt_epochs: adapt the classifier to each point's filter for this many epochs first and
            measure the adapted pair (0: the classifier as given).
        training_classifier: the `.keras` classifier that points train with where they name none:
            guided points keep its answers, the adversarial modes "classifier" and "end_to_end"
            attack it; default `classifier_path`. Another one measures how a filter trained with
            one classifier serves another.

    Returns:
        One row per configuration: key, changed fields, config, training summary, measurements.
    """
    from lqvae_tf.data import load

    attacks = attacks or FrontierAttacks()
    if not configs:
        raise ValueError("the grid has no configurations")
    if isinstance(adapt_epochs, bool) or not isinstance(adapt_epochs, int) or adapt_epochs < 0:
        raise ValueError(f"adapt_epochs must be an integer >= 0, got {adapt_epochs!r}")
    if not os.path.isfile(classifier_path):
        raise FileNotFoundError(f"classifier file {classifier_path} does not exist")
    if training_classifier is not None and not os.path.isfile(training_classifier):
        raise FileNotFoundError(f"training classifier file {training_classifier} does not exist")
    classifier = keras.models.load_model(classifier_path)
    # Guided points keep the answers of, and the modes that attack a classifier attack, the
    # training classifier (default the measured one), unless a point names its own.
    trained_with = os.path.abspath(training_classifier or classifier_path)
    configs = [config.with_classifier(trained_with) for config in configs]
    configs = resolve_point_references(configs, out_dir, dataset, train_limit)
    loader_args = {"value_range": CLASSIFIER_RANGE, **({"data_dir": data_dir} if data_dir else {})}
    test = list(load(dataset, "test", limit=attacks.n, **loader_args).as_numpy_iterator())
    images, labels = np.stack([image for image, _ in test]), np.array([label for _, label in test])
    rows = []
    for config in configs:
        key = point_key(config, dataset, train_limit)
        folder = os.path.join(out_dir, "points", key)
        trained = _train_point(
            config, dataset, folder, train_limit, data_dir, classifier_path, verbose, validation_limit
        )
        purifier = keras.models.load_model(os.path.join(folder, "purifier.keras"))
        measured_classifier = classifier
        if adapt_epochs:
            measured_classifier = _adapted_classifier(
                classifier_path, purifier, folder, adapt_epochs, dataset, train_limit, data_dir, config.seed
            )
        measure_key = fingerprint("frontier-measure", attacks.to_dict(), images, labels, measured_classifier)[:12]
        measured_path = os.path.join(folder, f"measure-{measure_key}.json")
        if os.path.isfile(measured_path):
            with open(measured_path, encoding="utf-8") as handle:
                measured = json.load(handle)
        else:
            cache = os.path.join(out_dir, "cache")
            measured = measure_point(purifier, measured_classifier, images, labels, attacks, cache, verbose)
            if adapt_epochs:
                defense = LQVAEDefense(purifier, value_range=CLASSIFIER_RANGE)
                unadapted = clean_accuracies(classifier, defense, images, labels, attacks.batch_size)
                measured["adapt_epochs"] = adapt_epochs
                measured["clean_alone_unadapted"] = unadapted["clean_alone"]
                measured["clean_filtered_unadapted"] = unadapted["clean"]
            write_text(measured_path, json.dumps(measured, indent=2))
        rows.append(
            {
                "key": key,
                "changed": _changed(config, configs[0]),
                "config": config.to_dict(),
                "trained": trained,
                "measured": measured,
                "distinct_codes": distinct_code_fraction(
                    purifier, np.asarray(rescale(images, CLASSIFIER_RANGE, purifier.config.value_range))
                ),
            }
        )
    write_frontier(rows, out_dir, dataset, classifier_path, attacks, train_limit, command, adapt_epochs)
    return rows


def _adapted_classifier(
    classifier_path: str, purifier, folder: str, epochs: int, dataset: str, train_limit, data_dir, seed: int
) -> keras.Model:
    """The classifier fine-tuned on this point's purified training images (made once, kept in `folder`)."""
    from lqvae_tf.atomic import atomic_path
    from lqvae_tf.data import load
    from lqvae_tf.training.adapt import fine_tune_on_purified

    original = keras.models.load_model(classifier_path)
    key = fingerprint("frontier-adapt", original, epochs, train_limit, seed)[:12]
    path = os.path.join(folder, f"classifier-adapted-{key}.keras")
    if os.path.isfile(path):
        return keras.models.load_model(path)
    loader_args = {"value_range": CLASSIFIER_RANGE, **({"data_dir": data_dir} if data_dir else {})}
    train = load(dataset, "train", limit=train_limit, **loader_args)
    keras.utils.set_random_seed(seed)
    fine_tune_on_purified(original, purifier, train, epochs=epochs, seed=seed, verbose=0, value_range=CLASSIFIER_RANGE)
    with atomic_path(path) as temporary:
        original.save(temporary)
    return original


def _cell(accuracy: dict) -> str:
    return f"{accuracy['accuracy']:.1f}"


def markdown_table(rows: Sequence[dict]) -> str:
    """The frontier as a Markdown table, one row per point."""
    header = (
        "| point | settings | train s | distinct codes | clean alone | clean filtered "
        "| unadapted: alone / filtered | PGD alone | BPDA | soft+EOT | identity | **adaptive** | Square | worst "
        "| AUC FGSM | AUC BPDA-PGD | score-evading PGD "
        "| AUC evading (fooling) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for row in rows:
        m = row["measured"]
        settings = ", ".join(_setting(name, value) for name, value in row["changed"].items()) or "(base)"
        square = _cell(m["square"]) + (" (beats gradient: masked)" if m["square_beats_gradient"] else "")
        cells = [
            row["key"],
            settings.replace("|", "/"),
            f"{row['trained']['seconds']:.0f}",
            _codes_cell(row.get("distinct_codes")),
            _cell(m["clean_alone"]),
            _cell(m["clean_filtered"]),
            (
                f"{_cell(m['clean_alone_unadapted'])} / {_cell(m['clean_filtered_unadapted'])}"
                if "clean_filtered_unadapted" in m
                else "(not adapted)"
            ),
            _cell(m["pgd_alone"]),
            *(_cell(m["pgd"][gradient]) for gradient in GRADIENTS),
            f"**{_cell(m['adaptive'])}**",
            square,
            _cell(m["worst"]),
            f"{m['detection_auc']['fgsm']:.3f}",
            f"{m['detection_auc']['bpda_pgd']:.3f}",
            _cell(m["score_evading"]) if "score_evading" in m else "not run",
            _evading_auc(m["detection_auc"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return header + "\n".join(lines) + "\n"


def _codes_cell(fraction: float | None) -> str:
    if fraction is None:
        return "-"
    return f"{fraction:.2f}" + (" (collapsed)" if fraction < COLLAPSED_BELOW else "")


def _evading_auc(auc: dict) -> str:
    if "score_evading" not in auc:
        return "not run"  # a point measured before the detector-aware attack existed
    fooling = auc["score_evading_fooling"]
    return f"{auc['score_evading']:.3f} ({'-' if fooling is None else f'{fooling:.3f}'})"


def frontier_figure(rows: Sequence[dict], path: str, eps: float) -> str:
    """Clean accuracy behind the filter against adaptive robust accuracy, one labelled point per setting."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.5, 5))
    for row in rows:
        m = row["measured"]
        x, y = m["clean_filtered"]["accuracy"], m["adaptive"]["accuracy"]
        axes.scatter([x], [y], color="tab:red" if m["square_beats_gradient"] else "tab:blue")
        axes.annotate(row["key"][:6], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if rows:
        alone = rows[0]["measured"]["clean_alone"]["accuracy"]
        axes.axvline(alone, color="grey", linestyle="--", linewidth=1, label="classifier alone (clean)")
        axes.legend(loc="best", fontsize=8)
    axes.set_xlabel("clean accuracy behind the filter (%)")
    axes.set_ylabel(f"adaptive robust accuracy at eps {eps:g} (%)")
    axes.set_title("Purifier frontier (red: Square beats the gradient attacks)")
    axes.grid(alpha=0.3)
    return _save(figure, path)


def write_frontier(rows, out_dir, dataset, classifier_path, attacks, train_limit, command=None, adapt_epochs=0) -> None:
    """`frontier.json`, `frontier.md` and `frontier.png` in `out_dir`; then the index of the folder above it."""
    os.makedirs(out_dir, exist_ok=True)
    settings = {
        "dataset": dataset,
        "classifier": os.path.abspath(classifier_path),
        "attacks": attacks.to_dict(),
        "pgd_step_size": attacks.pgd_step_size,
        "train_limit": train_limit,
        "adapt_epochs": adapt_epochs,
        "command": command,
    }
    write_text(os.path.join(out_dir, "frontier.json"), json.dumps({"settings": settings, "rows": rows}, indent=2))
    notes = (
        f"{marker('`lqvae frontier`')}\n# Purifier frontier ({dataset})\n\n"
        + (f"Made by: `{command}`\n\n" if command else "")
        + f"Classifier `{os.path.basename(classifier_path)}`, first {attacks.n} test images, training limit "
        f"{train_limit}. Accuracies in %. Attacks at L-inf eps {attacks.eps:g}: PGD {attacks.steps} steps of "
        f"{attacks.pgd_step_size:.4g}, {attacks.restarts} random starts, through the BPDA gradient, the soft path "
        f"with EOT over {attacks.eot_samples} draws, and the identity; **adaptive** is the per-image worst of the "
        f"three; Square {attacks.square_queries} queries (gradient-free); worst counts Square too. AUC: the "
        "served reconstruction-error score, clean vs adversarial. Score-evading PGD: accuracy behind the filter "
        f"under BPDA-PGD (same eps, steps, starts) on a margin loss capped at {EVADING_MARGIN:g} logits plus "
        f"{EVADING_WEIGHT:g} x the score over the clean median score, i.e. an attacker who knows the detector; "
        "its AUC over all its images and, in brackets, over those that fool the filter. Distinct codes: "
        "distinct latent codes over images measured (near 0: a collapsed filter that maps every input to one "
        "image; its robustness means nothing)."
        + (
            f" The classifier is adapted to each point's filter ({adapt_epochs} epochs on its purified training "
            "images) and every column is of the adapted pair, except `unadapted`: the classifier as given, alone "
            "and behind the filter."
            if adapt_epochs
            else ""
        )
        + "\n\n"
    )
    write_text(os.path.join(out_dir, "frontier.md"), notes + markdown_table(rows))
    frontier_figure(rows, os.path.join(out_dir, "frontier.png"), attacks.eps)
    write_index(os.path.dirname(os.path.abspath(out_dir)))
