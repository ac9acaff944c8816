"""`lqvae eval`: the paper's tables for a purifier and classifiers, as Markdown, CSV and JSON.

Registered by `lqvae_tf.cli.main` with `add_parser(subparsers)` and dispatched to `run(args)`.
"""

from __future__ import annotations

import argparse
import json
import os

from lqvae_tf.data.registry import DATASET_NAMES, DEFAULT_DATASET
from lqvae_tf.generated import without_marker


def _attack_param(text: str) -> tuple[str, str, object]:
    """Parses `--attack-param cw.max_iterations=50` into ("cw", "max_iterations", 50)."""
    key, sep, raw = text.partition("=")
    attack, dot, name = key.partition(".")
    if not sep or not dot or not attack or not name:
        raise argparse.ArgumentTypeError(f"--attack-param takes attack.name=value, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return attack, name, value


def add_parser(subparsers) -> None:
    """Adds `eval` to the `lqvae` command's subparsers."""
    parser = subparsers.add_parser(
        "eval",
        help="robustness tables: attacks x classifiers x defenses",
        description="Evaluate a purifier against attacks on classifiers (white-box on the classifier, "
        "black-box transfer X/Y, end-to-end BPDA); writes results.md/.csv/.json and figures. "
        "Adversarials are cached in OUT/cache, so an interrupted run resumes.",
    )
    parser.add_argument("--dataset", default=DEFAULT_DATASET, choices=DATASET_NAMES)
    parser.add_argument("--purifier", required=True, help="the purifier's .keras file")
    parser.add_argument(
        "--classifiers",
        default="A,B,C",
        help="names (files DIR/classifier_<name>.keras) or .keras paths, comma-separated",
    )
    parser.add_argument("--classifier-dir", default="runs/classifiers")
    parser.add_argument(
        "--attacks",
        default="fgsm,deepfool,cw,bpda-pgd",
        help="attack specs: NAME (white-box), bpda-/identity-/naive-NAME (end to end), "
        "transfer-/papernot-NAME (black box), each with optional [key=value,...]: the attack's parameters, "
        "restarts=R, eot=S, skip=DEFENSE, on=A+B (these classifiers only), n=N (the first N images only)",
    )
    parser.add_argument(
        "--attack-param",
        action="append",
        type=_attack_param,
        default=[],
        metavar="ATTACK.NAME=VALUE",
        help="override an attack parameter",
    )
    parser.add_argument("--n", type=int, default=1000, help="evaluation images (seeded sample of the test split)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eot-samples", type=int, default=1)
    parser.add_argument(
        "--eps-grid",
        default="0.05,0.1,0.2,0.3",
        help="FGSM eps values for the accuracy-vs-eps figure ('' for none)",
    )
    parser.add_argument("--data-dir")
    parser.add_argument("--out", required=True)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _classifier_paths(text: str, folder: str) -> dict[str, str]:
    from lqvae_tf.classifiers.train import classifier_filename

    paths = {}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        if item.endswith(".keras"):
            name, path = os.path.splitext(os.path.basename(item))[0].removeprefix("classifier_"), item
        else:
            name, path = item.upper(), os.path.join(folder, classifier_filename(item.upper()))
        if name in paths:  # the tables are keyed by name: a second one would silently replace the first
            raise ValueError(
                f"two classifiers are named {name!r} ({paths[name]} and {path}): the tables name each by its "
                "file name, so give the files different names"
            )
        paths[name] = path
    missing = [p for p in paths.values() if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f"classifier files not found: {missing} (train them with `lqvae classifiers train --out {folder}`)"
        )
    return paths


def run(args: argparse.Namespace) -> int:
    """Runs `lqvae eval`."""
    import keras

    from lqvae_tf.attacks.substitute import PAPERNOT_SEEDS
    from lqvae_tf.evaluation.suite import load_test_arrays, run_suite, sample_indices, split_specs

    if not os.path.isfile(args.purifier):
        raise FileNotFoundError(f"purifier file {args.purifier} does not exist")
    paths = _classifier_paths(args.classifiers, args.classifier_dir)
    purifier = keras.models.load_model(args.purifier)
    classifiers = {name: keras.models.load_model(path) for name, path in paths.items()}
    images, labels = load_test_arrays(args.dataset, args.data_dir)
    chosen, held_out = sample_indices(len(images), args.n, args.seed, PAPERNOT_SEEDS)
    attack_params: dict[str, dict] = {}
    for attack, name, value in args.attack_param:
        attack_params.setdefault(attack, {})[name] = value
    eps_grid = [float(e) for e in args.eps_grid.split(",") if e.strip()]
    written = run_suite(
        images[chosen],
        labels[chosen],
        purifier,
        classifiers,
        split_specs(args.attacks),
        args.out,
        attack_params=attack_params,
        seeds_for_substitutes=images[held_out],
        eot_samples=args.eot_samples,
        eps_grid=eps_grid,
        seed=args.seed,
        verbose=not args.quiet,
        meta={"dataset": args.dataset, "purifier": args.purifier, "classifiers": paths},
    )
    with open(written["md"], encoding="utf-8") as handle:
        print(without_marker(handle.read()))
    for kind, path in sorted(written.items()):
        print(f"{kind:>16}: {path}")
    return 0
