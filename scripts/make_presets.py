"""Makes the shipped purifiers behind `LQVAE.from_preset(name)`: filters for classifiers they never saw.

A preset (`fashion_mnist`, `mnist`) is made in two stages, each kept in `lqvae reproduce`'s model
store (`--models`; resumable: a model already there is reused, an interrupted purifier resumes
from its last finished epoch):

1. the base: the classifier-free recipe of `preset(name)` (the study's settings: the full
   training split, seed 0), or with `--base git:REV` the preset's weights as committed at REV
   (that commit and the metrics then shipped are recorded), or a `.keras` purifier;
2. the fine-tune: the base guided by several classifiers at once (the study's A, B and C,
   `GUIDES`: the mean of their guidance losses) and retrained against PGD through all of them
   behind the filter (the mean of their cross-entropies), so that it keeps what any classifier
   needs rather than what one does.

Then it measures the filter in front of A, B, C and two classifiers no purifier is trained with
(`HELD_OUT`: R, a small residual network with batch norm, and K, the Keras documentation's simple
MNIST convnet): clean accuracy alone and behind it on the first
`--test-images` test images, and the adaptive accuracy at eps 0.1 (per image the worst of PGD-40
with 2 restarts through BPDA, the soft path + EOT and the identity; Square beside it) on the
first `--adaptive-images`, with `lqvae_tf.evaluation.frontier.measure_robustness`. Into
`lqvae_tf/presets/<name>/` go the filter's weights only (`lqvae_tf.presets.WEIGHT_FILES`,
float32, no optimizer state), its config, `metrics.json` and `README.md` (generated from it).

Usage (MNIST's IDX folder in $LQVAE_MNIST_DIR, as the Makefile sets it):
    python scripts/make_presets.py --models runs/models mnist fashion_mnist
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import subprocess
import sys
import time

import keras
import numpy as np

from lqvae_tf import LQVAE
from lqvae_tf.atomic import write_text
from lqvae_tf.classifiers import train_classifier
from lqvae_tf.config import DEFAULT_GUIDANCE, GUIDED_ADVERSARIAL, LQVAEConfig, preset
from lqvae_tf.data import first_examples
from lqvae_tf.data.registry import CLASSIFIER_VALUE_RANGE
from lqvae_tf.evaluation.frontier import FrontierAttacks, measure_robustness
from lqvae_tf.generated import marker
from lqvae_tf.models.inputs import rescale
from lqvae_tf.presets import CONFIG_FILE, METRICS_FILE, PRESET_ROOT, WEIGHT_FILES, preset_dir, save_filter_weights
from lqvae_tf.stats import accuracy_of
from lqvae_tf.study import ModelStore, StudyConfig, classifier_model, study_config, train_models
from lqvae_tf.training import train_purifier

PRESET_DATASETS = {"fashion_mnist": "fashion_mnist", "mnist": "mnist"}  # preset -> the study it is made with
GUIDES = ("A", "B", "C")  # the classifiers the fine-tune is guided by and attacks through
# Measured only: no purifier is trained with them (`lqvae_tf.classifiers.HELD_OUT_CLASSIFIERS`).
HELD_OUT = ("R", "K")
HELD_OUT_NOTES = {"R": "a small residual network with batch norm", "K": "the Keras documentation's simple MNIST convnet"}
# The classifiers' training: MNIST's study's (3 epochs of the full split), for both datasets.
CLASSIFIER_SETTINGS = {"epochs": 3, "limit": None, "batch_size": 128}
FINE_TUNE_EPOCHS = 1
ADAPTIVE_ON = ("A", *HELD_OUT)  # the classifiers the adaptive attack is run against
ADAPTIVE_EPS = 0.1
MAX_FILE_BYTES = 16 * 1024 * 1024  # the most any shipped file may weigh


def base_study(name: str, quick: bool = False) -> StudyConfig:
    """The study of preset `name`'s dataset with the classifier-free `name` as its purifier and
    the preset's classifier settings (the quick study's own with `quick`)."""
    study = study_config(PRESET_DATASETS[name], quick=quick)
    purifier = {key: value for key, value in study.purifier.items() if key != "classifier"}
    purifier["preset"] = name
    classifier = study.classifier if quick else dict(CLASSIFIER_SETTINGS)
    return study.replace(purifier=purifier, classifier=classifier, classifiers=GUIDES)


def fine_tune_config(
    name: str,
    epochs: int,
    guidance_weight: float = DEFAULT_GUIDANCE.weight,
    adversarial_fraction: float = GUIDED_ADVERSARIAL.fraction,
) -> LQVAEConfig:
    """The fine-tune's config: `preset(name)`'s networks with the guided recipe's guidance (at
    `guidance_weight`) and adversarial retraining (end to end through the classifiers, on
    `adversarial_fraction` of each batch) from the first step."""
    ranged = {"classifier_range": CLASSIFIER_VALUE_RANGE}
    return preset(name).replace(
        guidance=dataclasses.replace(DEFAULT_GUIDANCE, weight=guidance_weight, **ranged),
        adversarial=dataclasses.replace(GUIDED_ADVERSARIAL, clean_epochs=0, fraction=adversarial_fraction, **ranged),
        epochs=epochs,
    )


def classifiers(study: StudyConfig, store: ModelStore) -> dict[str, str]:
    """Classifiers `GUIDES` and `HELD_OUT` of the study's dataset, trained into `store` if missing."""
    paths = train_models(study, store, only=tuple(classifier_model(guide) for guide in GUIDES))
    found = {guide: paths[classifier_model(guide)] for guide in GUIDES}
    settings = {"dataset": study.dataset, "seed": study.seed, **study.classifier}
    for name in HELD_OUT:
        found[name], _ = store.get_or_train(
            f"classifier_{name}",
            settings,
            lambda path, name=name: train_classifier(
                name, study.dataset, path, seed=study.seed, verbose=2, test_limit=2000, **study.classifier
            ),
        )
    return found


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _last_commit(folder: str) -> str | None:
    """The commit that last changed the weights in `folder` (None outside a git checkout)."""
    try:
        output = subprocess.run(
            ["git", "log", "-1", "--format=%H", "--", folder], capture_output=True, text=True, check=True, cwd=folder
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return output.stdout.strip() or None


GIT_BASE = "git:"  # --base git:REV: the preset's weights as committed at REV


def _git_show(revision: str, path: str) -> bytes:
    """A file's bytes at a commit of this checkout (`git show REV:PATH`)."""
    try:
        return subprocess.run(
            ["git", "show", f"{revision}:{path}"], capture_output=True, check=True, cwd=os.path.dirname(__file__)
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise FileNotFoundError(f"--base git:{revision}: cannot read {path} there ({error})") from None


def _committed_base(name: str, revision: str, scratch: str) -> tuple[str, dict]:
    """The preset's weights and config as committed at `revision`, as a `.keras` purifier in
    `scratch`; keyed by the weight files' bytes (a saved .keras differs byte for byte on each
    save), so the same commit always names the same base."""
    folder = os.path.relpath(preset_dir(name), os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.makedirs(scratch, exist_ok=True)
    digests = []
    for filename in WEIGHT_FILES.values():
        data = _git_show(revision, f"{folder}/{filename}")
        digests.append(hashlib.sha256(data).hexdigest())
        with open(os.path.join(scratch, f"{name}-{filename}"), "wb") as handle:
            handle.write(data)
    config = LQVAEConfig.from_json(_git_show(revision, f"{folder}/{CONFIG_FILE}").decode())
    metrics = json.loads(_git_show(revision, f"{folder}/{METRICS_FILE}").decode())
    model = LQVAE(config)
    for part, filename in WEIGHT_FILES.items():
        getattr(model, part).load_weights(os.path.join(scratch, f"{name}-{filename}"))
    model.decoder_soft.set_weights(model.decoder_hard.get_weights())
    path = os.path.join(scratch, f"{name}-{revision}-base.keras")
    model.save(path)
    keep = ("store", "training_seconds", "epochs", "train_limit", "command", "clean_accuracy")
    commit = subprocess.run(
        ["git", "rev-parse", revision], capture_output=True, text=True, check=True, cwd=os.path.dirname(__file__)
    ).stdout.strip()
    return path, {
        "source": "git",
        "commit": commit,
        "sha256": hashlib.sha256("".join(digests).encode()).hexdigest(),
        "guided": config.guidance is not None,  # a preset fine-tuned before, rather than the classifier-free one
        "metrics": {key: metrics[key] for key in keep if key in metrics},
    }


def base_model(name: str, base: str, study: StudyConfig, store: ModelStore, scratch: str) -> tuple[str, dict]:
    """The purifier the fine-tune starts from, and where it came from (for metrics.json)."""
    if base == "store":
        path = train_models(study, store, only=("purifier",))["purifier"]
        record = store.training_record(path)
        return path, {"source": "store", "store": os.path.basename(os.path.dirname(path)), **record}
    if base.startswith(GIT_BASE):
        return _committed_base(name, base[len(GIT_BASE) :], scratch)
    if not os.path.isfile(base):
        raise FileNotFoundError(f"--base {base!r} is neither 'store', 'git:REV' nor a .keras file")
    return base, {"source": "file", "path": os.path.abspath(base), "sha256": _sha256(base)}


def fine_tuned(name: str, args: argparse.Namespace, study: StudyConfig, store: ModelStore, guides: dict[str, str]):
    """The fine-tuned purifier's path (trained into `store` if missing), its config, and the base's
    record and path."""
    base_path, base_record = base_model(name, args.base, study, store, os.path.join(args.models, "scratch"))
    config = fine_tune_config(name, args.epochs, args.guidance_weight, args.adversarial_fraction)
    limit = study.purifier.get("limit")
    if args.quick:
        config = config.replace(**study.purifier.get("overrides", {}))
    base_key = base_record.get("store") or base_record["sha256"]
    key = {
        "base": base_key,
        "config": config.to_dict(),
        "limit": limit,
        "guides": {guide: study.classifier for guide in GUIDES},
    }

    def train(path: str) -> float:
        models = [keras.models.load_model(guides[guide]) for guide in GUIDES]
        run = config.replace(init_from=base_path)
        result = train_purifier(
            run,
            study.dataset,
            os.path.dirname(path),
            limit=limit,
            verbose=args.verbose,
            classifier=models,
            guide=models,
        )
        os.replace(result.model_path, path)
        return result.earlier_seconds

    path, _ = store.get_or_train("preset_purifier", key, train)
    return path, config, base_record, base_path


def measure(model: LQVAE, base: LQVAE, models: dict[str, keras.Model], dataset: str, args: argparse.Namespace) -> dict:
    """Clean accuracy alone, behind the base and behind the filter per classifier, the adaptive
    attack on `ADAPTIVE_ON`, and the reconstruction error, on the first test images."""
    images, labels = first_examples(dataset, "test", args.test_images)
    value_range = model.config.value_range
    inside = rescale(images, CLASSIFIER_VALUE_RANGE, value_range)

    def purified_by(purifier: LQVAE) -> np.ndarray:
        return rescale(purifier.purify(inside), value_range, CLASSIFIER_VALUE_RANGE)

    purified, by_base = purified_by(model), purified_by(base)
    untrained = LQVAE(model.config)  # the same config, its seeded random weights

    def accuracy(classifier: keras.Model, inputs: np.ndarray) -> dict:
        return accuracy_of(classifier.predict(inputs, batch_size=256, verbose=0), labels).to_dict()

    clean = {}
    for name, classifier in models.items():
        alone, behind = accuracy(classifier, images), accuracy(classifier, purified)
        clean[name] = {
            "alone": alone,
            "behind_base": accuracy(classifier, by_base),  # before the fine-tune: what it changed, per classifier
            "behind_filter": behind,
            "cost": round(alone["accuracy"] - behind["accuracy"], 2),
        }
    attacks = FrontierAttacks(eps=ADAPTIVE_EPS, n=args.adaptive_images)
    adaptive = {
        name: measure_robustness(model, models[name], images[: attacks.n], labels[: attacks.n], attacks)
        for name in ADAPTIVE_ON
    }
    return {
        "test_images": int(len(images)),
        "clean": clean,
        "adaptive": {
            "attacks": attacks.to_dict(),
            **{
                name: {key: measured[key] for key in ("adaptive", "square", "worst", "pgd", "square_beats_gradient")}
                for name, measured in adaptive.items()
            },
        },
        # Mean squared error per pixel, in [0, 1] pixels.
        "reconstruction_mse": {
            "trained": float(np.mean(np.square(purified - images))),
            "untrained": float(
                np.mean(np.square(rescale(untrained.purify(inside), value_range, CLASSIFIER_VALUE_RANGE) - images))
            ),
        },
    }


def _cell(accuracy: dict) -> str:
    low, high = accuracy["ci95"]
    return f"{accuracy['accuracy']} [{low}, {high}]"


def _base_line(base: dict) -> str:
    if base["source"] == "store":
        return f"the classifier-free recipe trained into the model store ({base['store']})"
    if base["source"] == "git" and base.get("guided"):
        return (
            f"the guided preset shipped before it (commit {str(base['commit'])[:10]}, "
            f"made by `{base['metrics'].get('command', 'make presets')}`)"
        )
    if base["source"] == "git":
        return (
            f"the classifier-free weights shipped before it (commit {str(base['commit'])[:10]}, "
            f"made by `{base['metrics'].get('command', 'make presets')}`)"
        )
    return f"the purifier `{base['path']}`"


def markdown(metrics: dict) -> str:
    """The README beside the weights: what was measured, how, and by which command (from metrics.json)."""
    tune, clean, adaptive = metrics["fine_tune"], metrics["clean"], metrics["adaptive"]
    attacks = adaptive["attacks"]
    rows = "\n".join(
        f"| {name}{' (held out)' if name in metrics['held_out'] else ''} | {_cell(c['alone'])} | "
        f"{_cell(c['behind_base'])} | {_cell(c['behind_filter'])} | {c['cost']} |"
        for name, c in clean.items()
    )
    robust = "\n".join(
        f"| {name} | {_cell(adaptive[name]['pgd']['bpda'])} | {_cell(adaptive[name]['pgd']['soft'])} | "
        f"{_cell(adaptive[name]['pgd']['identity'])} | **{_cell(adaptive[name]['adaptive'])}** | "
        f"{_cell(adaptive[name]['square'])}{' (beats the gradient attacks)' if adaptive[name]['square_beats_gradient'] else ''} |"
        for name in metrics["adaptive_on"]
    )
    files = "\n".join(f"| `{name}` | {size / 1e6:.1f} MB |" for name, size in metrics["files"].items())
    guides = ", ".join(metrics["guides"])
    # Written down since the weight became a flag (the presets before it used the guided recipe's 3.0).
    weight = f" (KL weight {tune['guidance_weight']:g})" if tune.get("guidance_weight") is not None else ""
    share = f" on {tune['adversarial_fraction']:g} of each batch" if tune.get("adversarial_fraction") is not None else ""
    held_out = " and ".join(f"{name} ({metrics['held_out_notes'][name]})" for name in metrics["held_out"])
    return f"""{marker("`make presets` (`scripts/make_presets.py`)")}
# Preset `{metrics["preset"]}`

The LQ-VAE filter behind `LQVAE.from_preset("{metrics["preset"]}")`, made on {metrics["date"]}: {_base_line(metrics["base"])},
fine-tuned for {tune["epochs"]} epoch(s) of the {metrics["dataset"]} training split guided by classifiers {guides} at
once{weight} and against PGD through all of them behind the filter{share} ({tune["seconds"] / 60:.0f} minutes on a shared 2-core
CPU); float32 weights of the encoder and Decoder1 only (no optimizer state). Classifiers: Defense-GAN's
{guides} and, held out (no purifier is trained with them), {held_out}; each
{metrics["classifier_settings"]["epochs"]} epochs on the full training split.

Clean accuracy on the first {metrics["test_images"]} test images (percent, 95% Wilson intervals; cost: alone minus
behind the filter, in points; behind the base: before the fine-tune, so what it changed for each classifier):

| classifier | alone | behind the base | behind the filter | cost |
|---|---|---|---|---|
{rows}

Adaptive L-inf attacks at eps {attacks["eps"]} on the first {attacks["n"]} test images: PGD-{attacks["steps"]} with
{attacks["restarts"]} restarts through BPDA, the soft path (EOT over {attacks["eot_samples"]} draws) and the identity;
**adaptive** is, per image, the worst of the three; Square is gradient-free ({attacks["square_queries"]} queries).

| classifier | BPDA | soft + EOT | identity | **adaptive** | Square |
|---|---|---|---|---|---|
{robust}

| file | size |
|---|---|
{files}

Made by `{metrics["command"]}` in {metrics["seconds"] / 60:.0f} minutes; `metrics.json` holds every number, the
fine-tune's config and the model store's keys.
"""


def make_preset(name: str, args: argparse.Namespace) -> dict:
    """Preset `name`'s two stages and measurements (see module docstring); writes its folder."""
    started = time.monotonic()
    study = base_study(name, quick=args.quick)
    store = ModelStore(args.models)
    paths = classifiers(study, store)
    path, config, base_record, base_path = fine_tuned(name, args, study, store, paths)
    model, base = keras.models.load_model(path), keras.models.load_model(base_path)
    models = {guide: keras.models.load_model(paths[guide]) for guide in (*GUIDES, *HELD_OUT)}
    metrics = {
        "preset": name,
        "dataset": study.dataset,
        "date": datetime.date.today().isoformat(),
        "base": base_record,
        "guides": list(GUIDES),
        "held_out": list(HELD_OUT),
        "held_out_notes": {name: HELD_OUT_NOTES[name] for name in HELD_OUT},
        "adaptive_on": list(ADAPTIVE_ON),
        "classifier_settings": study.classifier,
        "fine_tune": {
            "epochs": config.epochs,
            # None where the fine-tune has no such part (the --quick smoke run trains without PGD).
            "guidance_weight": config.guidance.weight if config.guidance else None,
            "adversarial_fraction": config.adversarial.fraction if config.adversarial else None,
            "seconds": store.training_record(path).get("seconds"),
            "store": os.path.basename(os.path.dirname(path)),
        },
        "store": {guide: os.path.basename(os.path.dirname(p)) for guide, p in paths.items()},
        **measure(model, base, models, study.dataset, args),
    }
    folder = os.path.join(args.out, name)
    files = save_filter_weights(model, folder)
    write_text(os.path.join(folder, CONFIG_FILE), config.to_json() + "\n")  # without the base's scratch path
    metrics["files"] = {os.path.basename(p): os.path.getsize(p) for p in files.values()}
    too_large = [f"{file} ({size / 1e6:.1f} MB)" for file, size in metrics["files"].items() if size > MAX_FILE_BYTES]
    if too_large:
        raise ValueError(f"preset {name}: files over {MAX_FILE_BYTES / 2**20:.0f} MiB: {', '.join(too_large)}")
    metrics["command"] = " ".join(["python scripts/make_presets.py", *args.argv])
    metrics["seconds"] = round(time.monotonic() - started)
    write_text(os.path.join(folder, METRICS_FILE), json.dumps(metrics, indent=2) + "\n")
    write_text(os.path.join(folder, "README.md"), markdown(metrics))
    return metrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("presets", nargs="+", choices=tuple(PRESET_DATASETS), help="presets to make")
    parser.add_argument("--models", required=True, help="the studies' model store (lqvae reproduce --models)")
    parser.add_argument(
        "--base",
        default="store",
        help="what the fine-tune starts from: 'store' (the classifier-free recipe, trained into the store if "
        "missing), 'git:REV' (the preset's weights as committed at REV) or a .keras purifier",
    )
    parser.add_argument("--epochs", type=int, default=FINE_TUNE_EPOCHS, help="the fine-tune's epochs")
    parser.add_argument(
        "--guidance-weight",
        type=float,
        default=DEFAULT_GUIDANCE.weight,
        help="the weight of the guides' KL term in the fine-tune (the guided recipe's by default)",
    )
    parser.add_argument(
        "--adversarial-fraction",
        type=float,
        default=GUIDED_ADVERSARIAL.fraction,
        help="the share of each fine-tune batch perturbed by PGD (the guided recipe's by default)",
    )
    parser.add_argument("--test-images", type=int, default=2000, help="test images the clean accuracy is measured on")
    parser.add_argument("--adaptive-images", type=int, default=500, help="test images the adaptive attack runs on")
    parser.add_argument("--quick", action="store_true", help="the --quick studies' tiny models (a smoke check)")
    parser.add_argument("--out", default=PRESET_ROOT, help="where the preset folders go (the package's)")
    parser.add_argument("--verbose", type=int, default=2, help="Keras verbosity of the fine-tune (0, 1 or 2)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    for name in args.presets:
        metrics = make_preset(name, args)
        costs = ", ".join(f"{guide} {c['cost']}" for guide, c in metrics["clean"].items())
        adaptive = ", ".join(f"{guide} {metrics['adaptive'][guide]['adaptive']['accuracy']}%" for guide in ADAPTIVE_ON)
        print(f"{name}: clean cost (points) {costs}; adaptive at eps {ADAPTIVE_EPS}: {adaptive}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
