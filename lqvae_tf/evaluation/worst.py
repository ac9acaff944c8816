"""The per-image worst of end-to-end rows that differ only in their backward pass.

An adaptive attacker who has BPDA through the hard quantizer, the soft surrogate with EOT and the
identity gradient tries all three on each image and keeps whichever fools the defense: an image
counts as robust only if it survives every one. That is lower than the worst of the three rows'
accuracies wherever the rows fool different images, and it is what the study's adaptive line
reports (issue 27: "per image, the worst of BPDA, soft path + EOT and identity PGD").

`per_image_worst` builds that row from rows the harness scored in this run (their in-memory
`Row.outcomes`); it crafts nothing, so it costs no attack time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lqvae_tf.evaluation.harness import NO_DEFENSE, Row, mean_distortion
from lqvae_tf.stats import Accuracy

# The backward passes whose rows are combined, in the order the studies run them.
COMBINED = ("bpda", "soft", "identity")
# The `gradient` parameter of a combined row.
WORST = "per-image worst"


def _budget(row: Row) -> tuple:
    """What the combined rows share: every parameter but the backward pass and its EOT."""
    shared = {key: value for key, value in row.params.items() if key not in ("gradient", "eot_samples")}
    return (row.classifier, row.attack, row.n, repr(sorted(shared.items(), key=lambda item: item[0])))


def per_image_worst(rows: Sequence[Row]) -> list[tuple[int, Row]]:
    """For each set of end-to-end rows of one classifier, attack and budget run with at least two
    of the `COMBINED` backward passes, the row that counts an image as robust in a column only if
    it survived all of them there.

    Returns (index, row) pairs: where in `rows` the combined row belongs (after the last row it
    combines). Its `bit_flips` and `column_distortion` are measured on, per image, the adversarial
    that fooled the column first (in `rows`' order), or the first row's where none did; its
    distortion and clean columns are the first row's (the undefended adversarials are the same in
    every row of one budget).
    """
    groups: dict[tuple, list[int]] = {}
    for index, row in enumerate(rows):
        if row.setting == "end-to-end" and row.params.get("gradient") in COMBINED and row.outcomes:
            groups.setdefault(_budget(row), []).append(index)
    combined = []
    for indices in groups.values():
        members = [rows[i] for i in indices]
        if len({row.params["gradient"] for row in members}) < 2:
            continue
        combined.append((indices[-1] + 1, _combine(members)))
    return combined


def _combine(members: list[Row]) -> Row:
    first = members[0]
    columns = [c for c in first.outcomes if all(c in row.outcomes for row in members)]
    outcomes, flips, sizes = {}, {}, {}
    for column in columns:
        stack = np.stack([row.outcomes[column] for row in members])  # rows x images
        outcomes[column] = stack.all(axis=0)
        fooled_by = np.where(stack.all(axis=0), 0, np.argmin(stack, axis=0))  # first row that fooled it
        images = np.arange(stack.shape[1])
        if all(column in row.flips for row in members):
            flips[column] = np.stack([row.flips[column] for row in members])[fooled_by, images]
        if all(column in row.sizes for row in members):
            sizes[column] = np.stack([row.sizes[column] for row in members])[fooled_by, images]
    params = {key: value for key, value in first.params.items() if key != "eot_samples"}
    # Each combined row's backward pass and EOT draws.
    passes = [[row.params["gradient"], row.params.get("eot_samples", 1)] for row in members]
    params.update(gradient=WORST, worst_of=passes)
    return Row(
        first.setting,
        first.attack,
        params,
        first.classifier,
        first.source,
        first.no_attack,
        Accuracy.of_outcomes(outcomes[NO_DEFENSE]) if NO_DEFENSE in outcomes else first.no_defense,
        {column: Accuracy.of_outcomes(hits) for column, hits in outcomes.items() if column != NO_DEFENSE},
        dict(first.clean_defended),
        dict(first.distortion),
        {column: round(100 * float(changed.mean()), 2) for column, changed in flips.items()},
        seconds=0.0,  # made of rows scored in this run: no attack of its own
        column_distortion={
            column: mean_distortion(sizes[column])
            for column in first.column_distortion
            if column in sizes and all(column in row.column_distortion for row in members)
        },
        variant=first.variant,
        outcomes=outcomes,
        flips=flips,
        sizes=sizes,
    )
