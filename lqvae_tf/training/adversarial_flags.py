"""A training run's adversarial-retraining flags, to `LQVAEConfig.adversarial`.

Shared by the front ends that train a purifier: `lqvae train` and the pipeline's runners.
"""

from __future__ import annotations

import argparse
import dataclasses

from lqvae_tf.config import ADVERSARIAL_MODES, AdversarialConfig

NONE = "none"  # --adversarial none: clean training, whatever the preset retrains with

# flag -> AdversarialConfig field
FLAGS = {
    "adv_eps": "eps",
    "adv_steps": "steps",
    "adv_step_size": "step_size",
    "adv_fraction": "fraction",
    "adv_code_weight": "code_weight",
    "adv_classifier": "classifier",
    "adv_clean_epochs": "clean_epochs",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the adversarial-retraining flags to a training command's parser."""
    group = parser.add_argument_group(
        "adversarial retraining",
        "train on PGD perturbations of part of each batch, reconstructing the clean images "
        "(see lqvae_tf.AdversarialConfig)",
    )
    group.add_argument(
        "--adversarial",
        metavar="MODE",
        help=f"what PGD maximises: one of {', '.join(ADVERSARIAL_MODES)} (classifier: the paper's "
        "Madry PGD against --adv-classifier; end_to_end: PGD against --adv-classifier behind the filter, "
        "through its BPDA gradient; the others need no classifier), or none: clean training "
        "only, the paper's (the default presets of 28x28 datasets retrain with mode reconstruction)",
    )
    group.add_argument("--adv-eps", type=float, help="L-inf radius, a fraction of the pixel range (default 0.1)")
    group.add_argument("--adv-steps", type=int, help="PGD steps (default 5)")
    group.add_argument("--adv-step-size", type=float, help="PGD step (default 2.5 eps / steps)")
    group.add_argument("--adv-fraction", type=float, help="fraction of each batch perturbed (default 0.5)")
    group.add_argument("--adv-code-weight", type=float, help="weight of the encoder's code-keeping loss (default 1)")
    group.add_argument("--adv-classifier", help="the .keras classifier the modes classifier and end_to_end attack")
    group.add_argument(
        "--adv-clean-epochs",
        type=int,
        help="epochs of plain training before the perturbed batches start, within --epochs (default 0)",
    )


def from_args(args: argparse.Namespace, base: AdversarialConfig | None) -> AdversarialConfig | None:
    """`base` with the adversarial flags applied (None when neither sets anything, or `--adversarial none`).

    Raises:
        ValueError: a flag without --adversarial MODE (and no `base`), or an impossible value (named).
    """
    changes = {field: getattr(args, flag) for flag, field in FLAGS.items() if getattr(args, flag) is not None}
    if args.adversarial == NONE:
        if changes:
            flags = ", ".join("--" + flag.replace("_", "-") for flag, field in FLAGS.items() if field in changes)
            raise ValueError(f"{flags} contradict --adversarial {NONE}")
        return None
    if args.adversarial is None:
        if changes and base is None:
            flags = ", ".join("--" + flag.replace("_", "-") for flag, field in FLAGS.items() if field in changes)
            raise ValueError(f"{flags} need --adversarial MODE")
        if not changes:
            return base
    else:
        changes["mode"] = args.adversarial
    return dataclasses.replace(base or AdversarialConfig(mode=changes.get("mode", "reconstruction")), **changes)
