"""Measurement: why do our black-box adversarials transfer so much worse than the paper's?

Question. On Fashion-MNIST our plain-transfer rows leave the undefended targets at 69-79%
accuracy; the LQ-VAE paper's black-box table (DeepFool, Defense-GAN's black-box setting) leaves
them at 29-79%. Defense-GAN (kabkabm/defensegan `blackbox.py`) trains the attacker's substitute
by Papernot et al.'s procedure: 150 held-out seed images labelled by the target's argmax, 6
rounds of Jacobian augmentation with lambda 0.1, 10 epochs per round (Adam 1e-3, batch 128);
its code then crafts FGSM eps 0.3 on the substitute, where the LQ-VAE paper says DeepFool.

Hypotheses, each with the rows that test it:
    H1 (attack strength). DeepFool at our defaults (overshoot 0.02) stops just past the
       substitute's decision boundary; such minimal perturbations seldom cross the target's
       boundary. Then the target's accuracy falls as the overshoot grows (0.02 -> 0.5 -> 2.0)
       while the L2 size grows, and the fixed-budget L-inf attacks (FGSM, PGD at eps 0.3) transfer
       far better than any DeepFool row.
    H2 (substitute). A Papernot substitute (few thousand queries, label-only) transfers
       differently from a plain one (the architecture Y trained normally on the labelled training
       set, which is what our old "transfer-" rows used). Compare `papernot` and `plain` rows of the same
       pair and attack; the substitute table gives each substitute's clean accuracy and how
       often it agrees with its target.
    H3 (the paper's numbers). If the paper's 29-79% is reached only by rows with large
       perturbations (FGSM/PGD eps 0.3, or DeepFool with a large overshoot), its "DeepFool"
       black-box attack was not the minimal DeepFool we run.

How to read the transfer table. One row per target X / substitute Y, substitute kind and attack
crafted on the substitute. "target acc." is the undefended target X's accuracy on the
transferred images, with its 95% Wilson interval (lower = stronger transfer; compare it with
"target clean"). "transfer rate" is the fraction of images that the target classifies right when
clean and the substitute gets wrong after the attack which the target then also gets wrong: the
transfer itself, with the attack's success on the substitute factored out. "subst. acc. on adv."
is the substitute's own accuracy on its adversarials: near 0 means the attack worked white-box,
so a high target accuracy is a transfer failure, not an attack failure. L2 and L-inf are the
mean perturbation sizes (images in [0, 1]).

The seed images are a seeded random draw from the test split, disjoint from the evaluation
sample (as `lqvae eval` draws them); Defense-GAN takes the first 150 test images and evaluates on
images 150-2000. A second table gives each substitute's clean accuracy and its agreement with
its target on the evaluation sample: how faithful a copy the attacker got.

Run: `python bench/transfer_blackbox.py --out transfer.json` (trains A, B, C first; or
`--classifier-dir DIR` with `classifier_A.keras` ...). The tables are printed and appended to
bench/RESULTS.md (or `--results-file`) with the exact command.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from results_table import RESULTS, append_table  # noqa: E402

from lqvae_tf.attacks import Attack, logits_of, make_attack  # noqa: E402
from lqvae_tf.attacks.substitute import PAPERNOT_ROUNDS, PAPERNOT_SEEDS, PAPERNOT_STEP, train_substitute  # noqa: E402
from lqvae_tf.classifiers import (  # noqa: E402
    CLASSIFIERS,
    DATASET_SHAPES,
    build_classifier,
    classifier_filename,
    summary_path,
    train_classifier,
)
from lqvae_tf.evaluation.harness import distortion  # noqa: E402
from lqvae_tf.evaluation.suite import AttackSpec, load_test_arrays, sample_indices, split_specs  # noqa: E402
from lqvae_tf.stats import Accuracy, accuracy_of  # noqa: E402

# The paper's black-box pairs, target X / substitute architecture Y (its Fashion-MNIST black-box table).
PAPER_PAIRS = ("A/B", "A/C", "B/A", "B/C", "C/A", "C/B")
SUBSTITUTE_KINDS = ("papernot", "plain")
# DeepFool at our defaults (overshoot 0.02, as Moosavi-Dezfooli et al.), with larger overshoots,
# then Defense-GAN's black-box attack (FGSM eps 0.3, kabkabm/defensegan blackbox.py) and PGD at
# the same budget.
DEFAULT_ATTACKS = "deepfool,deepfool[overshoot=0.5],deepfool[overshoot=2.0],fgsm[eps=0.3],pgd[eps=0.3]"
# Defense-GAN's nb_epochs_s: train_substitute's default, read from it so the value lives once.
SUBSTITUTE_EPOCHS: int = inspect.signature(train_substitute).parameters["epochs"].default
BATCH_SIZE = 128  # attack and prediction batches; train_classifier's and train_substitute's batch too
CLASSIFIER_TEST_LIMIT = 1000  # train_classifier's own test score: only printed, kept cheap


@dataclasses.dataclass(frozen=True)
class TransferStudy:
    """Every setting of one measurement; written next to its results so the run can be rebuilt.

    Args:
        pairs: "X/Y" target / substitute-architecture pairs.
        substitutes: substitute kinds, "papernot" and/or "plain".
        attacks: attack specs crafted on the substitute, `name[key=value,...]` (as `lqvae eval`).
        n: evaluation images, a seeded sample of the test split disjoint from the seed images.
        seed: seeds the sample, the classifiers, the substitutes and the attacks.
        dataset: the dataset name.
        classifier_dir: load `classifier_X.keras` from here; None trains them.
        epochs, limit: training of the classifiers when not loaded (epochs, first `limit` images).
        substitute_seeds, substitute_rounds, substitute_step, substitute_epochs: Papernot's
            procedure (defaults: Defense-GAN's 150 seeds, 6 rounds, lambda 0.1, 10 epochs/round).
    """

    pairs: tuple[str, ...] = PAPER_PAIRS
    substitutes: tuple[str, ...] = SUBSTITUTE_KINDS
    attacks: tuple[str, ...] = tuple(split_specs(DEFAULT_ATTACKS))
    n: int = 1000
    seed: int = 0
    dataset: str = "fashion_mnist"
    classifier_dir: str | None = None
    epochs: int = 3
    limit: int | None = 30_000
    substitute_seeds: int = PAPERNOT_SEEDS
    substitute_rounds: int = PAPERNOT_ROUNDS
    substitute_step: float = PAPERNOT_STEP
    substitute_epochs: int = SUBSTITUTE_EPOCHS

    def validate(self) -> None:
        """Raises ValueError naming the first impossible setting."""
        for pair in self.pairs:
            target, _, source = pair.partition("/")
            if target not in CLASSIFIERS or source not in CLASSIFIERS or target == source:
                raise ValueError(
                    f"a pair is TARGET/SUBSTITUTE, two different classifiers of {sorted(CLASSIFIERS)}, got {pair!r}"
                )
        unknown = sorted(set(self.substitutes) - set(SUBSTITUTE_KINDS))
        if unknown or not self.substitutes:
            raise ValueError(f"substitute kinds are {', '.join(SUBSTITUTE_KINDS)}, got {list(self.substitutes)}")
        for spec in self.attacks:
            parsed = AttackSpec.parse(spec)
            if parsed.setting != "white-box" or parsed.restarts != 1:
                raise ValueError(
                    f"attack {spec!r}: give the attack on the substitute only, e.g. deepfool[overshoot=0.5]"
                )
            attack_from_spec(spec)  # an unknown attack or parameter fails here, before any training
        if self.dataset not in DATASET_SHAPES:
            raise ValueError(f"unknown dataset {self.dataset!r}")
        if min(self.n, self.epochs, self.substitute_seeds, self.substitute_rounds, self.substitute_epochs) < 1:
            raise ValueError("n, epochs and the substitute's seeds, rounds and epochs must be positive")

    @property
    def architectures(self) -> list[str]:
        """Every classifier letter the pairs name, sorted."""
        return sorted({name for pair in self.pairs for name in pair.split("/")})


@dataclasses.dataclass
class TransferRow:
    """One row of the transfer table: adversarials crafted on a substitute, scored on the target."""

    pair: str
    substitute: str
    attack: str
    target_clean: Accuracy
    target_adversarial: Accuracy
    substitute_adversarial: Accuracy
    transfer_rate: tuple[int, int]  # (also fool the target, fool the substitute and target right when clean)
    distortion: dict[str, float]
    seconds: float

    def markdown(self) -> str:
        fooled, eligible = self.transfer_rate
        rate = f"{100 * fooled / eligible:.1f} ({fooled}/{eligible})" if eligible else "-"
        return (
            f"| {self.pair} | {self.substitute} | {self.attack} | {self.target_adversarial.n} "
            f"| {self.target_adversarial} | {self.target_clean.percent:.1f} | {rate} "
            f"| {self.distortion['mean_l2']:.2f} | {self.distortion['mean_linf']:.3f} "
            f"| {self.substitute_adversarial.percent:.1f} |"
        )

    def to_dict(self) -> dict:
        return {
            "pair": self.pair,
            "substitute": self.substitute,
            "attack": self.attack,
            "target_clean": self.target_clean.to_dict(),
            "target_adversarial": self.target_adversarial.to_dict(),
            "substitute_adversarial": self.substitute_adversarial.to_dict(),
            "transfer_rate": {"fooled": self.transfer_rate[0], "of": self.transfer_rate[1]},
            "distortion": self.distortion,
            "seconds": round(self.seconds, 1),
        }


@dataclasses.dataclass
class SubstituteRow:
    """How faithful one substitute is: its clean accuracy and its agreement with the target."""

    pair: str
    substitute: str
    training_images: int | None  # None: the whole training split
    clean: Accuracy
    agreement: Accuracy  # the substitute's predictions scored against the target's
    seconds: float | None  # training time; None for a plain substitute (trained as a classifier)

    def markdown(self) -> str:
        images = "all" if self.training_images is None else f"{self.training_images:,}"
        seconds = "-" if self.seconds is None else f"{self.seconds:.0f}"
        return f"| {self.pair} | {self.substitute} | {images} | {self.clean} | {self.agreement} | {seconds} |"

    def to_dict(self) -> dict:
        return {
            "pair": self.pair,
            "substitute": self.substitute,
            "training_images": self.training_images,
            "clean": self.clean.to_dict(),
            "agreement_with_target": self.agreement.to_dict(),
            "seconds": None if self.seconds is None else round(self.seconds, 1),
        }


def progress(message: str, start: float) -> None:
    """One progress line with the seconds since `start`."""
    print(f"[{time.perf_counter() - start:7.1f} s] {message}", flush=True)


def predict(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """`model`'s predicted classes, batched (also the Papernot oracle: label-only query access)."""
    return np.concatenate(
        [
            np.asarray(model(images[start : start + BATCH_SIZE], training=False)).argmax(axis=-1)
            for start in range(0, len(images), BATCH_SIZE)
        ]
    )


def attack_from_spec(spec: str) -> Attack:
    """The attack a spec such as `deepfool[overshoot=0.5]` names, its parameters over the defaults."""
    parsed = AttackSpec.parse(spec)
    return make_attack(parsed.attack, **dict(parsed.params))


def craft(attack: Attack, model: keras.Model, images: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """`attack` run on `model` alone (white-box on the substitute), batched and seeded."""
    keras.utils.set_random_seed(seed)  # PGD's random start
    model_fn = logits_of(model)
    return np.concatenate(
        [
            attack(model_fn, images[start : start + BATCH_SIZE], labels[start : start + BATCH_SIZE])
            for start in range(0, len(images), BATCH_SIZE)
        ]
    )


def classifiers_for(
    study: TransferStudy, work_dir: str, start: float
) -> tuple[dict[str, keras.Model], dict[str, int | None]]:
    """The classifiers the pairs name, loaded from `study.classifier_dir` or trained into `work_dir`.

    Returns:
        name -> model, and name -> the number of training images it saw (None: all; read from
        the JSON summary beside a loaded model, None if it has none).
    """
    models, limits = {}, {}
    for name in study.architectures:
        if study.classifier_dir:
            path = os.path.join(study.classifier_dir, classifier_filename(name))
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path} does not exist (train it, or leave out --classifier-dir)")
            progress(f"loading classifier {name} from {path}", start)
            summary = {}
            if os.path.isfile(summary_path(path)):
                with open(summary_path(path), encoding="utf-8") as handle:
                    summary = json.load(handle)
        else:
            path = os.path.join(work_dir, classifier_filename(name))
            progress(f"training classifier {name}: {study.epochs} epochs on {study.limit or 'all'} images", start)
            summary = train_classifier(
                name,
                study.dataset,
                path,
                epochs=study.epochs,
                limit=study.limit,
                seed=study.seed,
                test_limit=CLASSIFIER_TEST_LIMIT,
                verbose=2,
            )
            progress(f"classifier {name}: test accuracy {summary['test_accuracy']:.3f}", start)
        models[name] = keras.models.load_model(path)
        limits[name] = summary.get("limit")
    return models, limits


def papernot_substitute(study: TransferStudy, target: keras.Model, architecture: str, seeds: np.ndarray) -> keras.Model:
    """A substitute of architecture `architecture` trained by Papernot's procedure, querying `target`."""
    image_shape, classes = DATASET_SHAPES[study.dataset]
    return train_substitute(
        lambda images: predict(target, images),
        lambda: build_classifier(architecture, image_shape, classes),
        seeds,
        rounds=study.substitute_rounds,
        step=study.substitute_step,
        epochs=study.substitute_epochs,
        batch_size=BATCH_SIZE,
        seed=study.seed,
    )


def run_study(
    study: TransferStudy,
    images: np.ndarray,
    labels: np.ndarray,
    seeds: np.ndarray,
    work_dir: str,
    start: float | None = None,
) -> tuple[list[TransferRow], list[SubstituteRow]]:
    """Crafts every attack on every substitute of every pair and scores it on the pair's target.

    Args:
        study: the settings.
        images, labels: the evaluation sample.
        seeds: the attacker's held-out images for Papernot substitutes (disjoint from `images`).
        work_dir: where trained classifiers are written.
        start: `time.perf_counter()` the progress lines count from (default: now).

    Returns:
        The transfer rows and the substitute rows.
    """
    start = time.perf_counter() if start is None else start
    classifiers, training_limits = classifiers_for(study, work_dir, start)
    attacks = {spec: attack_from_spec(spec) for spec in study.attacks}
    # A plain substitute is the same model for every target, so its adversarials are crafted once.
    adversarials: dict[tuple[str, str], tuple[np.ndarray, float]] = {}
    transfer_rows: list[TransferRow] = []
    substitute_rows: list[SubstituteRow] = []
    for pair in study.pairs:
        target_name, source = pair.split("/")
        target = classifiers[target_name]
        target_clean_predictions = predict(target, images)
        target_clean = accuracy_of(target_clean_predictions, labels)
        for kind in study.substitutes:
            began, seconds = time.perf_counter(), None
            if kind == "papernot":
                progress(f"{pair}: training a Papernot substitute {source} by querying {target_name}", start)
                substitute = papernot_substitute(study, target, source, seeds)
                key = f"papernot {source} of {target_name}"
                # The set doubles after every round but the last.
                training_images = len(seeds) * 2 ** (study.substitute_rounds - 1)
                seconds = time.perf_counter() - began
            else:
                substitute, key = classifiers[source], f"plain {source}"
                training_images = training_limits[source]
            substitute_predictions = predict(substitute, images)
            substitute_rows.append(
                SubstituteRow(
                    pair,
                    kind,
                    training_images,
                    accuracy_of(substitute_predictions, labels),
                    accuracy_of(substitute_predictions, target_clean_predictions),
                    seconds,
                )
            )
            progress(f"{pair}: {kind} substitute {substitute_rows[-1].markdown()}", start)
            for spec, attack in attacks.items():
                if (key, spec) not in adversarials:
                    began = time.perf_counter()
                    adversarial = craft(attack, substitute, images, labels, study.seed)
                    adversarials[(key, spec)] = adversarial, time.perf_counter() - began
                adversarial, seconds = adversarials[(key, spec)]
                target_predictions = predict(target, adversarial)
                substitute_predictions = predict(substitute, adversarial)
                substitute_fooled = substitute_predictions != labels
                eligible = substitute_fooled & (target_clean_predictions == labels)
                row = TransferRow(
                    pair,
                    kind,
                    spec,
                    target_clean,
                    accuracy_of(target_predictions, labels),
                    accuracy_of(substitute_predictions, labels),
                    (int((eligible & (target_predictions != labels)).sum()), int(eligible.sum())),
                    distortion(images, adversarial),
                    seconds,
                )
                transfer_rows.append(row)
                progress(f"{row.markdown()} ({seconds:.0f} s crafting)", start)
    return transfer_rows, substitute_rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", default=",".join(PAPER_PAIRS), help="TARGET/SUBSTITUTE pairs, comma-separated")
    parser.add_argument("--substitutes", default=",".join(SUBSTITUTE_KINDS), help="papernot and/or plain")
    parser.add_argument("--attacks", default=DEFAULT_ATTACKS, help="attack specs crafted on the substitute")
    parser.add_argument("--n", type=int, default=TransferStudy.n, help="evaluation images")
    parser.add_argument("--seed", type=int, default=TransferStudy.seed)
    parser.add_argument("--dataset", default=TransferStudy.dataset)
    parser.add_argument("--data-dir", default=None, help="the dataset's folder (see lqvae_tf.data)")
    parser.add_argument("--classifier-dir", default=None, help="load classifier_X.keras from here instead of training")
    parser.add_argument("--epochs", type=int, default=TransferStudy.epochs, help="classifier training epochs")
    parser.add_argument("--limit", type=int, default=TransferStudy.limit, help="classifier training images")
    parser.add_argument("--work-dir", default=None, help="where trained classifiers go (default: a temporary folder)")
    parser.add_argument("--substitute-seeds", type=int, default=PAPERNOT_SEEDS)
    parser.add_argument("--substitute-rounds", type=int, default=PAPERNOT_ROUNDS)
    parser.add_argument("--substitute-step", type=float, default=PAPERNOT_STEP)
    parser.add_argument("--substitute-epochs", type=int, default=SUBSTITUTE_EPOCHS, help="epochs per round")
    parser.add_argument("--results-file", default=RESULTS, help="Markdown file the tables are appended to")
    parser.add_argument("--out", default=None, help="also write settings and rows as JSON here")
    return parser.parse_args(argv)


def study_from(args: argparse.Namespace) -> TransferStudy:
    """The validated settings of a command line."""
    study = TransferStudy(
        pairs=tuple(p.strip() for p in args.pairs.split(",") if p.strip()),
        substitutes=tuple(k.strip() for k in args.substitutes.split(",") if k.strip()),
        attacks=tuple(split_specs(args.attacks)),
        n=args.n,
        seed=args.seed,
        dataset=args.dataset,
        classifier_dir=args.classifier_dir,
        epochs=args.epochs,
        limit=args.limit,
        substitute_seeds=args.substitute_seeds,
        substitute_rounds=args.substitute_rounds,
        substitute_step=args.substitute_step,
        substitute_epochs=args.substitute_epochs,
    )
    study.validate()
    return study


def write_tables(
    study: TransferStudy, transfer_rows: list[TransferRow], substitute_rows: list[SubstituteRow], path: str
) -> None:
    """Prints both tables and appends them, headed by the command, to `path`."""
    classifiers = (
        f"classifiers from {study.classifier_dir}"
        if study.classifier_dir
        else f"classifiers trained {study.epochs} epochs on {study.limit or 'all'} images, seed {study.seed}"
    )
    settings = (
        f"{study.dataset}, n={study.n} test images sampled with seed {study.seed}, disjoint from "
        f"{study.substitute_seeds} held-out substitute seeds; Papernot substitutes: {study.substitute_rounds} "
        f"rounds, lambda {study.substitute_step}, {study.substitute_epochs} epochs per round, Adam 1e-3, "
        f"batch {BATCH_SIZE}, oracle = target argmax; {classifiers}; undefended targets"
    )
    append_table(
        "Black-box transfer: Papernot vs plain substitutes, by attack",
        settings,
        [
            "target/substitute",
            "substitute",
            "attack on substitute",
            "n",
            "target acc. % [95% CI]",
            "target clean %",
            "transfer rate %",
            "mean L2",
            "mean L-inf",
            "subst. acc. on adv. %",
        ],
        [row.markdown() for row in transfer_rows],
        path,
    )
    append_table(
        "Black-box substitutes: fidelity to their targets",
        settings,
        ["target/substitute", "substitute", "training images", "clean acc. %", "agreement with target %", "training s"],
        [row.markdown() for row in substitute_rows],
        path,
    )


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the measurement from a command line; returns (and optionally writes) the JSON record."""
    args = parse_args(argv)
    # DeepFool's tf.function is traced anew for every substitute and overshoot: expected, not news.
    tf.get_logger().setLevel("ERROR")
    study = study_from(args)
    start = time.perf_counter()
    images, labels = load_test_arrays(study.dataset, args.data_dir)
    chosen, held_out = sample_indices(len(images), study.n, study.seed, study.substitute_seeds)
    progress(f"{study.n} evaluation images, {len(held_out)} held-out seeds; pairs {', '.join(study.pairs)}", start)
    with tempfile.TemporaryDirectory() as temporary:
        work_dir = args.work_dir or temporary
        os.makedirs(work_dir, exist_ok=True)
        transfer_rows, substitute_rows = run_study(
            study, images[chosen], labels[chosen], images[held_out], work_dir, start
        )
    write_tables(study, transfer_rows, substitute_rows, args.results_file)
    record = {
        "command": " ".join(["python", os.path.relpath(sys.argv[0]), *sys.argv[1:]]),
        "study": dataclasses.asdict(study),
        "transfer": [row.to_dict() for row in transfer_rows],
        "substitutes": [row.to_dict() for row in substitute_rows],
        "seconds": round(time.perf_counter() - start, 1),
    }
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2)
    progress(f"done; tables appended to {args.results_file}" + (f", JSON in {args.out}" if args.out else ""), start)
    return record


if __name__ == "__main__":
    main()
