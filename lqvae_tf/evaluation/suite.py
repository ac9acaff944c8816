"""One call for a whole evaluation: data sample, defenses, attack specs -> tables and figures.

Attack specs name the setting by prefix:
    fgsm, deepfool, cw, ...        white-box on each classifier (the attacker knows it, not the filter)
    bpda-pgd, identity-pgd, naive-pgd   end-to-end on defense + classifier with that gradient
    soft-authors_fgsm              end-to-end through the defense's soft surrogate (for LQ-VAE the
                                   authors' own BPDA: decoder on the soft code of a sampled latent)
    transfer-deepfool              black-box: crafted on classifier Y, tested on X, for all X != Y
    papernot-deepfool              black-box: crafted on a Papernot substitute of architecture Y
                                   trained by querying X (150 held-out seeds, 6 rounds, lambda 0.1)

A spec may end in parameters for that row alone, `bpda-pgd[eps=0.1,nb_iter=40,restarts=2,eot=8]`:
the attack's own parameters (over `attack_params` and its defaults), plus `restarts` (runs per
image, the first that fools the attacked model kept), `eot` (EOT samples where the attacked
gradient is random), `on` (classifier names joined by `+`: the only classifiers this row
attacks, e.g. `on=A` for costly adaptive rows) and, for end-to-end specs, `skip` (defense names
joined by `+` that this row does not attack, e.g. a search-based defense under a 40-step attack:
reported "not run").
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import time
from collections.abc import Mapping, Sequence

import keras
import numpy as np

from lqvae_tf.atomic import write_text
from lqvae_tf.data import split_arrays
from lqvae_tf.data.registry import CLASSIFIER_VALUE_RANGE
from lqvae_tf.defenses import Defense, LQVAEDefense
from lqvae_tf.evaluation.figures import (
    accuracy_vs_strength,
    bit_flip_histogram,
    latent_tsne,
)
from lqvae_tf.evaluation.harness import Evaluation, Row, flipped_fraction, predict_classes
from lqvae_tf.evaluation.paper import reference
from lqvae_tf.evaluation.report import write_reports
from lqvae_tf.evaluation.worst import per_image_worst

GRADIENTS = ("bpda", "identity", "naive", "soft")
TRANSFERS = ("transfer", "papernot")


# Spec parameters the harness takes, not the attack: restarts, EOT samples, columns skipped, the
# classifiers attacked (`on=A+B`), and `n`, the first this-many images of the sample the row scores
# (an attack too costly for the whole sample, e.g. `cw_l2`; its cells report that n).
SPEC_OPTIONS = ("restarts", "eot", "skip", "on", "n")


def _spec_value(spec: str, text: str):
    """One `key=value` of a spec, the value read as JSON (numbers, true/false) or kept a string."""
    key, equals, raw = text.partition("=")
    if not equals or not key.strip():
        raise ValueError(f"attack spec {spec!r}: parameters are key=value, got {text!r}")
    try:
        return key.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return key.strip(), raw.strip()


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """A parsed attack spec: the setting, how gradients or substitutes are taken, the attack,
    its parameters for this spec, and the harness's `restarts` and `eot`."""

    setting: str
    how: str | None
    attack: str
    params: tuple = ()
    restarts: int = 1
    eot: int | None = None
    skip: tuple[str, ...] = ()
    on: tuple[str, ...] = ()
    n: int | None = None

    @property
    def variant(self) -> str:
        """The attack parameters this spec sets, as written in it ("eps_iter=0.075"; empty: none)."""
        return ",".join(f"{key}={value}" for key, value in self.params)

    @classmethod
    def parse(cls, text: str) -> AttackSpec:
        """`[PREFIX-]ATTACK[key=value,...]`; raises ValueError naming what is malformed."""
        name, bracket, rest = text.partition("[")
        params: dict = {}
        if bracket:
            if not rest.endswith("]") or "[" in rest:
                raise ValueError(f"attack spec {text!r}: parameters go in one [...] at the end")
            params = dict(_spec_value(text, item) for item in rest[:-1].split(",") if item.strip())
        options = {key: params.pop(key) for key in SPEC_OPTIONS if key in params}
        skip = tuple(str(options.pop("skip")).split("+")) if "skip" in options else ()
        on = tuple(str(options.pop("on")).split("+")) if "on" in options else ()
        for key, value in options.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"attack spec {text!r}: {key} must be a positive integer, got {value!r}")
        prefix, _, attack = name.partition("-")
        if attack and prefix in GRADIENTS:
            setting, how = "end-to-end", prefix
        elif attack and prefix in TRANSFERS:
            setting, how = "black-box", prefix
        else:
            setting, how, attack = "white-box", None, name
        if setting != "end-to-end" and ("eot" in options or skip):
            raise ValueError(f"attack spec {text!r}: eot and skip apply to end-to-end specs only")
        return cls(
            setting,
            how,
            attack,
            tuple(sorted(params.items())),
            options.get("restarts", 1),
            options.get("eot"),
            skip,
            on,
            options.get("n"),
        )


def split_specs(text: str) -> list[str]:
    """A comma-separated list of specs, where commas inside a spec's `[...]` do not split."""
    specs, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            specs.append(current)
            current = ""
        else:
            current += char
    specs.append(current)
    return [spec.strip() for spec in specs if spec.strip()]


def sample_indices(total: int, n: int, seed: int, held_out: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random evaluation sample of `n` indices and `held_out` others (attacker seeds)."""
    if n + held_out > total:
        raise ValueError(f"asked for {n} evaluation + {held_out} held-out images from {total}")
    order = np.random.default_rng(seed).permutation(total)
    return np.sort(order[:n]), np.sort(order[n : n + held_out])


def spare_indices(total: int, n: int, seed: int, held_out: int, count: int) -> np.ndarray:
    """`count` indices outside `sample_indices(total, n, seed, held_out)`'s two sets (the next of
    its permutation): test images no table scores and no attacker sees, e.g. to check a model
    while it trains."""
    if n + held_out + count > total:
        raise ValueError(f"asked for {count} spare images beside {n} evaluation + {held_out} held-out of {total}")
    order = np.random.default_rng(seed).permutation(total)
    return np.sort(order[n + held_out : n + held_out + count])


def load_test_arrays(dataset: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The test split of `dataset` as numpy (images in [0, 1], labels)."""
    return split_arrays(dataset, "test", value_range=CLASSIFIER_VALUE_RANGE, data_dir=data_dir or None)


LQVAE_NAME = "lq-vae"  # the LQ-VAE column's name in every table


def run_suite(
    images: np.ndarray,
    labels: np.ndarray,
    purifier,
    classifiers: Mapping[str, keras.Model],
    specs: Sequence[str],
    out_dir: str,
    attack_params: Mapping[str, dict] | None = None,
    seeds_for_substitutes: np.ndarray | None = None,
    eot_samples: int = 1,
    eps_grid: Sequence[float] = (),
    seed: int = 0,
    meta: Mapping | None = None,
    verbose: bool = True,
    other_defenses: Sequence[Defense] = (),
    robust_classifiers: Mapping[str, Mapping[str, keras.Model]] | None = None,
    defense_limits: Mapping[str, int] | None = None,
    stacked: Mapping[str, tuple[str, str]] | None = None,
    substitutes: Mapping[tuple[str, str], keras.Model] | None = None,
) -> dict[str, str]:
    """Runs every spec on every classifier, writes results.{md,csv,json} and the figures.

    Args:
        images, labels: the evaluation sample (images in [0, 1]).
        purifier: a trained `LQVAE`.
        classifiers: name -> Keras classifier (name = architecture name for Papernot substitutes).
        specs: attack specs (see module docstring).
        out_dir: where reports, figures and the adversarial cache go.
        attack_params: attack name -> parameters overriding its defaults.
        seeds_for_substitutes: held-out images for Papernot substitute training.
        eot_samples: EOT samples for stochastic defenses.
        eps_grid: FGSM strengths for the accuracy-vs-eps figure (empty: no figure).
        seed: recorded, and seeds substitute training.
        meta: extra facts recorded in results.json.
        other_defenses: purifiers compared beside LQ-VAE in every row (e.g. Defense-GAN).
        robust_classifiers: adversarially trained columns, column -> classifier name -> model
            (see `Evaluation`).
        defense_limits: defense name -> images of the sample it is scored on (see `Evaluation`).
        stacked: purifier-in-front-of-robust-classifier columns, column -> (defense name, robust
            column); the LQ-VAE purifier's name is `LQVAE_NAME` (see `Evaluation`).
        substitutes: trained Papernot substitutes by (target, architecture), as
            `papernot_pairs` names them (a study trains them in its models phase and keeps them);
            a pair not given is trained here from `seeds_for_substitutes`.

    Returns:
        Paths of what was written, by kind.
    """
    from lqvae_tf.attacks import make_attack

    attack_params = dict(attack_params or {})
    parsed = [AttackSpec.parse(s) for s in specs]
    for spec, text in zip(parsed, specs):
        unknown = [name for name in spec.on if name not in classifiers]
        if unknown:
            known = list(classifiers)
            raise ValueError(f"attack spec {text!r}: on= names {unknown}, not among the classifiers {known}")
    attacks = {
        spec: make_attack(spec.attack, **{**attack_params.get(spec.attack, {}), **dict(spec.params)}) for spec in parsed
    }
    defense = LQVAEDefense(purifier, name=LQVAE_NAME)
    evaluation = Evaluation(
        images,
        labels,
        classifiers,
        [defense, *other_defenses],
        cache_dir=os.path.join(out_dir, "cache"),
        verbose=verbose,
        robust_classifiers=robust_classifiers,
        defense_limits=defense_limits,
        stacked=stacked,
    )
    subsets: dict[int, Evaluation] = {}

    def evaluation_for(spec: AttackSpec) -> Evaluation:
        """The evaluation a spec's rows score: the whole sample, or its first `spec.n` images."""
        if spec.n is None or spec.n >= len(images):
            return evaluation
        if spec.n not in subsets:
            subsets[spec.n] = Evaluation(
                images[: spec.n],
                labels[: spec.n],
                classifiers,
                [defense, *other_defenses],
                cache_dir=os.path.join(out_dir, "cache"),  # keyed by the subset's own fingerprint
                verbose=verbose,
                robust_classifiers=robust_classifiers,
                defense_limits={name: min(limit, spec.n) for name, limit in (defense_limits or {}).items()},
                stacked=stacked,
            )
        return subsets[spec.n]

    names = list(classifiers)
    rows: list[Row] = []
    substitutes = dict(substitutes or {})

    def from_cache() -> tuple[float, int]:
        """The cached batches' recorded seconds and untimed batches this run has read so far."""
        scored = (evaluation, *subsets.values())
        return sum(e.recorded_seconds for e in scored), sum(e.untimed_batches for e in scored)

    for spec in parsed:
        attack = attacks[spec]
        scored = evaluation_for(spec)
        for target in (n for n in names if not spec.on or n in spec.on):
            start, before = time.perf_counter(), from_cache()
            if spec.setting == "white-box":
                row = scored.white_box(attack, target, spec.restarts)
                rows.append(_timed(row, start, spec, before, from_cache()))
            elif spec.setting == "end-to-end":
                eot = eot_samples if spec.eot is None else spec.eot
                row = scored.end_to_end(attack, target, spec.how, eot, spec.restarts, spec.skip)
                rows.append(_timed(row, start, spec, before, from_cache()))
            else:
                for source in (n for n in names if n != target):
                    start, before = time.perf_counter(), from_cache()
                    substitute = classifiers[source]
                    if spec.how == "papernot":
                        if (target, source) not in substitutes:
                            substitutes[(target, source)] = papernot_substitute(
                                classifiers[target], source, seeds_for_substitutes, seed
                            )
                        substitute = substitutes[(target, source)]
                    row = scored.black_box(attack, target, source, substitute, spec.restarts)
                    row.params = {**row.params, "substitute": spec.how}
                    rows.append(_timed(row, start, spec, before, from_cache()))
    # Per image, the worst of the backward passes run at one budget: after the last row it combines.
    for index, row in sorted(per_image_worst(rows), key=lambda pair: pair[0], reverse=True):
        rows.insert(index, row)
    paths = write_reports(
        rows,
        out_dir,
        paper=reference((meta or {}).get("dataset", "")),
        meta={
            **dict(meta or {}),
            "seed": seed,
            "n": len(images),
            "specs": list(specs),
            "eot_samples": eot_samples,
            "date": datetime.date.today().isoformat(),
            "craft_seconds": craft_seconds(evaluation, *subsets.values()),
        },
    )
    paths.update(_figures(evaluation, evaluation_for, defense, attacks, parsed, names, out_dir, eps_grid))
    return paths


def craft_seconds(*evaluations: Evaluation) -> dict[str, float]:
    """Seconds from scratch of each crafting the evaluations ran, by description, costliest first."""
    total: dict[str, float] = {}
    for evaluation in evaluations:
        for description, seconds in evaluation.craft_seconds.items():
            total[description] = total.get(description, 0.0) + seconds
    return {name: round(seconds, 3) for name, seconds in sorted(total.items(), key=lambda item: -item[1])}


def papernot_pairs(specs: Sequence[str], names: Sequence[str]) -> list[tuple[str, str]]:
    """The (target, architecture) pairs whose Papernot substitutes `specs` need, in the order
    `run_suite` uses them: for each `papernot-` spec, each of `names` it attacks (its `on=`, or
    all) as target, with each other name as the substitute's architecture ("X/Y" rows)."""
    pairs: list[tuple[str, str]] = []
    for spec in map(AttackSpec.parse, specs):
        if spec.how != "papernot":
            continue
        for target in (n for n in names if not spec.on or n in spec.on):
            pairs += [(target, source) for source in names if source != target and (target, source) not in pairs]
    return pairs


def _timed(
    row: Row, start: float, spec: AttackSpec, before: tuple[float, int] = (0.0, 0), after: tuple[float, int] = (0.0, 0)
) -> Row:
    """`row` with its `seconds`: the wall seconds since `start` (a `time.perf_counter()` reading)
    plus those recorded beside the cached batches it read (the `from_cache` counts `before` and
    `after` it), and the attack parameters `spec` set as its `variant`."""
    recorded, untimed = after[0] - before[0], after[1] - before[1]
    row.seconds = round(time.perf_counter() - start + recorded, 1)
    row.recorded_seconds, row.untimed_batches = round(recorded, 1), untimed
    row.variant = spec.variant
    return row


def papernot_substitute(
    target: keras.Model, architecture: str, seeds: np.ndarray | None, seed: int = 0, batch_size: int = 256
) -> keras.Model:
    """A Papernot substitute of `target` (`train_substitute`): classifier `architecture` of this
    package, trained on `seeds` and their Jacobian augmentations labelled by `target`'s predicted
    classes (query access only), seeded by `seed`."""
    from lqvae_tf.attacks.substitute import train_substitute
    from lqvae_tf.classifiers import build_classifier

    if seeds is None or len(seeds) == 0:
        raise ValueError("papernot substitutes need held-out seed images")

    def oracle(images: np.ndarray) -> np.ndarray:
        return predict_classes(target, images, batch_size)

    shape = tuple(seeds.shape[1:])
    classes = int(target.output_shape[-1])
    return train_substitute(oracle, lambda: build_classifier(architecture, shape, classes), seeds, seed=seed)


def _figures(evaluation, evaluation_for, defense, attacks, parsed, names, out_dir, eps_grid) -> dict[str, str]:
    paths = {}
    white = [s for s in parsed if s.setting == "white-box"]
    if white:
        # The paper's Fig. 3 shows CW adversarials that flip few bits: the minimal-perturbation CW
        # (`cw_l2`) where it is run; Defense-GAN's `cw` settings make whole new images.
        chosen = next((s for attack in ("cw_l2", "cw") for s in white if s.attack == attack), white[0])
        name = chosen.attack
        # The row's own adversarials (from the cache): its images (`n=`) and a classifier it attacked.
        scored = evaluation_for(chosen)
        target = names[0] if not chosen.on or names[0] in chosen.on else chosen.on[0]
        adversarial = scored.adversarials_on(attacks[chosen], target, restarts=chosen.restarts)
        clean_means, adversarial_means = (
            defense.latent_means(scored.images),
            defense.latent_means(adversarial),
        )
        paths["tsne"] = latent_tsne(
            clean_means,
            adversarial_means,
            os.path.join(out_dir, "tsne_latent.png"),
            labels=scored.labels,
            title=f"t-SNE of latent means: clean vs {name} on {target}",
        )
        clean_codes = defense.model.quantize_hard(clean_means).numpy()
        adversarial_codes = defense.model.quantize_hard(adversarial_means).numpy()
        correct = scored.predict(scored.classifiers[target], defense.purify(adversarial)) == scored.labels
        paths["bit_flips"] = bit_flip_histogram(
            flipped_fraction(clean_codes, adversarial_codes),
            correct,
            os.path.join(out_dir, "bit_flips.png"),
            title=f"Latent bits flipped by {name} on {target}",
        )
    if eps_grid:
        from lqvae_tf.attacks import make_attack

        curves: dict[str, list[float]] = {"no defense": []}
        for eps in eps_grid:
            row = evaluation.white_box(make_attack("fgsm", eps=float(eps)), names[0])
            curves["no defense"].append(row.no_defense.percent)
            for column, accuracy in row.defended.items():  # every defense compared, robust columns too
                curves.setdefault(column, []).append(accuracy.percent)
        paths["accuracy_vs_eps"] = accuracy_vs_strength(
            list(eps_grid),
            curves,
            os.path.join(out_dir, "accuracy_vs_eps.png"),
            xlabel="FGSM eps (L-inf, pixels in [0, 1])",
            title=f"FGSM on {names[0]}: accuracy against eps",
        )
        paths["accuracy_vs_eps_data"] = write_text(
            os.path.join(out_dir, "accuracy_vs_eps.json"),
            json.dumps(
                # n: the images behind each point, from which a reader (and the study's masking
                # check, lqvae_tf.study.floors) takes the points' intervals.
                {
                    "attack": "fgsm",
                    "classifier": names[0],
                    "eps": list(eps_grid),
                    "n": len(evaluation.labels),
                    "accuracy": curves,
                },
                indent=2,
            ),
        )
    return paths
