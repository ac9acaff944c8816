"""The robustness gate: a TFX component that blesses a purifier only if it measurably defends.

TFX's Evaluator gates on clean metrics; a defense must also be judged under attack. The gate
runs an attack suite through purifier + classifier on the eval split with the library's
`Evaluation` harness, writes the accuracies to its `evaluation` artifact (`robustness.json`)
and, as custom properties, into the metadata store on both outputs, and sets the `blessing`
artifact's `blessed` property to 1 only if every threshold is met. The Pusher sits under
`tfx.dsl.Cond` on that property, as behind TFX's Evaluator.

The suite is JSON (a component parameter must be a primitive), a list of checks:

    [{"attack": "fgsm", "params": {"eps": 0.1}, "min_accuracy": 50.0},
     {"attack": "bpda-pgd", "params": {"eps": 0.1, "nb_iter": 10}, "min_accuracy": 30.0}]

The classifier attacked is the Trainer's (classifier A by default), or the user's own
`.keras` file (`classifier_path`), which must take the data's image shape; `classifier_min_value`
and `classifier_max_value` give the pixel range it takes (default [0, 1]). The gate feeds every
classifier [0, 1] images, through a rescaling layer where its range differs; a classifier whose
input shape, first-layer rescaling or output width does not fit the data is refused, naming
the file.

`attack` is an `lqvae eval` spec (`NAME`: white-box on the classifier; `bpda-NAME`,
`identity-NAME`, `naive-NAME`: end to end on purifier + classifier), `params` override the
attack's defaults, and `min_accuracy` is the lowest acceptable accuracy, in percent, of the
classifier behind the purifier on the adversarial images.
"""

# No `from __future__ import annotations`: TFX reads the component signatures' annotations as types.
import hashlib
import json
import os

import keras
import numpy as np
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.utils import path_utils

from lqvae_tf.attacks import make_attack
from lqvae_tf.attacks.base import logits_of
from lqvae_tf.data.registry import CLASSIFIER_VALUE_RANGE
from lqvae_tf.defenses import LQVAEDefense
from lqvae_tf.evaluation import Evaluation, Row, write_reports
from lqvae_tf.evaluation.harness import clean_accuracies
from lqvae_tf.evaluation.suite import AttackSpec
from lqvae_tf.pipeline_components.progress import progress
from lqvae_tf.pipeline_components.records import read_arrays

# What the Trainer writes into its serving model folder (pipelines/models/trainer_module.py).
PURIFIER_FILE = "purifier.keras"
CLASSIFIER_FILE = "classifier.keras"
UNADAPTED_CLASSIFIER_FILE = "classifier_unadapted.keras"  # before adapting (classifier_adapt_epochs)
CLASSIFIER_NAME = "gate"
REPORT_FILE = "robustness.json"
DEFENSE_NAME = "lq-vae"
BLESSED, NOT_BLESSED = 1, 0


def parse_suite(suite_json: str) -> list[dict]:
    """The checks of an attack suite, validated (attack names and parameters included).

    Raises:
        ValueError: not a non-empty list of checks, a check without `attack` or `min_accuracy`,
            an unknown setting, attack or parameter.
    """
    checks = json.loads(suite_json)
    if not isinstance(checks, list) or not checks:
        raise ValueError(f"the attack suite must be a non-empty JSON list of checks, got {suite_json!r}")
    for check in checks:
        if not isinstance(check, dict) or not {"attack", "min_accuracy"} <= set(check):
            raise ValueError(f"each check needs 'attack' and 'min_accuracy', got {check!r}")
        spec = AttackSpec.parse(check["attack"])
        if spec.setting == "black-box":
            raise ValueError(f"the gate runs white-box and end-to-end attacks, not {check['attack']!r}")
        make_attack(spec.attack, **check.get("params", {}))
    return checks


def file_digest(path: str) -> str:
    """The SHA-256 of a file: a gate parameter, so that a changed classifier file re-runs the gate."""
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _first_rescaling(classifier: keras.Model):
    """The classifier's first layer if it is a `Rescaling` (how Keras models often scale pixels)."""
    layers = [layer for layer in classifier.layers if not isinstance(layer, keras.layers.InputLayer)]
    return layers[0] if layers and isinstance(layers[0], keras.layers.Rescaling) else None


def load_user_classifier(path: str, image_shape, value_range=CLASSIFIER_VALUE_RANGE) -> keras.Model:
    """A user's Keras classifier, checked against the data and made to take [0, 1] images.

    Args:
        path: the `.keras` file.
        image_shape: the data's (height, width, channels).
        value_range: (low, high) of the pixels the classifier takes.

    Returns:
        The classifier itself when it takes [0, 1], else a model giving its logits on [0, 1]
        images (a `Rescaling` to `value_range` in front).

    Raises:
        ValueError: the file is not a Keras model, its input shape is not the data's, or its first
            layer rescales pixels from a range other than `value_range` (e.g. `Rescaling(1/255)`,
            made for [0, 255] pixels, while `value_range` is [0, 1]); the message names the file.
    """
    if not os.path.isfile(path):
        raise ValueError(f"classifier {path} does not exist")
    try:
        classifier = keras.models.load_model(path)
    except Exception as error:  # Keras raises many types for a file that is no model
        raise ValueError(f"classifier {path} is not a loadable Keras model ({type(error).__name__}: {error})") from None
    shape = tuple(classifier.inputs[0].shape[1:]) if getattr(classifier, "inputs", None) else None
    image_shape = tuple(int(v) for v in image_shape)
    if shape is None or len(shape) != 3 or any(got not in (None, want) for got, want in zip(shape, image_shape)):
        raise ValueError(f"classifier {path} takes inputs of shape {shape}; the data's images are {image_shape}")
    low, high = (float(v) for v in value_range)
    rescaling = _first_rescaling(classifier)
    if rescaling is not None:
        seen = [
            float(np.mean(value)) * float(np.mean(rescaling.scale)) + float(np.mean(rescaling.offset))
            for value in (low, high)
        ]
        if seen[1] - seen[0] < 0.1:  # [0, 1] pixels through Rescaling(1/255): the network sees [0, 0.004]
            raise ValueError(
                f"classifier {path} starts with Rescaling(scale={float(np.mean(rescaling.scale)):.4g}): its network "
                f"then sees [{seen[0]:.3g}, {seen[1]:.3g}] from pixels in [{low:g}, {high:g}]; it was made for another "
                "pixel range: give that range (e.g. --classifier-range 0,255)"
            )
    if (low, high) == CLASSIFIER_VALUE_RANGE:
        return classifier
    images = keras.Input(shape=image_shape, name="images")
    pixels = keras.layers.Rescaling(high - low, offset=low, name="to_classifier_range")(images)
    return keras.Model(images, logits_of(classifier)(pixels), name=f"{classifier.name}_on_unit_range")


def check_classes(classifier: keras.Model, labels: np.ndarray, path: str) -> None:
    """Refuses a classifier with fewer outputs than the data has classes."""
    outputs = classifier.outputs[0].shape[-1] if getattr(classifier, "outputs", None) else None
    if outputs is not None and int(labels.max()) >= outputs:
        raise ValueError(f"classifier {path} gives {outputs} outputs; the data has labels up to {int(labels.max())}")


def property_name(check: dict) -> str:
    """The MLMD custom property under which a check's defended accuracy is recorded."""
    return f"accuracy_{check['attack']}"


def measure(
    purifier: keras.Model,
    classifier: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    checks: list[dict],
    min_clean_accuracy: float,
    batch_size: int,
) -> tuple[dict, list[Row]]:
    """Runs the suite; returns the report (every accuracy, each check's verdict, `blessed`) and its table rows."""
    defense = LQVAEDefense(purifier, name=DEFENSE_NAME, value_range=CLASSIFIER_VALUE_RANGE)
    evaluation = Evaluation(
        images, labels, {CLASSIFIER_NAME: classifier}, [defense], batch_size=batch_size, verbose=False
    )
    clean = evaluation.accuracy(classifier, images, defense)
    progress.info("clean: %.1f%% behind the purifier (threshold %.1f%%)", clean.percent, min_clean_accuracy)
    results = [
        {
            "check": "clean",
            "attack": "none",
            "min_accuracy": min_clean_accuracy,
            "accuracy": clean.to_dict(),
            "passed": clean.percent >= min_clean_accuracy,
        }
    ]
    rows = []
    for check in checks:
        spec = AttackSpec.parse(check["attack"])
        attack = make_attack(spec.attack, **check.get("params", {}))
        if spec.setting == "white-box":
            row = evaluation.white_box(attack, CLASSIFIER_NAME)
        else:
            row = evaluation.end_to_end(attack, CLASSIFIER_NAME, gradient=spec.how)
        rows.append(row)
        defended = row.defended[DEFENSE_NAME]
        progress.info(
            "%s: %.1f%% behind the purifier (threshold %.1f%%)",
            check["attack"],
            defended.percent,
            check["min_accuracy"],
        )
        results.append(
            {
                "check": property_name(check),
                "attack": check["attack"],
                "min_accuracy": float(check["min_accuracy"]),
                "accuracy": defended.to_dict(),
                "passed": defended.percent >= float(check["min_accuracy"]),
                "row": row.to_dict(),
            }
        )
    report = {"n": int(len(images)), "blessed": all(r["passed"] for r in results), "checks": results}
    return report, rows


@tfx.dsl.components.component
def RobustnessGate(
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    evaluation: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.ModelEvaluation],
    blessing: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.ModelBlessing],
    attack_suite: tfx.dsl.components.Parameter[str],
    min_clean_accuracy: tfx.dsl.components.Parameter[float] = 0.0,
    num_examples: tfx.dsl.components.Parameter[int] = 1000,
    split: tfx.dsl.components.Parameter[str] = "eval",
    batch_size: tfx.dsl.components.Parameter[int] = 250,
    classifier_path: tfx.dsl.components.Parameter[str] = "",
    classifier_min_value: tfx.dsl.components.Parameter[float] = 0.0,
    classifier_max_value: tfx.dsl.components.Parameter[float] = 1.0,
    classifier_digest: tfx.dsl.components.Parameter[str] = "",
) -> None:
    """Attacks purifier + classifier on `split` and blesses the model only if every threshold is met.

    Args:
        model: the Trainer's model (`Format-Serving/` holds `purifier.keras` and `classifier.keras`).
        examples: the examples; the first `num_examples` of `split` are attacked.
        evaluation: output; `robustness.json` holds every accuracy with its interval and each
            check's verdict, `results.md` (and `.csv`, `.json`) the harness's tables.
        blessing: output; custom property `blessed` is 1 or 0, and a `BLESSED` or `NOT_BLESSED` file.
        attack_suite: the checks, as JSON (see the module docstring).
        min_clean_accuracy: the lowest acceptable accuracy, in percent, on clean purified images.
        num_examples: how many eval images the attacks run on.
        split: the split of `examples` to attack.
        batch_size: images per attack call.
        classifier_path: the user's own `.keras` classifier to attack ("" attacks the Trainer's).
        classifier_min_value / classifier_max_value: the pixel range the user's classifier takes.
        classifier_digest: the file's SHA-256 (`file_digest`), so a changed file is not served
            from the cache.
    """
    checks = parse_suite(attack_suite)
    serving_dir = path_utils.serving_model_dir(model.uri)
    purifier = keras.models.load_model(os.path.join(serving_dir, PURIFIER_FILE))
    split_uri = artifact_utils.get_split_uri([examples], split)
    images, labels = read_arrays([os.path.join(split_uri, "*")], purifier.config.image_shape, limit=num_examples)
    images = images.astype(np.float32) / 255.0
    if classifier_path:
        value_range = (classifier_min_value, classifier_max_value)
        classifier = load_user_classifier(classifier_path, purifier.config.image_shape, value_range)
        check_classes(classifier, labels, classifier_path)
    else:
        classifier = keras.models.load_model(os.path.join(serving_dir, CLASSIFIER_FILE))

    report, rows = measure(purifier, classifier, images, labels, checks, min_clean_accuracy, batch_size)
    report["classifier"] = classifier_path or f"the Trainer's {CLASSIFIER_FILE}"
    defense = LQVAEDefense(purifier, name=DEFENSE_NAME, value_range=CLASSIFIER_VALUE_RANGE)
    report["clean_alone"] = clean_accuracies(classifier, defense, images, labels, batch_size)["clean_alone"]
    unadapted = os.path.join(serving_dir, UNADAPTED_CLASSIFIER_FILE)
    if not classifier_path and os.path.isfile(unadapted):
        # The Trainer adapted its classifier to the filter: the filter alone is reported too.
        unadapted_classifier = keras.models.load_model(unadapted)
        report["unadapted"] = clean_accuracies(unadapted_classifier, defense, images, labels, batch_size)
        progress.info(
            "unadapted classifier: clean %.1f%% behind the purifier (%.1f%% alone)",
            report["unadapted"]["clean"]["accuracy"],
            report["unadapted"]["clean_alone"]["accuracy"],
        )
    os.makedirs(evaluation.uri, exist_ok=True)
    with open(os.path.join(evaluation.uri, REPORT_FILE), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    # The evaluation harness's own tables too (results.md / .csv / .json), as `lqvae eval` writes them.
    write_reports(rows, evaluation.uri, meta={"split": split, "n": report["n"], "model": model.uri})

    verdict = BLESSED if report["blessed"] else NOT_BLESSED
    for artifact in (evaluation, blessing):
        for result in report["checks"]:
            artifact.set_float_custom_property(result["check"], result["accuracy"]["accuracy"])
        artifact.set_int_custom_property("num_examples", report["n"])
        artifact.set_int_custom_property("blessed", verdict)
    blessing.set_string_custom_property("current_model", model.uri)
    blessing.set_int_custom_property("current_model_id", model.id)
    os.makedirs(blessing.uri, exist_ok=True)
    with open(os.path.join(blessing.uri, "BLESSED" if verdict else "NOT_BLESSED"), "w", encoding="utf-8"):
        pass


def verdict_markdown(report: dict) -> str:
    """A `robustness.json` report as a short Markdown table: each check, its threshold, the accuracy, the verdict."""
    lines = [
        f"Robustness gate on {report['n']} eval images: **{'blessed' if report['blessed'] else 'refused'}**",
        "",
        "| check | attack | threshold | accuracy [95% CI] | verdict |",
        "|---|---|---|---|---|",
    ]
    for check in report["checks"]:
        accuracy = check["accuracy"]
        low, high = accuracy["ci95"]
        lines.append(
            f"| {check['check']} | {check['attack']} | {check['min_accuracy']:.1f}% "
            f"| {accuracy['accuracy']:.1f}% [{low:.1f}, {high:.1f}] | {'pass' if check['passed'] else 'FAIL'} |"
        )
    if "unadapted" in report:  # the Trainer adapted its classifier: the filter alone too
        unadapted = report["unadapted"]
        lines += [
            "",
            f"Adapted classifier: {report['clean_alone']['accuracy']:.1f}% clean alone. Before adapting: "
            f"{unadapted['clean']['accuracy']:.1f}% clean behind the purifier, "
            f"{unadapted['clean_alone']['accuracy']:.1f}% alone.",
        ]
    return "\n".join(lines) + "\n"
