"""Which PGD step lets the study's 40-step adaptive rows converge? BPDA-PGD at 40 and 80 steps, for
several step sizes at one eps, through every column of a study (its own models and harness).

Why: the study checks each adaptive row against the same attack with twice the steps, and flags a
difference of more than 2 points: the 40-step row had not converged. On MNIST at eps 0.3 the timing
run `lqvae reproduce mnist --n 50` flagged it with Madry et al.'s step of 0.01 (40 steps move a
pixel by 0.4 in all, 1.3 times the ball's radius). This measures, on the study's first `--n`
images and with its restarts, which step makes 40 steps as strong as 80, so that the study's
adaptive rows use a step the check accepts rather than one it flags.

Usage:
    python bench/adaptive_step.py mnist --models /work/store/models --eps 0.3 --steps 0.01 0.02 0.075
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import keras

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from results_table import append_table  # noqa: E402

from lqvae_tf.defenses import LQVAEDefense  # noqa: E402
from lqvae_tf.evaluation.suite import load_test_arrays, run_suite, sample_indices  # noqa: E402
from lqvae_tf.study.config import PAPER_COLUMN, study_config  # noqa: E402
from lqvae_tf.study.run import (  # noqa: E402
    ROBUST_COLUMNS,
    STACKED_COLUMNS,
    Stages,
    attacker_seeds,
    classifier_model,
    train_models,
)
from lqvae_tf.study.store import ModelStore  # noqa: E402


def specs(eps: float, steps: list[float], n: int) -> list[str]:
    """BPDA-PGD of 40 and of 80 steps per step size, as the study writes its adaptive rows (less
    `skip=defense-gan`: Defense-GAN is not a column here)."""
    return [
        f"bpda-pgd[eps={eps},nb_iter={iters},eps_iter={step},restarts=2,on=A,n={n}]"
        for step in steps
        for iters in (40, 80)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=("mnist", "fashion_mnist", "celeb_a"))
    parser.add_argument("--models", required=True, help="the study's model store (its models must be trained)")
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--steps", type=float, nargs="+", default=[0.01, 0.02, 0.075])
    parser.add_argument("--n", type=int, default=200, help="first images of the study's sample attacked")
    parser.add_argument("--out", default="runs/adaptive_step", help="run folder (its adversarial cache resumes)")
    parser.add_argument("--note", default="", help="how the machine was loaded, stated beside the table")
    args = parser.parse_args(argv)

    config = study_config(args.dataset)
    # Finds the study's models in the store (run its models phase first: a missing one trains here).
    paths = train_models(config, ModelStore(args.models), stages=Stages(verbose=False))
    images, labels = load_test_arrays(config.dataset)
    chosen, _ = sample_indices(len(images), config.n, config.seed, attacker_seeds(config))
    chosen = chosen[: args.n]
    classifiers = {"A": keras.models.load_model(paths[classifier_model("A")])}
    robust = {column: {"A": keras.models.load_model(paths[classifier_model("A", column)])} for column in ROBUST_COLUMNS}
    others = []
    if "purifier (paper)" in paths:
        others.append(LQVAEDefense(keras.models.load_model(paths["purifier (paper)"]), name=PAPER_COLUMN))
    start = time.perf_counter()
    written = run_suite(
        images[chosen],
        labels[chosen],
        keras.models.load_model(paths["purifier"]),
        classifiers,
        specs(args.eps, args.steps, args.n),
        args.out,
        seed=config.seed,
        other_defenses=others,
        robust_classifiers=robust,
        stacked=STACKED_COLUMNS,
        meta={"dataset": config.dataset},
    )
    seconds = time.perf_counter() - start
    with open(written["json"]) as f:
        rows = [r for r in json.load(f)["rows"] if r["params"].get("gradient") == "bpda"]
    columns = list(rows[0]["defended"])
    header = ["step", *[f"{c} 40 / 80" for c in columns], "largest move (points)"]
    table = []
    for step in args.steps:
        pair = {r["params"]["nb_iter"]: r for r in rows if r["params"]["eps_iter"] == step}
        cells = [(pair[40]["defended"][c]["accuracy"], pair[80]["defended"][c]["accuracy"]) for c in columns]
        moves = [round(a - b, 1) for a, b in cells]
        cells_text = [f"{a:.1f} / {b:.1f}" for a, b in cells]
        table.append("| " + " | ".join([f"{step:g}", *cells_text, f"{max(moves):.1f}"]) + " |")
    append_table(
        f"BPDA-PGD step sizes, {args.dataset} eps {args.eps}, classifier A",
        f"first {args.n} images of the study's sample, 2 restarts, {seconds:.0f} s in all. {args.note}".strip(),
        header,
        table,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
