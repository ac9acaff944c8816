"""`docs/results.md`: the index of every study's page, with its headline averages beside the paper's.

Each `lqvae reproduce DATASET` writes its own page (`<out>/results/<dataset>.md`) and then
rebuilds this index from every study's `results.json` found under `<out>/results/`, so the index
never goes stale and never needs a hand edit.
"""

from __future__ import annotations

import json
import os

from lqvae_tf.atomic import write_text
from lqvae_tf.evaluation.paper import COLUMNS, reference, reference_key
from lqvae_tf.evaluation.report import spec_label
from lqvae_tf.generated import marker
from lqvae_tf.study.floors import VERDICTS, check_floors

TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "celeb_a": "CelebA (gender)"}
SETTING_NAMES = {
    "white-box": "white-box attacks on the classifier",
    "black-box": "black-box transfer",
    "end-to-end": "end to end (BPDA)",
}


def page_path(out_dir: str, dataset: str) -> str:
    """Where a study's page goes: `<out>/results/<dataset>.md`."""
    return os.path.join(out_dir, "results", f"{dataset}.md")


def row_cells(row: dict) -> dict[str, float]:
    """A row's accuracies by column: "no attack", "no defense" and each defended column."""
    values = {"no attack": row["no_attack"]["accuracy"], "no defense": row["no_defense"]["accuracy"]}
    values.update({column: cell["accuracy"] for column, cell in row["defended"].items()})
    return values


def row_label(row: dict) -> str:
    """The row's classifier label as the paper writes it ("X/Y" for black-box rows)."""
    return row["classifier"] if row["setting"] != "black-box" else f"{row['classifier']}/{row['source']}"


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):.2f}" if values else ""


def _columns(rows: list[dict]) -> tuple[str, ...]:
    """The defended columns of the index: the paper's, then any other the rows hold (e.g. the
    filter in front of the Madry classifier), in the order they first appear."""
    extra = dict.fromkeys(column for row in rows for column in row["defended"] if column not in COLUMNS)
    return (*COLUMNS[2:], *extra)


def group_rows(rows: list[dict]) -> dict[str, list[dict]]:
    """The rows by the question they answer, named as the index names them.

    Black-box rows are grouped per attack (the paper's DeepFool or CW beside, e.g., the Defense-GAN
    code's FGSM), so that an average never mixes two attacks and the paper's line follows its own.
    White-box attacks the paper does not run, and rows whose spec set the attack's parameters, get
    a group each. Adaptive end-to-end rows are grouped
    per eps (their worst row is the group's answer), never across budgets; the groups whose name
    ends in "(worst row)" are those.
    """
    groups: dict[str, list[dict]] = {}
    for row in rows:
        if row["setting"] == "end-to-end":
            if row["attack"] == "authors_fgsm":
                name = "end to end, paper's setting"
            else:  # one worst row per eps: a minimum over two budgets would mix two questions
                name = f"end to end, adaptive at eps {row['params']['eps']:g} (worst row)"
        elif row.get("variant"):
            # The spec set the attack's parameters (e.g. PGD at a larger step beside the paper's):
            # its own line, never in the paper's average (`reference_key`).
            label = spec_label(row["attack"], row["variant"], row["params"].get("restarts", 1))
            name = f"{SETTING_NAMES[row['setting']]}, {label} (not the paper's setting)"
        elif row["setting"] == "black-box":
            name = f"{SETTING_NAMES['black-box']}, {row['attack']}"
        elif row["setting"] == "white-box" and row["attack"] not in _paper_white_box():
            # e.g. the standard cw_l2 beside the paper's CW: its own line, so that the white-box
            # average and the paper's line beside it hold the same attacks.
            name = f"{SETTING_NAMES['white-box']}, {row['attack']} (not in the paper)"
        else:
            name = SETTING_NAMES[row["setting"]]
        groups.setdefault(name, []).append(row)
    return groups


def _paper_white_box() -> set[str]:
    """The white-box attacks of the paper's tables (any dataset)."""
    return {attack for dataset in TITLES for setting, attack, _ in reference(dataset) if setting == "white-box"}


def paper_row(paper: dict[tuple[str, str, str], dict[str, float]], row: dict) -> dict[str, float] | None:
    """The paper's numbers for the same setting, attack and classifier as `row` (None: not reported)."""
    key = reference_key(row["setting"], row["attack"], row_label(row), row.get("variant", ""))
    return paper.get(key) if key else None


def _summary(dataset: str, rows: list[dict], sample_n: int | None = None) -> list[str]:
    """One line per group of rows (`group_rows`): our averages, then the paper's over the same rows;
    for the adaptive end-to-end groups, the worst row per eps instead of an average. A group whose
    rows score fewer images than the sample's `sample_n` (a spec's `n=`) says how many."""
    paper = reference(dataset)
    columns = ("no attack", "no defense", *_columns(rows))
    lines = []
    for name, chosen in group_rows(rows).items():
        worst = name.endswith("(worst row)")  # before the name grows its n below
        sizes = sorted({row["n"] for row in chosen if row.get("n") is not None})
        if sample_n is not None and sizes and sizes != [sample_n]:
            name = f"{name}, n = {' / '.join(str(size) for size in sizes)}"
        ours = [row_cells(row) for row in chosen]
        theirs = [found for row in chosen if (found := paper_row(paper, row)) is not None]
        if worst:
            cells = [min((v[c] for v in ours if c in v), default=None) for c in columns]
            cells = ["" if v is None else f"{v:.2f}" for v in cells]
        else:
            cells = [_mean([v[c] for v in ours if c in v]) for c in columns]
        lines.append(f"| {name} | {len(chosen)} | " + " | ".join(cells) + " |")
        if theirs:
            paper_cells = [_mean([t[c] for t in theirs if c in t]) for c in columns]
            lines.append(f"| paper, same rows | {len(theirs)} | " + " | ".join(paper_cells) + " |")
    return lines


def _floors_line(folder: str, meta: dict, rows: list[dict]) -> list[str]:
    """How many of the study's floors (`StudyConfig.floors`, kept in the page's meta) its rows meet."""
    floors = tuple((meta.get("study") or {}).get("floors") or ())
    if not floors:
        return []
    curve = None
    curve_path = os.path.join(folder, "accuracy_vs_eps.json")
    if os.path.isfile(curve_path):
        with open(curve_path, encoding="utf-8") as handle:
            curve = json.load(handle)
    results = check_floors(floors, rows, curve)
    counts = {word: sum(result["met"] is met for result in results) for met, word in VERDICTS.items()}
    listed = ", ".join(f"{count} {verdict}" for verdict, count in counts.items() if count)
    return [f"Floors of the baselines (the page's Floors section): {listed} of {len(results)}.", ""]


def write_index(out_dir: str) -> str:
    """Rebuilds `<out>/results.md` from every study found under `<out>/results/`; returns its path."""
    lines = [
        marker("`lqvae reproduce`"),
        "# Measured results",
        "",
        "One page per dataset, each written by `lqvae reproduce DATASET` (its command, settings, models with",
        "their training times, every table with n and 95% intervals per cell, the paper's numbers beside ours,",
        "and the figures). This index is rebuilt by every run from the pages' `results.json`: averages of our",
        "rows per setting, then the paper's average over the same rows where it reports them. For the adaptive",
        "end-to-end attacks it shows, per eps, the worst row (the strongest attack we ran, among them the",
        "per-image worst of BPDA, soft path + EOT and identity PGD: an image counts only if it survived all",
        "three) instead of an average.",
        "",
    ]
    found = False
    for dataset in TITLES:
        data_path = os.path.join(out_dir, "results", dataset, "results.json")
        if not os.path.isfile(data_path):
            continue
        found = True
        with open(data_path, encoding="utf-8") as handle:
            saved = json.load(handle)
        meta = saved.get("meta", {})
        scale = f" {meta['scale']}" if meta.get("scale") else ""
        lines += [
            f"## {TITLES[dataset]}: [{dataset}.md](results/{dataset}.md)",
            "",
            f"Measured {meta.get('date', '')}, evaluation sample n = {meta.get('n', '')}.{scale}",
            "",
            *_floors_line(os.path.dirname(data_path), meta, saved["rows"]),
            "| rows | count | no attack | no defense | " + " | ".join(_columns(saved["rows"])) + " |",
            "|---|---|---|---|" + "---|" * len(_columns(saved["rows"])),
            *_summary(dataset, saved["rows"], meta.get("n")),
            "",
        ]
    if not found:
        lines += ["No study has been run into this folder yet: `lqvae reproduce mnist` writes the first page.", ""]
    return write_text(os.path.join(out_dir, "results.md"), "\n".join(lines))
