"""Result tables as Markdown, CSV and JSON, with averages per setting and attack parameters."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence

import numpy as np

from lqvae_tf.atomic import write_text
from lqvae_tf.evaluation.harness import SETTINGS, Row
from lqvae_tf.evaluation.paper import reference_key
from lqvae_tf.evaluation.worst import WORST
from lqvae_tf.generated import marker

TITLES = {
    "white-box": "White-box attacks on the classifier",
    "black-box": "Black-box transfer attacks (X/Y: crafted on substitute Y, tested on X)",
    "end-to-end": "End-to-end white-box attacks on defense + classifier",
}


def _params(params: Mapping) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))


def size_text(values: Mapping[str, float]) -> str:
    """A `mean_distortion` as the tables write it: "mean L2 / mean L-inf"."""
    return f"{values['mean_l2']:.2f} / {values['mean_linf']:.2f}"


def _distortion(row: Row) -> str:
    """The classifier alone's adversarials' mean L2 / L-inf, then each column fed its own, named."""
    if not row.distortion:
        return ""
    own = "".join(f"; {column} {size_text(values)}" for column, values in row.column_distortion.items())
    return size_text(row.distortion) + own


def _flips(values: Mapping[str, float]) -> str:
    """The row's latent symbols flipped (%), one value per LQ-VAE column, named when several."""
    if len(values) == 1:
        return f"{next(iter(values.values())):.1f}"
    return ", ".join(f"{name} {value:.1f}" for name, value in values.items())


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _mean_or_blank(values: Sequence[float]) -> str:
    return f"{_mean(values):.2f}" if values else ""


NOT_RUN = "not run"


def _cell(accuracy, n: int) -> str:
    """`accuracy [interval]`, with its own n where it was scored on a subsample of the row's."""
    if accuracy is None:
        return NOT_RUN
    return str(accuracy) if accuracy.n == n else f"{accuracy} (n={accuracy.n})"


def end_to_end_label(row: Row) -> str:
    """What an end-to-end row is, at a glance: the paper's setting or which adaptive attack."""
    params = row.params
    if row.attack == "authors_fgsm":
        return "paper's setting (authors' BPDA.py)"
    steps = f", {params['nb_iter']} steps" if "nb_iter" in params else ""
    restarts = f" x {params['restarts']} restarts" if params.get("restarts", 1) > 1 else ""
    eps = f" eps {params['eps']}" if "eps" in params else ""
    if params.get("gradient") == WORST:
        combined = " / ".join(_gradient_label(gradient, eot) for gradient, eot in params.get("worst_of", ()))
        return f"adaptive: per-image worst of {combined}, {row.attack}{eps}{steps}{restarts}"
    label = _gradient_label(params.get("gradient"), params.get("eot_samples", 1))
    return f"adaptive: {label}-{row.attack}{eps}{steps}{restarts}"


def _gradient_label(gradient, eot_samples: int) -> str:
    how = {"bpda": "BPDA", "identity": "identity-BPDA", "naive": "no BPDA (masked)", "soft": "soft-path BPDA"}
    label = how.get(gradient, str(gradient))
    return label + f"+EOT x{eot_samples}" if eot_samples > 1 and gradient == "soft" else label


def attack_name(row: Row) -> str:
    """The attack as a table names it: with the parameters its spec set where they make it another
    attack than the paper's ("pgd[eps_iter=0.075]") and its random starts where there are several
    ("pgd[eps_iter=0.075,restarts=2]"); an end-to-end row's label says them already."""
    if row.setting == "end-to-end":
        return row.attack
    return spec_label(row.attack, row.variant, row.params.get("restarts", 1))


def spec_label(attack: str, variant: str, restarts: int = 1) -> str:
    """`attack[variant,restarts=R]` as a table and the index name a row: the parameters its spec
    set, its random starts where there are several; the bare attack where neither."""
    options = ([variant] if variant else []) + ([f"restarts={restarts}"] if restarts > 1 else [])
    return f"{attack}[{','.join(options)}]" if options else attack


def markdown(rows: Sequence[Row], paper: Mapping[tuple, Mapping[str, float]] | None = None) -> str:
    """Markdown tables, one per setting, each cell `accuracy [95% CI]`, with an average row.

    Args:
        rows: the results.
        paper: optional (setting, attack, classifier) -> {column: paper's number}, shown beside ours.
    """
    out = []
    for setting in SETTINGS:
        chosen = [r for r in rows if r.setting == setting]
        if not chosen:
            continue
        defenses = list(dict.fromkeys(d for r in chosen for d in r.defended))
        header = [
            *(["what"] if setting == "end-to-end" else []),
            "attack",
            "classifier",
            "n",
            "no attack",
            *[f"{d} (no attack)" for d in defenses],
            "no defense",
            *defenses,
            "mean L2 / L-inf",
            "LQ-VAE code symbols flipped %",
            "attack parameters",
        ]
        out += [f"### {TITLES[setting]}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in chosen:
            label = row.classifier if setting != "black-box" else f"{row.classifier}/{row.source}"
            cells = [
                *([end_to_end_label(row)] if setting == "end-to-end" else []),
                attack_name(row),
                label,
                str(row.n),
                str(row.no_attack),
                *[_cell(row.clean_defended[d], row.n) if d in row.clean_defended else "" for d in defenses],
                str(row.no_defense),
                *[_cell(row.defended.get(d), row.n) for d in defenses],
                _distortion(row),
                _flips(row.bit_flips),
                _params(row.params),
            ]
            out.append("| " + " | ".join(cells) + " |")
            key = reference_key(setting, row.attack, label, row.variant)
            reference = (paper or {}).get(key) if key else None
            if reference:
                paper_cells = [
                    *(["the paper's number"] if setting == "end-to-end" else []),
                    "paper",
                    label,
                    "",
                    str(reference.get("no attack", "")),
                    *["" for _ in defenses],
                    *[f"{reference.get(c, '')}" for c in ("no defense", *defenses)],
                    "",
                    "",
                    "",
                ]
                out.append("| " + " | ".join(paper_cells) + " |")
        # Black-box rows average per attack (the paper's attack beside another never share a mean).
        attacks = list(dict.fromkeys(r.attack for r in chosen)) if setting == "black-box" else [None]
        for attack in attacks:
            members = [r for r in chosen if attack is None or r.attack == attack]
            average = [
                *([""] if setting == "end-to-end" else []),
                "**average**" if len(attacks) == 1 else f"**average, {attack}**",
                "",
                "",
                f"{_mean([r.no_attack.percent for r in members]):.2f}",
                *[
                    _mean_or_blank([r.clean_defended[d].percent for r in members if d in r.clean_defended])
                    for d in defenses
                ],
                f"{_mean([r.no_defense.percent for r in members]):.2f}",
                *[_mean_or_blank([r.defended[d].percent for r in members if d in r.defended]) for d in defenses],
                "",
                "",
                "",
            ]
            out.append("| " + " | ".join(average) + " |")
        out += ["", _time_line(chosen), ""]
    out.append(
        "Cells: accuracy % [95% Wilson interval], with (n=...) where a column was scored on a subsample of the "
        f"row's n; '{NOT_RUN}': that defense was not attacked in that row (see the study's settings); averages "
        "are means of the rows above over the cells measured. Mean L2 / L-inf: the size of the perturbations fed "
        "to the undefended classifier (pixels in [0, 1]), then, named, that of each column fed adversarials of its "
        "own (crafted through its defense, or on its robust classifier). Code symbols flipped: the mean share "
        "of the LQ-VAE's latent code that the row's adversarials change (the paper's Fig. 3 measure)."
    )
    checks = attack_checks(rows)
    if checks:
        out += ["", "### Checks of the attacks", "", *[f"- {line}" for line in checks]]
    return "\n".join(out) + "\n"


# Step doubling: a row whose accuracy falls by more than this many points when its steps double
# had not converged, and its number is not the attack's.
STEP_DOUBLING_POINTS = 2.0


def _same_budget(row: Row) -> tuple:
    """What two end-to-end rows must share to be compared: classifier, eps, gradient, EOT."""
    p = row.params
    return (row.classifier, p.get("eps"), p.get("gradient"), p.get("eot_samples", 1), p.get("restarts", 1))


def attack_checks(rows: Sequence[Row]) -> list[str]:
    """Whether the gradient attacks converged and were not beaten by a gradient-free one.

    - Step doubling: an end-to-end PGD row beside the same row with twice the steps; flagged
      where a column's accuracy differs by more than `STEP_DOUBLING_POINTS`.
    - Gradient-free: an end-to-end Square row beside the strongest gradient row at the same eps on
      the same classifier; flagged where Square leaves a lower accuracy, saying whether beyond the
      gradient row's 95% interval (masked gradients) or within it, and how many images Square alone
      fooled.
    """
    end_to_end = [r for r in rows if r.setting == "end-to-end"]
    lines = []
    pgd = {(_same_budget(r), r.params.get("nb_iter")): r for r in end_to_end if r.attack == "pgd"}
    for (budget, steps), row in pgd.items():
        doubled = pgd.get((budget, 2 * steps)) if steps else None
        if doubled is None:
            continue
        gaps = {c: row.defended[c].percent - doubled.defended[c].percent for c in row.defended if c in doubled.defended}
        far = {c: g for c, g in gaps.items() if abs(g) > STEP_DOUBLING_POINTS}
        what = f"{end_to_end_label(row)} against {2 * steps} steps"
        if far:
            listed = ", ".join(f"{c} {g:+.2f}" for c, g in far.items())
            lines.append(
                f"**FLAG** step doubling, {what}: differ by more than {STEP_DOUBLING_POINTS:g} points ({listed})"
            )
        else:
            lines.append(f"step doubling, {what}: every column within {STEP_DOUBLING_POINTS:g} points")
    for square in (r for r in end_to_end if r.attack == "square"):
        eps = square.params.get("eps")
        gradient = [
            r
            for r in end_to_end
            if r.attack != "square" and r.classifier == square.classifier and r.params.get("eps") == eps
        ]
        if not gradient:
            continue
        beaten = []
        for column in square.defended:
            rivals = [r for r in gradient if column in r.defended]
            if rivals and square.defended[column].percent < min(r.defended[column].percent for r in rivals):
                beaten.append(_beaten_text(column, square, rivals))
        what = f"Square (gradient-free, {square.params.get('n_queries')} queries) at eps {eps} on {square.classifier}"
        if beaten:
            lines.append(f"**FLAG** {what} beats every gradient attack ({'; '.join(beaten)})")
        else:
            lines.append(f"{what}: no stronger than the strongest gradient attack in any column")
    return lines


def _beaten_text(column: str, square: Row, rivals: list[Row]) -> str:
    """How far Square beat the strongest of the gradient rows `rivals` in `column`: whether beyond
    that row's 95% interval (the gradients are masked there) or within it (as likely noise as
    masking), and, where the rows kept their per-image outcomes on the same images, how many images
    Square alone fooled (every gradient row left them right: what a masked gradient misses)."""
    accuracy = square.defended[column]
    strongest = min((r.defended[column] for r in rivals), key=lambda cell: cell.percent)
    beyond = accuracy.percent < strongest.interval[0]
    verdict = "beyond its 95% interval: gradients are masked there" if beyond else "within its 95% interval"
    text = f"{column} {accuracy.percent:.2f} < {strongest.percent:.2f}, {verdict}"
    mine = square.outcomes.get(column)
    theirs = [row.outcomes.get(column) for row in rivals]
    if mine is not None and all(other is not None and len(other) == len(mine) for other in theirs):
        alone = int(np.sum(~np.asarray(mine, bool) & np.logical_and.reduce([np.asarray(o, bool) for o in theirs])))
        text += f"; {alone} of {len(mine)} images fooled by Square alone"
    return text


def _time_line(rows: Sequence[Row]) -> str:
    """The wall time a table's rows cost, or what a run that was resumed could not time."""
    timed = [r.seconds for r in rows if r.seconds is not None]
    if not timed:
        return "Time: not recorded."
    untimed = f"; {len(rows) - len(timed)} rows untimed" if len(timed) < len(rows) else ""
    slowest = max(rows, key=lambda r: -1.0 if r.seconds is None else r.seconds)
    label = slowest.classifier if slowest.setting != "black-box" else f"{slowest.classifier}/{slowest.source}"
    when = "" if any(r.recorded_seconds for r in rows) else " this run"  # else partly an earlier run's
    return (
        f"Time: {sum(timed):,.0f} s of wall time{when} over {len(timed)} rows{untimed} (the slowest: "
        f"{attack_name(slowest)} on {label}, {slowest.seconds:,.0f} s; each row's `seconds` in results.json; "
        f"{cache_note(sum(r.recorded_seconds for r in rows), sum(r.untimed_batches for r in rows))})."
    )


def cache_note(recorded: float, untimed: int) -> str:
    """What rows' times hold of earlier runs: `recorded`, the seconds kept beside the cached batches
    they read (an interrupted run's, or a rerun's), and `untimed`, cached batches without a record."""
    if not (recorded or untimed):
        return "rows read from the cache of a stopped run cost less than a full run's"
    parts = []
    if recorded:
        parts.append(f"{recorded:,.0f} s of it recorded when an earlier run made the cached batches read here")
    if untimed:
        parts.append(f"{untimed} cached batches made before their times were kept are not counted")
    return "; ".join(parts)


def csv_text(rows: Sequence[Row]) -> str:
    """One CSV line per (row, column), long format, so every number has its interval and n."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "setting",
            "attack",
            "classifier",
            "source",
            "column",
            "accuracy",
            "ci95_low",
            "ci95_high",
            "correct",
            "n",
            "params",
            "row_seconds",
            "mean_l2",
            "mean_linf",
        ]
    )
    for row in rows:
        columns = {
            "no attack": row.no_attack,
            **{f"{d} (no attack)": a for d, a in row.clean_defended.items()},
            "no defense": row.no_defense,
            **row.defended,
        }
        for column, acc in columns.items():
            low, high = acc.interval
            # The adversarials this column was fed: its own where it had them, else the classifier
            # alone's; none for the no-attack columns.
            size = {} if "no attack" in column else row.column_distortion.get(column, row.distortion)
            writer.writerow(
                [
                    row.setting,
                    row.attack,
                    row.classifier,
                    row.source,
                    column,
                    f"{acc.percent:.2f}",
                    f"{low:.2f}",
                    f"{high:.2f}",
                    acc.correct,
                    acc.n,
                    json.dumps(row.params, sort_keys=True),
                    "" if row.seconds is None else row.seconds,
                    size.get("mean_l2", ""),
                    size.get("mean_linf", ""),
                ]
            )
    return buffer.getvalue()


WRITER = "`lqvae eval`, `lqvae reproduce` or the pipeline's robustness gate (`evaluation.write_reports`)"


def write_reports(
    rows: Sequence[Row], out_dir: str, meta: Mapping | None = None, paper: Mapping | None = None
) -> dict[str, str]:
    """Writes results.md, results.csv and results.json into `out_dir`; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {kind: os.path.join(out_dir, f"results.{kind}") for kind in ("md", "csv", "json")}
    write_text(paths["md"], marker(WRITER) + "\n" + markdown(rows, paper))
    write_text(paths["csv"], csv_text(rows))
    write_text(paths["json"], json.dumps({"meta": dict(meta or {}), "rows": [r.to_dict() for r in rows]}, indent=2))
    return paths
