"""The index of a folder of frontiers: one row per `lqvae frontier` output found beside the others.

`write_frontier` calls `write_index` on the folder above its output after every run, so a
folder of frontiers (the repository's `docs/frontier/`) always has a `README.md` that lists
each frontier with its settings and its most robust point, read from each `frontier.json`. A
hand-written `README.md` there is left alone.
"""

from __future__ import annotations

import json
import os
import shlex

from lqvae_tf.atomic import write_text
from lqvae_tf.generated import is_generated, marker

INDEX = "README.md"
WRITER = "`lqvae frontier` (rebuilt from every `*/frontier.json` here each time it writes a frontier)"
ADAPTATION_SUMMARY = "summary.json"  # what `lqvae adapt` writes beside the adapted classifier


def _grid(command: str | None) -> str:
    """The `--grid` a frontier was made from: its file, or "inline" for JSON text."""
    argv = shlex.split(command or "")
    if "--grid" not in argv or argv.index("--grid") + 1 >= len(argv):
        return "-"
    grid = argv[argv.index("--grid") + 1]
    return "inline" if grid.lstrip().startswith("{") else f"`{grid}`"


def _classifier(path: str) -> str:
    """A classifier by the last two parts of its path (a model store names the folder, not the file)."""
    return "`" + "/".join(path.replace(os.sep, "/").split("/")[-2:]) + "`"


def _row(name: str, frontier: dict) -> str:
    settings, rows = frontier["settings"], frontier["rows"]
    attacks = settings["attacks"]
    best = max(rows, key=lambda row: row["measured"]["adaptive"]["accuracy"])
    measured = best["measured"]
    cells = [
        f"[{name}]({name}/frontier.md)",
        settings["dataset"],
        _classifier(settings["classifier"]),
        _grid(settings.get("command")),
        str(attacks["n"]),
        f"{attacks['eps']:g}",
        str(settings.get("adapt_epochs") or 0),
        str(len(rows)),
        f"`{best['key']}`: {measured['adaptive']['accuracy']:.1f} ({measured['clean_filtered']['accuracy']:.1f})",
    ]
    return "| " + " | ".join(cells) + " |"


def index_markdown(folder: str) -> str:
    """The index page of every frontier (a subfolder with `frontier.json`) in `folder`."""
    names = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    lines = [
        marker(WRITER),
        "# Purifier frontiers",
        "",
        "Each folder holds what one `lqvae frontier` run wrote: `frontier.md` (its exact command, the",
        "settings and one row per point), `frontier.json` and `frontier.png`. The last column is the",
        "point with the highest adaptive robust accuracy (%), with its clean accuracy behind the filter",
        "(%) in brackets; the classifier is the adapted one where `adapted` names epochs.",
        "",
        "| folder | dataset | classifier | grid | test images | eps | adapted (epochs) | points "
        "| most robust point: adaptive (clean filtered) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    summaries = []
    for name in names:
        path = os.path.join(folder, name, "frontier.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                lines.append(_row(name, json.load(handle)))
        elif os.path.isfile(os.path.join(folder, name, ADAPTATION_SUMMARY)):
            summaries.append(f"- [{name}]({name}/{ADAPTATION_SUMMARY})")
    if summaries:
        lines += ["", "Classifiers adapted longer by `lqvae adapt` (its JSON summary):", "", *summaries]
    return "\n".join(lines) + "\n"


def write_index(folder: str) -> str | None:
    """Rebuilds `folder/README.md` from the frontiers in it; returns its path, or None if it is hand-written."""
    path = os.path.join(folder, INDEX)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            if not is_generated(handle.read()):
                return None
    return write_text(path, index_markdown(folder))
