"""The floors a study's baselines must reach (`StudyConfig.floors`), checked on the study's own rows.

Issue 27 asked that the comparison stand on healthy baselines and said what healthy means: a Madry
classifier as accurate and as robust as the literature's, robust classifiers that do not mask their
gradients, a filter that keeps the classifier's answer. Each floor is a dict:

- {"kind": "clean", "column": C, "classifier": X, "at_least": P}: column C keeps at least P% of
  the clean sample with classifier X (the rows' `clean_defended`: the robust classifier itself for
  "madry" and "adv-tr", the classifier behind the filter for "lq-vae").
- {"kind": "robust", "column": C, "classifier": X, "eps": E, "at_least": P}: the worst of the
  study's end-to-end PGD rows at eps E on classifier X (40 steps and their 80-step check, 2
  restarts each) leaves column C at least P%.
- {"kind": "no_masking", "column": C}: for every classifier, white-box PGD leaves C no more than
  FGSM at the same eps (within FGSM's 95% interval), and C's accuracy does not rise with eps (the
  adaptive rows at eps 0.1 and 0.3, the FGSM curve of the accuracy-vs-eps figure), each beyond the
  smaller eps' interval. A miss names PGD's rows by step size and, where the study has one, BIM's
  row (PGD from the image itself): what was measured of why.

A missed floor is shown as missed, never hidden: the page's training curves and settings say what
was trained, and the check names the rows it read.
"""

from __future__ import annotations

from typing import Any

from lqvae_tf.evaluation.worst import WORST
from lqvae_tf.stats import Accuracy

KINDS = ("clean", "robust", "no_masking")
VERDICTS = {True: "met", False: "missed", None: "not measured"}  # a check's `met` in words


def check_floor(floor: dict[str, Any]) -> None:
    """Raises ValueError naming what is wrong with one floor's dict."""
    kind = floor.get("kind")
    needed = {
        "clean": {"kind", "column", "classifier", "at_least"},
        "robust": {"kind", "column", "classifier", "eps", "at_least"},
        "no_masking": {"kind", "column"},
    }.get(kind)
    if needed is None:
        raise ValueError(f"a floor's kind is one of {KINDS}, got {kind!r}")
    if set(floor) != needed:
        raise ValueError(f"a {kind} floor needs exactly {sorted(needed)}, got {sorted(floor)}")
    if "at_least" in floor and not 0 <= floor["at_least"] <= 100:
        raise ValueError(f"a floor's at_least is a percentage in [0, 100], got {floor['at_least']}")


def _cell_text(cell: dict) -> str:
    low, high = cell["ci95"]
    return f"{cell['accuracy']:.2f} [{low:.1f}, {high:.1f}]"


def _clean(floor: dict, rows: list[dict]) -> tuple[str, bool | None]:
    for row in rows:
        if row["classifier"] == floor["classifier"] and floor["column"] in row.get("clean_defended", {}):
            cell = row["clean_defended"][floor["column"]]
            return _cell_text(cell), cell["accuracy"] >= floor["at_least"]
    return "not measured (no row holds this column's clean accuracy)", None


def _robust(floor: dict, rows: list[dict]) -> tuple[str, bool | None]:
    cells = [
        (row["defended"][floor["column"]], row["params"].get("nb_iter"))
        for row in rows
        if row["setting"] == "end-to-end"
        and row["attack"] == "pgd"
        and row["params"].get("gradient") != WORST  # made of the rows beside it, not an attack of its own
        and row["classifier"] == floor["classifier"]
        and row["params"].get("eps") == floor["eps"]
        and floor["column"] in row["defended"]
    ]
    if not cells:
        return f"not measured (no end-to-end PGD row at eps {floor['eps']:g} on {floor['classifier']})", None
    worst, steps = min(cells, key=lambda pair: pair[0]["accuracy"])
    runs = sorted({steps for _, steps in cells if steps is not None})
    how = f"{runs[0]} steps" if len(runs) == 1 else f"{' and '.join(map(str, runs))} steps; the worst {steps}"
    return f"{_cell_text(worst)} (worst of {len(cells)} PGD rows, {how})", worst["accuracy"] >= floor["at_least"]


def _rises(smaller: dict, larger: dict) -> bool:
    """Whether accuracy at the larger eps is above the smaller eps' 95% interval."""
    return larger["accuracy"] > smaller["ci95"][1]


def _steps_text(steps: list[tuple[Any, float]]) -> str:
    """The PGD rows of one (classifier, eps) by step size, the measurement a missed PGD-against-FGSM
    comparison needs beside it: accuracy falling as the step grows says PGD had not converged (its
    40 steps too short to reach the ball's corners, where FGSM lands at once) rather than that the
    gradient misleads it."""
    if len(steps) < 2:
        return ""
    known = sorted(steps, key=lambda step: (step[0] is None, step[0] or 0.0))
    listed = ", ".join(f"{'?' if size is None else f'{size:g}'}: {accuracy:.1f}" for size, accuracy in known)
    return f" (PGD by step size, eps_iter: accuracy: {listed})"


def _bim_text(bim: dict | None, fgsm: dict) -> str:
    """BIM's accuracy beside a PGD row weaker than FGSM: PGD without its random start, from the image
    itself. Within FGSM's interval, the gradient at the images leads as far as FGSM's one step, and
    what fell short is PGD's random starts (`bench/masking_check.py` counts the starts whose input
    gradient is exactly zero, where sign steps never move)."""
    if bim is None:
        return ""
    verdict = "within" if bim["accuracy"] <= fgsm["ci95"][1] else "above"
    return f"; BIM (PGD from the image, no random start) {bim['accuracy']:.1f}, {verdict} FGSM's interval"


def _no_masking(floor: dict, rows: list[dict], curve: dict | None) -> tuple[str, bool | None]:
    column, found, checked = floor["column"], [], 0
    white: dict[tuple, dict] = {}  # the strongest row of each attack (several PGD step sizes, say)
    by_step: dict[tuple, list[tuple[Any, float]]] = {}  # each PGD row's step size and accuracy (PGD alone)
    for row in rows:
        if row["setting"] == "white-box" and row["attack"] in ("fgsm", "pgd", "bim") and column in row["defended"]:
            key, cell = (row["classifier"], row["attack"], row["params"].get("eps")), row["defended"][column]
            if key not in white or cell["accuracy"] < white[key]["accuracy"]:
                white[key] = cell
            if row["attack"] == "pgd":
                by_step.setdefault(key, []).append((row["params"].get("eps_iter"), cell["accuracy"]))
    for (classifier, attack, eps), pgd in sorted(white.items(), key=str):
        fgsm = white.get((classifier, "fgsm", eps))
        if attack != "pgd" or fgsm is None:
            continue
        checked += 1
        if pgd["accuracy"] > fgsm["ci95"][1]:
            bim = _bim_text(white.get((classifier, "bim", eps)), fgsm)
            found.append(
                f"PGD {pgd['accuracy']:.1f} > FGSM {_cell_text(fgsm)} on {classifier} at eps {eps:g}"
                f"{_steps_text(by_step[(classifier, attack, eps)])}{bim}"
            )
    adaptive: dict[tuple[str, float], dict] = {}
    for row in rows:
        if row["setting"] == "end-to-end" and row["attack"] == "pgd" and column in row["defended"]:
            key = (row["classifier"], row["params"]["eps"])
            cell = row["defended"][column]
            if key not in adaptive or cell["accuracy"] < adaptive[key]["accuracy"]:
                adaptive[key] = cell
    for (classifier, eps), cell in sorted(adaptive.items()):
        larger = [(e, c) for (name, e), c in adaptive.items() if name == classifier and e > eps]
        for other_eps, other in larger:
            checked += 1
            if _rises(cell, other):
                found.append(
                    f"end-to-end PGD {other['accuracy']:.1f} at eps {other_eps:g} > {_cell_text(cell)} at eps {eps:g} "
                    f"on {classifier}"
                )
    if curve is not None and column in curve.get("accuracy", {}) and curve.get("n"):
        values, n = curve["accuracy"][column], int(curve["n"])
        for (eps, value), (next_eps, next_value) in zip(zip(curve["eps"], values), zip(curve["eps"][1:], values[1:])):
            checked += 1
            smaller = Accuracy(round(value * n / 100), n).to_dict()
            if next_value > smaller["ci95"][1]:
                found.append(
                    f"FGSM on {curve['classifier']}: {next_value:.1f} at eps {next_eps:g} > {_cell_text(smaller)} "
                    f"at eps {eps:g}"
                )
    if not checked:
        return "not measured (no PGD beside FGSM, no rows at two eps)", None
    if found:
        return "masking: " + "; ".join(found), False
    return f"no sign of masking in {checked} comparisons (PGD against FGSM, accuracy against eps)", True


def describe(floor: dict) -> str:
    """The floor in words."""
    if floor["kind"] == "clean":
        return f"`{floor['column']}` clean accuracy with classifier {floor['classifier']} >= {floor['at_least']:g}%"
    if floor["kind"] == "robust":
        return (
            f"`{floor['column']}` on classifier {floor['classifier']} under PGD (2 restarts) at eps {floor['eps']:g} "
            f">= {floor['at_least']:g}%"
        )
    return f"`{floor['column']}` masks no gradients: PGD no weaker than FGSM, accuracy not rising with eps"


def check_floors(floors: tuple[dict, ...], rows: list[dict], curve: dict | None = None) -> list[dict]:
    """Each floor with what the rows measure: {"floor", "text", "met"} (met None: not measured).

    `curve` is the accuracy-vs-eps figure's data (`accuracy_vs_eps.json`), or None.
    """
    results = []
    for floor in floors:
        check_floor(floor)
        if floor["kind"] == "clean":
            text, met = _clean(floor, rows)
        elif floor["kind"] == "robust":
            text, met = _robust(floor, rows)
        else:
            text, met = _no_masking(floor, rows, curve)
        results.append({"floor": floor, "text": text, "met": met})
    return results


def floor_lines(floors: tuple[dict, ...], rows: list[dict], curve: dict | None = None) -> list[str]:
    """The page's section: every floor of the study, measured by its own rows, met or missed."""
    if not floors:
        return []
    results = check_floors(floors, rows, curve)
    verdicts = {**VERDICTS, False: f"**{VERDICTS[False]}**"}
    lines = [
        "## Floors",
        "",
        "What the study's baselines must reach to be a fair comparison (`floors` in the settings), read from",
        "this page's own rows. A missed floor stays in the table; the training curves and the settings above",
        "show what was trained.",
        "",
        "| floor | measured (95% interval) | verdict |",
        "|---|---|---|",
    ]
    lines += [f"| {describe(result['floor'])} | {result['text']} | {verdicts[result['met']]} |" for result in results]
    return [*lines, ""]
