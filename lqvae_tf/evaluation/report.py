"""Result tables as Markdown, CSV and JSON, with averages per setting and attack parameters."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence

from lqvae_tf.atomic import write_text
from lqvae_tf.evaluation.harness import SETTINGS, Row

TITLES = {
    "white-box": "White-box attacks on the classifier",
    "black-box": "Black-box transfer attacks (X/Y: crafted on substitute Y, tested on X)",
    "end-to-end": "End-to-end white-box attacks on defense + classifier",
}


def _params(params: Mapping) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))


def _distortion(values: Mapping[str, float]) -> str:
    return f"{values['mean_l2']:.2f} / {values['mean_linf']:.2f}" if values else ""


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _mean_or_blank(values: Sequence[float]) -> str:
    return f"{_mean(values):.2f}" if values else ""


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
        defenses = list(chosen[0].defended)
        header = [
            "attack",
            "classifier",
            "n",
            "no attack",
            *[f"{d} (no attack)" for d in defenses],
            "no defense",
            *defenses,
            "mean L2 / L-inf",
            "attack parameters",
        ]
        out += [f"### {TITLES[setting]}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in chosen:
            label = row.classifier if setting != "black-box" else f"{row.classifier}/{row.source}"
            cells = [
                row.attack,
                label,
                str(row.n),
                str(row.no_attack),
                *[str(row.clean_defended[d]) if d in row.clean_defended else "" for d in defenses],
                str(row.no_defense),
                *[str(row.defended[d]) for d in defenses],
                _distortion(row.distortion),
                _params(row.params),
            ]
            out.append("| " + " | ".join(cells) + " |")
            reference = (paper or {}).get((setting, row.attack, label))
            if reference:
                paper_cells = [
                    "paper",
                    label,
                    "",
                    str(reference.get("no attack", "")),
                    *["" for _ in defenses],
                    *[f"{reference.get(c, '')}" for c in ("no defense", *defenses)],
                    "",
                    "",
                ]
                out.append("| " + " | ".join(paper_cells) + " |")
        average = [
            "**average**",
            "",
            "",
            f"{_mean([r.no_attack.percent for r in chosen]):.2f}",
            *[_mean_or_blank([r.clean_defended[d].percent for r in chosen if d in r.clean_defended]) for d in defenses],
            f"{_mean([r.no_defense.percent for r in chosen]):.2f}",
            *[f"{_mean([r.defended[d].percent for r in chosen]):.2f}" for d in defenses],
            "",
            "",
        ]
        out += ["| " + " | ".join(average) + " |", ""]
    out.append(
        "Cells: accuracy % [95% Wilson interval]; averages are means of the rows above. Mean L2 / L-inf: "
        "the size of the perturbations fed to the undefended classifier (pixels in [0, 1])."
    )
    return "\n".join(out) + "\n"


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
                ]
            )
    return buffer.getvalue()


def write_reports(
    rows: Sequence[Row], out_dir: str, meta: Mapping | None = None, paper: Mapping | None = None
) -> dict[str, str]:
    """Writes results.md, results.csv and results.json into `out_dir`; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {kind: os.path.join(out_dir, f"results.{kind}") for kind in ("md", "csv", "json")}
    write_text(paths["md"], markdown(rows, paper))
    write_text(paths["csv"], csv_text(rows))
    write_text(paths["json"], json.dumps({"meta": dict(meta or {}), "rows": [r.to_dict() for r in rows]}, indent=2))
    return paths
