"""`lqvae reproduce`: train (or reuse) every model a study needs, run its tables, write the report.

The defenses compared in every row, on the same sample, classifiers and attacks:

    no defense    the classifier alone
    lq-vae        the LQ-VAE purifier in front of it
    defense-gan   Defense-GAN's latent search (L steps x R restarts) in front of it
    madry         the classifier Madry-PGD adversarially trained instead
    adv-tr        the classifier FGSM adversarially trained instead (Goodfellow et al.)

Models are kept in a `ModelStore` by the hash of their settings. The report is one Markdown page
(`<out>/results/<dataset>.md`): the command, every setting, each model's training summary and
time, the tables beside the paper's numbers, and the figures; the full tables with intervals and
the figures sit in `<out>/results/<dataset>/`. `<out>/results.md` is the index of every study's
page, rebuilt after each run (`lqvae_tf.study.index`).
"""

from __future__ import annotations

import datetime
import json
import os
import time
from collections.abc import Callable
from typing import Any

import keras

from lqvae_tf.atomic import write_text
from lqvae_tf.evaluation.report import cache_note
from lqvae_tf.generated import marker, without_marker
from lqvae_tf.provenance import code_version
from lqvae_tf.study.config import PAPER_COLUMN, StudyConfig
from lqvae_tf.study.floors import floor_lines
from lqvae_tf.study.gaps import gap_lines
from lqvae_tf.study.index import page_path, write_index
from lqvae_tf.study.store import ModelStore

ROBUST_COLUMNS = {"madry": "pgd", "adv-tr": "fgsm"}  # result column -> adversarial-training method
# The filter in front of the Madry classifier: what a user who wants the most robustness deploys
# (issue 27). Column -> (purifier column, robust column).
STACKED_COLUMNS = {"madry+lq-vae": ("lq-vae", "madry")}


class Stages:
    """Wall time of each stage of a study, printed as it goes and kept for the report."""

    def __init__(self, verbose: bool):
        self.verbose = verbose
        self.seconds: dict[str, float] = {}
        self.reused: dict[str, bool] = {}

    def run(self, name: str, work: Callable[[], Any]) -> Any:
        if self.verbose:
            print(f"[reproduce] {name} ...", flush=True)
        start = time.perf_counter()
        result = work()
        self.seconds[name] = round(time.perf_counter() - start, 1)
        if self.verbose:
            print(f"[reproduce] {name}: {self.seconds[name]} s", flush=True)
        return result


def _summary_of(model_path: str) -> dict[str, Any]:
    """The JSON summary a trainer wrote beside the model (`model.json`), or {}."""
    from lqvae_tf.classifiers import summary_path

    path = summary_path(model_path)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def classifier_model(name: str, column: str | None = None) -> str:
    """The name `train_models` gives the study's classifier `name`, or its robust version `column`
    (a key of `ROBUST_COLUMNS`, e.g. "madry"): "classifier A", "classifier A (madry)"."""
    return f"classifier {name}" if column is None else f"classifier {name} ({column})"


def substitute_model(target: str, architecture: str) -> str:
    """The name `train_models` gives the Papernot substitute of classifier `target` that has
    classifier `architecture`'s layers: "substitute A/B" (its transfers are the "A/B" rows)."""
    return f"substitute {target}/{architecture}"


def attacker_seeds(config: StudyConfig) -> int:
    """How many held-out test images the Papernot substitutes start from: the study's
    `held_out`, at most Defense-GAN's `PAPERNOT_SEEDS`."""
    from lqvae_tf.attacks.substitute import PAPERNOT_SEEDS

    return min(config.held_out, PAPERNOT_SEEDS) if config.held_out else 0


def substitute_pairs(config: StudyConfig) -> list[tuple[str, str]]:
    """The (target, architecture) pairs of the Papernot substitutes the study's attacks need."""
    from lqvae_tf.evaluation.suite import papernot_pairs

    return papernot_pairs(config.attacks, config.classifiers)


def model_names(config: StudyConfig) -> list[str]:
    """The names of the study's models, as `train_models` keys them."""
    names = ["purifier", *(["purifier (paper)"] if config.paper_purifier is not None else [])]
    for name in config.classifiers:
        names += [classifier_model(name), *(classifier_model(name, column) for column in ROBUST_COLUMNS)]
    names += [substitute_model(*pair) for pair in substitute_pairs(config)]
    return [*names, "gan"]


def train_models(
    config: StudyConfig,
    store: ModelStore,
    data_dir: str | None = None,
    stages: Stages | None = None,
    only: tuple[str, ...] | None = None,
) -> dict[str, str]:
    """Every model of the study, trained now or reused from `store`: name -> .keras path.

    The names are "purifier", "classifier A", "classifier A (madry)", "classifier A (adv-tr)",
    ..., "substitute A/B", ..., "gan" (the Papernot substitutes are models too: trained once here,
    keyed by their target's settings and their seed images, not retrained by every table run);
    `only` restricts the work to those named (the presets take the study's purifier and
    classifier A, `scripts/make_presets.py`). Each model's store key is its study settings, so
    whoever asks for it with the same study config gets the same model.
    """
    stages = stages or Stages(verbose=True)
    from lqvae_tf.classifiers import train_adversarial_classifier, train_classifier
    from lqvae_tf.config import config_from_settings
    from lqvae_tf.training import train_purifier
    from lqvae_tf.training.gan import GANTrainingConfig, train_gan

    dataset, seed = config.dataset, config.seed
    paths: dict[str, str] = {}
    # A warm-started adversarial classifier needs its clean classifier first; a generator trained
    # to a target, the target's classifier.
    needed = set(only or ())
    unknown = sorted(needed - set(model_names(config)))
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise ValueError(f"no model named {names} in the {config.dataset} study; its models: {model_names(config)}")
    if config.gan_target is not None and "gan" in needed:
        needed.add(classifier_model(config.gan_target["classifier"]))
    for name in config.classifiers:
        for column, method in ROBUST_COLUMNS.items():
            warm = (config.madry if method == "pgd" else config.adv_tr).get("warm_start", False)
            if warm and classifier_model(name, column) in needed:
                needed.add(classifier_model(name))
    for target, architecture in substitute_pairs(config):
        if substitute_model(target, architecture) in needed:
            needed.add(classifier_model(target))  # the oracle it queries

    def keep(name: str, kind: str, settings: dict, train: Callable[[str], object]) -> None:
        if only is not None and name not in needed:
            return

        def work():
            return store.get_or_train(kind, {"dataset": dataset, "seed": seed, **settings}, train)

        path, reused = stages.run(f"model {name}", work)
        paths[name] = path
        stages.reused[name] = reused

    purifier_config = config_from_settings(config.purifier, seed=seed)
    limit = config.purifier.get("limit")
    purifier_key: dict = {"config": purifier_config.to_dict(), "limit": limit}
    guide = config.purifier.get("classifier")  # the classifier a guided purifier is trained with
    if purifier_config.needs_classifier:
        if guide is None:
            raise ValueError(
                f"the purifier preset {config.purifier['preset']!r} trains with a classifier: name one of "
                f"the study's classifiers {config.classifiers} as the purifier's 'classifier'"
            )
        # Keyed by the classifier's settings, not its path, so another store finds the same model.
        purifier_key["classifier"] = {"name": guide, **config.classifier}
        if "purifier" in needed:
            needed.add(classifier_model(guide))

    def purifier(path: str) -> float:
        trained_with = purifier_config
        if "classifier" in purifier_key:
            trained_with = purifier_config.with_classifier(paths[classifier_model(guide)])
        result = train_purifier(trained_with, dataset, os.path.dirname(path), limit=limit, data_dir=data_dir, verbose=2)
        os.replace(result.model_path, path)
        return result.earlier_seconds  # a resumed training's earlier epochs count in its time

    def classifier_trainer(train: Callable[..., dict], name: str, **settings: Any) -> Callable[[str], float]:
        """`train(name, dataset, path, ...)` backed up after every epoch beside the model, so an
        interrupted training resumes (a from-scratch Madry recipe spans sessions) and its earlier
        calls' time counts in the store's record."""
        return lambda path: train(
            name,
            dataset,
            path,
            seed=seed,
            data_dir=data_dir,
            verbose=2,
            test_limit=2000,
            backup_dir=os.path.join(os.path.dirname(path), "backup"),
            **settings,
        )["earlier_seconds"]

    for name in config.classifiers:
        settings = dict(config.classifier)
        trainer = classifier_trainer(train_classifier, name, **settings)
        keep(classifier_model(name), f"classifier_{name}", settings, trainer)
        for column, method in ROBUST_COLUMNS.items():
            settings = dict(config.madry if method == "pgd" else config.adv_tr)
            key = {"method": method, **settings}
            if settings.pop("warm_start", False):
                # Fine-tuned from the clean classifier: its settings are part of this one's key.
                key["init"] = dict(config.classifier)
                settings["init_from"] = paths.get(classifier_model(name))
            trainer = classifier_trainer(train_adversarial_classifier, name, method=method, **settings)
            keep(classifier_model(name, column), f"classifier_{name}_{method}", key, trainer)
    # After the classifiers: each substitute queries one, and a guided purifier trains with one.
    from lqvae_tf.attacks.substitute import PAPERNOT_ROUNDS, PAPERNOT_STEP

    held_out = attacker_seeds(config)
    for target, architecture in substitute_pairs(config):
        keep(
            substitute_model(target, architecture),
            f"substitute_{target}_{architecture}",
            {
                # What it imitates, and what it starts from: the seed images are the `held_out`
                # test images after the study's `n`-image sample (`sample_indices`).
                "target": {"name": target, **config.classifier},
                "architecture": architecture,
                "seeds": {"n": config.n, "held_out": held_out},
                "papernot": {"rounds": PAPERNOT_ROUNDS, "step": PAPERNOT_STEP},
            },
            lambda path, t=target, a=architecture: _train_substitute(config, paths, t, a, held_out, path, data_dir),
        )
    keep("purifier", "purifier", purifier_key, purifier)
    if config.paper_purifier is not None:
        paper_config = config_from_settings(config.paper_purifier, seed=seed)
        paper_limit = config.paper_purifier.get("limit")

        def paper_purifier(path: str) -> float:
            result = train_purifier(
                paper_config, dataset, os.path.dirname(path), limit=paper_limit, data_dir=data_dir, verbose=2
            )
            os.replace(result.model_path, path)
            return result.earlier_seconds

        keep(
            "purifier (paper)",
            "purifier",
            {"config": paper_config.to_dict(), "limit": paper_limit},
            paper_purifier,
        )
    gan_config = GANTrainingConfig(dataset=dataset, seed=seed, **config.gan)
    gan_key: dict[str, Any] = {"config": gan_config.to_dict()}
    if config.gan_target is not None:
        # The target's classifier and search are part of what the generator becomes.
        gan_key["target"] = {
            **config.gan_target,
            "classifier_settings": config.classifier,
            "search": config.defense_gan,
        }

    def gan(path: str) -> float:
        target = _defense_gan_target(config, paths, data_dir) if config.gan_target is not None else None
        backup = os.path.join(os.path.dirname(path), "backup")
        return train_gan(gan_config, path, data_dir=data_dir, target=target, backup_dir=backup).earlier_seconds

    keep("gan", "gan", gan_key, gan)
    return {name: paths[name] for name in sorted(paths, key=lambda name: name != "purifier")}  # purifier first


def _train_substitute(
    config: StudyConfig,
    paths: dict[str, str],
    target: str,
    architecture: str,
    held_out: int,
    path: str,
    data_dir: str | None,
) -> None:
    """Trains the Papernot substitute of the study's classifier `target` with `architecture`'s
    layers on the study's held-out seed images; saves it to `path` atomically, with a summary:
    its accuracy and its agreement with the target on the first 2,000 test images."""
    from lqvae_tf.classifiers.train import save_with_summary
    from lqvae_tf.evaluation.suite import load_test_arrays, papernot_substitute, sample_indices

    images, labels = load_test_arrays(config.dataset, data_dir)
    _, seeds = sample_indices(len(images), config.n, config.seed, held_out)
    oracle = keras.models.load_model(paths[classifier_model(target)])
    substitute = papernot_substitute(oracle, architecture, images[seeds], config.seed)
    test, truth = images[:2000], labels[:2000]
    predicted = substitute.predict(test, batch_size=256, verbose=0).argmax(-1)
    queried = oracle.predict(test, batch_size=256, verbose=0).argmax(-1)
    summary = {
        "name": substitute_model(target, architecture),
        "dataset": config.dataset,
        "seeds": int(len(seeds)),
        "test_accuracy": float((predicted == truth).mean()),
        "test_agreement": float((predicted == queried).mean()),
    }
    save_with_summary(substitute, path, summary)


# The per-epoch metrics of an adversarial training's curve (its summary's `curve`), by column title.
CURVE_COLUMNS = {
    "eps": "eps attacked",
    "accuracy": "train accuracy under the training attack",
    "clean_accuracy": "train clean accuracy",
    "val_accuracy": "test accuracy under the training attack",
    "val_clean_accuracy": "test clean accuracy",
}


# Adv-Tr "collapses" under PGD when PGD takes it this many points below its FGSM accuracy.
COLLAPSE_POINTS = 20.0


def fgsm_training_lines(rows: list[dict]) -> list[str]:
    """Markdown lines: what the FGSM-trained column (`adv-tr`, the paper's Adv-Tr) keeps under
    FGSM, its own training attack, and under iterative PGD at each eps (the worst end-to-end row,
    which attacks the model itself), measured in `rows` (results.json); [] without both."""
    fgsm = [
        r["defended"]["adv-tr"]["accuracy"]
        for r in rows
        if r["setting"] == "white-box" and r["attack"] == "fgsm" and "adv-tr" in r["defended"]
    ]
    pgd: dict[float, float] = {}
    for row in rows:
        eps = row["params"].get("eps")
        if row["setting"] == "end-to-end" and row["attack"] == "pgd" and "adv-tr" in row["defended"] and eps:
            pgd[eps] = min(pgd.get(eps, 100.0), row["defended"]["adv-tr"]["accuracy"])
    if not fgsm or not pgd:
        return []
    under_fgsm = sum(fgsm) / len(fgsm)
    cells = ", ".join(f"{accuracy:.2f}% at eps {eps:g}" for eps, accuracy in sorted(pgd.items()))
    collapsed = [eps for eps, accuracy in pgd.items() if accuracy < under_fgsm - COLLAPSE_POINTS]
    verdict = (
        f"it collapses under PGD (more than {COLLAPSE_POINTS:g} points below its FGSM accuracy) at eps "
        + ", ".join(f"{eps:g}" for eps in sorted(collapsed))
        if collapsed
        else f"PGD takes it no more than {COLLAPSE_POINTS:g} points below its FGSM accuracy"
    )
    return [
        "",
        f"**Adv-Tr** (the paper's FGSM adversarial training) keeps {under_fgsm:.2f}% under FGSM, its own "
        f"training attack (white-box average), and under PGD-40 with restarts (the worst end-to-end row, "
        f"which attacks the model itself) {cells}: {verdict}.",
        "",
    ]


def _target_curve(name: str, target: dict | None, summary: dict) -> list[str]:
    """Markdown lines: a generator's accuracy-behind-Defense-GAN checks (`train_gan`'s `target`)."""
    if not target:
        return []
    outcome = "reached" if target["reached"] else "not reached"
    return [
        "",
        f"Training of {name} toward its target: classifier accuracy {100 * target['accuracy']:.0f}% behind "
        f"Defense-GAN on {target['images']} held-out test images, {outcome} after {summary.get('epochs_trained')} "
        f"epochs ({summary.get('generator_steps_taken')} generator steps, {summary.get('train_seconds')} s):",
        "",
        "| epoch | accuracy behind Defense-GAN |",
        "|---|---|",
        *[f"| {point['epoch']} | {100 * point['accuracy']:.2f} |" for point in target["curve"]],
    ]


def purifier_training(paths: dict[str, str]) -> list[str]:
    """Markdown lines: how far each purifier of the study trained (the `training.json` its
    training wrote beside the model), the authors' purifier beside the authors' step count."""
    from lqvae_tf.config import PAPER_ITERATIONS
    from lqvae_tf.training.train import TRAINING_FILE

    lines = []
    for name, path in paths.items():
        if not name.startswith("purifier"):
            continue
        folder = os.path.dirname(path)
        record_path, history_path = os.path.join(folder, TRAINING_FILE), os.path.join(folder, "history.json")
        if os.path.isfile(record_path):
            with open(record_path, encoding="utf-8") as handle:
                record = json.load(handle)
            authors = f" (the authors' Train_LQ_VAE.py: {PAPER_ITERATIONS:,})" if name == "purifier (paper)" else ""
            lines.append(
                f"- {name}: {record['epochs']} of {record['planned_epochs']} epochs, "
                f"{record['optimizer_steps']:,} optimizer steps of batch {record['batch_size']}{authors}."
            )
        elif os.path.isfile(history_path):
            with open(history_path, encoding="utf-8") as handle:
                epochs = max((len(values) for values in json.load(handle).values()), default=0)
            lines.append(f"- {name}: {epochs} epochs (trained before its optimizer steps were recorded).")
    return ["", "How far the purifiers trained:", "", *lines] if lines else []


def training_curves(summaries: dict[str, dict]) -> list[str]:
    """Markdown lines: for each model whose summary holds a per-epoch `curve` (adversarially
    trained classifiers), a table of it, one row an epoch; for a generator trained toward a
    target, its checks; accuracies in percent."""
    lines = []
    for name, summary in summaries.items():
        lines += _target_curve(name, summary.get("target"), summary)
        curve = summary.get("curve") or {}
        columns = [key for key in CURVE_COLUMNS if curve.get(key)]
        if not columns:
            continue
        attack = summary.get("adversarial") or {}
        # Each epoch's wall seconds, where the training recorded them (older summaries did not):
        # a slow epoch, e.g. one that waited on a paused process, shows where the total hides it.
        epoch_seconds = summary.get("epoch_seconds") or []
        lines += [
            "",
            f"Training curve of {name} ({attack.get('method')}, eps {attack.get('eps')}, "
            f"{attack.get('steps') or 1} step(s) of {attack.get('step_size') or attack.get('eps')}; "
            f"{summary.get('seconds', '')} s in all):",
            "",
            "| epoch | "
            + " | ".join(CURVE_COLUMNS[key] for key in columns)
            + (" | seconds" if epoch_seconds else "")
            + " |",
            "|---" * (len(columns) + 1 + bool(epoch_seconds)) + "|",
        ]
        for epoch in range(max(len(curve[key]) for key in columns)):
            cells = []
            for key in columns:
                values = curve[key]
                value = values[epoch] if epoch < len(values) else None
                cells.append("" if value is None else f"{value:.3g}" if key == "eps" else f"{100 * value:.2f}")
            if epoch_seconds:
                cells.append(f"{epoch_seconds[epoch]:.0f}" if epoch < len(epoch_seconds) else "")
            lines.append(f"| {epoch + 1} | " + " | ".join(cells) + " |")
    return lines


def _defense_gan_target(config: StudyConfig, paths: dict[str, str], data_dir: str | None):
    """The `DefenseGANTarget` of `config.gan_target`: its classifier, the study's search, and
    spare test images (none of the evaluation sample's or the attackers' seeds)."""
    from lqvae_tf.evaluation.suite import load_test_arrays, spare_indices
    from lqvae_tf.training.gan import DefenseGANTarget

    target = config.gan_target
    images, labels = load_test_arrays(config.dataset, data_dir)
    chosen = spare_indices(len(images), config.n, config.seed, config.held_out, target["images"])
    return DefenseGANTarget(
        keras.models.load_model(paths[classifier_model(target["classifier"])]),
        images[chosen],
        labels[chosen],
        accuracy=target["accuracy"],
        every_epochs=target["every_epochs"],
        search=config.defense_gan,
        seed=config.seed,
    )


def run_study(
    config: StudyConfig,
    out_dir: str,
    models_dir: str,
    data_dir: str | None = None,
    command: str = "",
    verbose: bool = True,
    models_only: bool = False,
    only: tuple[str, ...] | None = None,
) -> dict[str, str]:
    """Runs the study `config`: writes `<out_dir>/results/<dataset>.md`, `<out_dir>/results/<dataset>/`
    and the index `<out_dir>/results.md`.

    Args:
        config: the study (`study_config(dataset, quick)`).
        out_dir: where the report goes (`docs` for the record).
        models_dir: the model store's folder.
        data_dir: the dataset's folder (see `lqvae_tf.data`).
        command: the command line that ran the study, written at the top of the report.
        verbose: progress bars and stage times.
        models_only: train (or find) the study's models and stop there.
        only: with `models_only`, those models alone (`train_models`' names, e.g. "purifier"), so
            that a long models phase can be spread over sessions one model at a time.

    Returns:
        Paths of what was written, by kind ("report" is the study's page, "index" the index);
        with `models_only`, the models' paths by name.
    """
    from lqvae_tf.defenses import DefenseGANDefense, LQVAEDefense
    from lqvae_tf.evaluation.suite import load_test_arrays, run_suite, sample_indices

    stages = Stages(verbose)
    images, labels = load_test_arrays(config.dataset, data_dir)  # first: no data, no training
    if only is not None and not models_only:
        raise ValueError("only names models to train: it needs models_only (the tables need every model)")
    paths = train_models(config, ModelStore(models_dir), data_dir, stages, only=only)
    if models_only:
        return paths
    held_out = attacker_seeds(config)
    chosen, seeds = sample_indices(len(images), config.n, config.seed, held_out)

    purifier = keras.models.load_model(paths["purifier"])
    classifiers = {name: keras.models.load_model(paths[classifier_model(name)]) for name in config.classifiers}
    robust = {
        column: {name: keras.models.load_model(paths[classifier_model(name, column)]) for name in config.classifiers}
        for column in ROBUST_COLUMNS
    }
    defense_gan = DefenseGANDefense(
        keras.models.load_model(paths["gan"]), seed=config.seed, name="defense-gan", **config.defense_gan
    )
    others = [defense_gan]
    if "purifier (paper)" in paths:
        others.insert(0, LQVAEDefense(keras.models.load_model(paths["purifier (paper)"]), name=PAPER_COLUMN))
    substitutes = {pair: keras.models.load_model(paths[substitute_model(*pair)]) for pair in substitute_pairs(config)}
    results_dir = os.path.join(out_dir, "results", config.dataset)
    written = stages.run(
        "tables and figures",
        lambda: run_suite(
            images[chosen],
            labels[chosen],
            purifier,
            classifiers,
            list(config.attacks),
            results_dir,
            attack_params=config.attack_params,
            seeds_for_substitutes=images[seeds] if held_out else None,
            eps_grid=config.eps_grid,
            seed=config.seed,
            verbose=verbose,
            meta={"dataset": config.dataset, "study": config.to_dict(), "models": paths, "scale": config.scale},
            other_defenses=others,
            robust_classifiers=robust,
            defense_limits=column_limits(config, defense_gan.name),
            stacked=STACKED_COLUMNS,
            substitutes=substitutes,
        ),
    )
    page = page_path(out_dir, config.dataset)
    written["report"] = write_text(
        page, report(config, paths, stages, written, os.path.dirname(page), command, models_dir)
    )
    written["index"] = write_index(out_dir)
    return written


def column_limits(config: StudyConfig, defense_gan: str) -> dict[str, int] | None:
    """The columns the study scores on a subsample (the first so-many images of its sample), by
    their names: Defense-GAN's (`defense_gan_n`) and the authors' purifier's (`paper_purifier_n`)."""
    limits = {defense_gan: config.defense_gan_n, PAPER_COLUMN: config.paper_purifier_n}
    return {name: limit for name, limit in limits.items() if limit is not None} or None


def rows_time_lines(rows: list[dict]) -> list[str]:
    """What the table rows cost to compute from scratch, where this run read cached batches that
    an earlier run made (an interrupted run's, or a rerun's): their recorded times included."""
    recorded = sum(row.get("recorded_seconds") or 0.0 for row in rows)
    untimed = sum(row.get("untimed_batches") or 0 for row in rows)
    if not (recorded or untimed):
        return []
    seconds = sum(row.get("seconds") or 0.0 for row in rows)
    note = cache_note(recorded, untimed)
    return [f"The table rows, each as computed from scratch: {seconds:,.0f} s ({note}; no figures)."]


def report(
    config: StudyConfig,
    paths: dict[str, str],
    stages: Stages,
    written: dict[str, str],
    out_dir: str,
    command: str,
    models_dir: str | None = None,
) -> str:
    """The study's Markdown page: how it was made, the models, the tables and the figures.

    Model files are named inside the model store (`<models>/kind-hash/model.keras`, `<models>`
    being `models_dir`, the `--models` folder), not by a path from the page that only holds on
    the machine that ran it.
    """

    def model_file(path: str) -> str:
        if models_dir is None:
            return os.path.relpath(path, out_dir)
        return "<models>/" + os.path.relpath(os.path.abspath(path), os.path.abspath(models_dir)).replace(os.sep, "/")

    with open(written["md"], encoding="utf-8") as handle:
        tables = without_marker(handle.read())
    if config.scale:  # stated beside every table, not only once at the top
        tables = "\n".join(
            f"{line}\n\n> Scale: {config.scale}" if line.startswith("### ") else line for line in tables.splitlines()
        )
    lines = [
        marker(f"`lqvae reproduce {config.dataset}`"),
        f"# Measured results: {config.dataset}",
        "",
        f"Written by `lqvae reproduce` on {datetime.date.today().isoformat()} at commit {code_version()}; every",
        "number below comes from it.",
        "Each row attacks the same seeded sample; columns are the defenses compared on it: the classifier alone",
        "(`no defense`), behind LQ-VAE (`lq-vae`), behind Defense-GAN (`defense-gan`), and replaced by its Madry",
        "PGD (`madry`) or FGSM (`adv-tr`) adversarially trained version, and the Madry classifier behind",
        "LQ-VAE (`madry+lq-vae`); where the study has it, the authors' own purifier (the `paper` preset at",
        "its full budget, `lq-vae (paper)`) stands beside ours. White-box and end-to-end rows attack the",
        "adversarially trained classifiers themselves (white-box `madry+lq-vae` feeds the adversarials of the",
        "Madry classifier through the filter; end-to-end attacks filter and Madry classifier together). A",
        "`paper` line follows a row wherever the paper",
        "reports the same setting. Carlini-Wagner L2 comes in two settings: `cw`, Defense-GAN's (one",
        "binary-search step, 100 iterations, lr 10, c = 100: large changes, often a new image), and `cw_l2`,",
        "the standard minimal-perturbation attack (a binary search over c); each row's mean L2 and L-inf",
        "distortion and the LQ-VAE code bits it flips stand beside it.",
        "",
        *([f"**Scale:** {config.scale}", ""] if config.scale else []),
        "```bash",
        command or f"lqvae reproduce {config.dataset}",
        "```",
        "",
        "## Settings",
        "",
        "```json",
        config.to_json(),
        "```",
        "",
        "## Models",
        "",
        *(["`<models>` is the model store, the `--models` folder of the command above.", ""] if models_dir else []),
        "| model | file | reused | training seconds (date) | test accuracy (first 2000 test images) |",
        "|---|---|---|---|---|",
    ]
    from lqvae_tf.classifiers.train import ONE_CLASS_SHARE

    total_seconds = 0.0
    for name, path in paths.items():
        summary, record = _summary_of(path), ModelStore.training_record(path)
        total_seconds += float(record.get("seconds", 0.0))
        accuracy = summary.get("test_accuracy")
        cells = [
            name,
            f"`{model_file(path)}`",
            "yes" if stages.reused.get(name) else "no",
            f"{record['seconds']} ({record['date']})" if record else "",
            f"{100 * accuracy:.2f}" if isinstance(accuracy, float) else "",
        ]
        agreement = summary.get("test_agreement")  # a Papernot substitute's, with the classifier it imitates
        if isinstance(agreement, float):
            cells[-1] += f" (agrees with its target on {100 * agreement:.1f}%)"
        share = summary.get("test_top_class_share")
        if isinstance(share, float) and share >= ONE_CLASS_SHARE:
            cells[-1] += f" (one class for {100 * share:.1f}% of them: collapsed, its columns measure no robustness)"
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Models phase: {total_seconds / 3600:.2f} hours of training in all (the seconds above, each model's",
        "earlier interrupted runs included; a reused model's were spent when it was trained).",
    ]
    lines += purifier_training(paths)
    lines += training_curves({name: _summary_of(path) for name, path in paths.items()})
    rows: list[dict] = []
    if "json" in written:
        with open(written["json"], encoding="utf-8") as handle:
            rows = json.load(handle)["rows"]
    curve = None
    if "accuracy_vs_eps_data" in written:
        with open(written["accuracy_vs_eps_data"], encoding="utf-8") as handle:
            curve = json.load(handle)
    lines += ["", *floor_lines(config.floors, rows, curve)]
    lines += [
        f"Tables and figures, this run (rows a stopped run finished are read from its cache): "
        f"{stages.seconds.get('tables and figures', '')} s.",
        *rows_time_lines(rows),
        "",
        "## Tables",
        "",
    ]
    lines.append(tables)
    if rows:
        lines += fgsm_training_lines(rows)
        lines += gap_lines(config.dataset, rows)
    figures = [(kind, path) for kind, path in sorted(written.items()) if path.endswith(".png")]
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{kind}]({os.path.relpath(path, out_dir)})" for kind, path in figures]
        lines.append("")
    lines += [
        "Full tables with every interval: "
        + ", ".join(f"`{os.path.relpath(written[k], out_dir)}`" for k in ("md", "csv", "json") if k in written),
        "",
    ]
    return "\n".join(lines)
