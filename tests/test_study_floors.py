"""The baselines' floors, read from a study's own rows: met, missed or not measured."""

from __future__ import annotations

import pytest

from lqvae_tf.stats import Accuracy
from lqvae_tf.study import study_config
from lqvae_tf.study.floors import check_floors, floor_lines


def _cell(correct: int, n: int = 500) -> dict:
    return Accuracy(correct, n).to_dict()


def _row(setting: str, attack: str, classifier: str, eps: float, defended: dict[str, int], **params) -> dict:
    return {
        "setting": setting,
        "attack": attack,
        "params": {"eps": eps, **params},
        "classifier": classifier,
        "clean_defended": {"madry": _cell(492), "adv-tr": _cell(480)},
        "defended": {name: _cell(correct) for name, correct in defended.items()},
    }


def test_clean_and_robust_floors_read_the_rows_and_take_the_worst_pgd_row():
    rows = [
        _row("end-to-end", "pgd", "A", 0.3, {"madry": 440}, nb_iter=40),
        _row("end-to-end", "pgd", "A", 0.3, {"madry": 430}, nb_iter=80),  # the step-doubling check
        _row("end-to-end", "pgd", "A", 0.1, {"madry": 200}, nb_iter=40),  # another eps: not this floor
        _row("end-to-end", "square", "A", 0.3, {"madry": 10}),  # not PGD
    ]
    floors = (
        {"kind": "clean", "column": "madry", "classifier": "A", "at_least": 98.0},
        {"kind": "robust", "column": "madry", "classifier": "A", "eps": 0.3, "at_least": 85.0},
        {"kind": "robust", "column": "madry", "classifier": "A", "eps": 0.3, "at_least": 87.0},
        {"kind": "robust", "column": "madry", "classifier": "B", "eps": 0.3, "at_least": 85.0},
    )
    clean, robust, too_high, absent = check_floors(floors, rows)
    assert clean["met"] is True and clean["text"].startswith("98.40 [")
    assert robust["met"] is True and robust["text"].startswith("86.00 [")  # 430 of 500, the 80-step row
    assert "40 and 80 steps; the worst 80" in robust["text"]
    assert too_high["met"] is False and absent["met"] is None
    lines = floor_lines(floors, rows)
    assert lines[0] == "## Floors" and sum("**missed**" in line for line in lines) == 1
    assert sum(line.endswith("| not measured |") for line in lines) == 1


def test_masking_is_pgd_weaker_than_fgsm_or_accuracy_rising_with_eps():
    healthy = [
        _row("white-box", "fgsm", "A", 0.3, {"madry": 60}),
        _row("white-box", "pgd", "A", 0.3, {"madry": 40}),
        _row("end-to-end", "pgd", "A", 0.1, {"madry": 100}),
        _row("end-to-end", "pgd", "A", 0.3, {"madry": 30}),
    ]
    curve = {"classifier": "A", "eps": [0.05, 0.1], "n": 500, "accuracy": {"madry": [40.0, 20.0]}}
    (result,) = check_floors(({"kind": "no_masking", "column": "madry"},), healthy, curve)
    assert result["met"] is True and "3 comparisons" in result["text"]

    pgd_weaker = [*healthy[:1], _row("white-box", "pgd", "A", 0.3, {"madry": 200}), *healthy[2:]]
    (result,) = check_floors(({"kind": "no_masking", "column": "madry"},), pgd_weaker, curve)
    assert result["met"] is False and "PGD 40.0 > FGSM 12.00" in result["text"]
    assert "step size" not in result["text"]  # one PGD row: no step sizes to set beside each other

    # Two step sizes, both above FGSM: the miss says how accuracy moves with the step.
    steps = [
        *healthy[:1],
        _row("white-box", "pgd", "A", 0.3, {"madry": 200}, eps_iter=0.01),
        _row("white-box", "pgd", "A", 0.3, {"madry": 150}, eps_iter=0.075),
        *healthy[2:],
    ]
    (result,) = check_floors(({"kind": "no_masking", "column": "madry"},), steps, curve)
    assert result["met"] is False and "PGD 30.0 > FGSM 12.00" in result["text"]
    assert "(PGD by step size, eps_iter: accuracy: 0.01: 40.0, 0.075: 30.0)" in result["text"]

    # BIM beside them (PGD from the image): the miss says whether it reaches FGSM's interval.
    for correct, verdict in ((55, "within"), (100, "above")):
        with_bim = [*steps, _row("white-box", "bim", "A", 0.3, {"madry": correct}, eps_iter=0.075)]
        (result,) = check_floors(({"kind": "no_masking", "column": "madry"},), with_bim, curve)
        assert result["met"] is False  # BIM explains a miss; it does not undo it
        expected = f"; BIM (PGD from the image, no random start) {correct / 5:.1f}, {verdict} FGSM's interval"
        assert expected in result["text"]

    # A second PGD row (another step size) that reaches FGSM: the strongest PGD row is the one compared.
    stronger = [*pgd_weaker, _row("white-box", "pgd", "A", 0.3, {"madry": 50}, eps_iter=0.075)]
    assert check_floors(({"kind": "no_masking", "column": "madry"},), stronger, curve)[0]["met"] is True

    rising = {**curve, "accuracy": {"madry": [20.0, 40.0]}}
    (result,) = check_floors(({"kind": "no_masking", "column": "madry"},), healthy, rising)
    assert result["met"] is False and "FGSM on A: 40.0 at eps 0.1 > 20.00" in result["text"]
    # Within the smaller eps' interval is no rise: 21% against 20% [16.7, 23.7] on 500 images.
    within = {**curve, "accuracy": {"madry": [20.0, 21.0]}}
    assert check_floors(({"kind": "no_masking", "column": "madry"},), healthy, within)[0]["met"] is True


@pytest.mark.parametrize(
    "floor, message",
    [
        ({"kind": "faster"}, "kind is one of"),
        ({"kind": "clean", "column": "madry", "classifier": "A"}, "needs exactly"),
        ({"kind": "clean", "column": "madry", "classifier": "A", "at_least": 120}, "percentage"),
        ({"kind": "clean", "column": "madry", "classifier": "Z", "at_least": 90}, "not one of"),
    ],
)
def test_a_study_refuses_a_floor_it_could_not_check(floor, message):
    with pytest.raises(ValueError, match=message):
        study_config("mnist").replace(floors=(floor,))


def test_the_full_studies_carry_the_issue_27_floors():
    mnist, fashion, celeb_a = (study_config(name).floors for name in ("mnist", "fashion_mnist", "celeb_a"))
    assert {"kind": "robust", "column": "madry", "classifier": "A", "eps": 0.3, "at_least": 85.0} in mnist
    assert {(f["classifier"], f["at_least"]) for f in mnist if f["kind"] == "clean"} == {
        ("A", 98.0),
        ("B", 97.0),
        ("C", 97.0),
    }
    assert {"kind": "robust", "column": "madry", "classifier": "A", "eps": 0.1, "at_least": 70.0} in fashion
    assert {f["column"] for f in celeb_a if f["kind"] == "no_masking"} == {"madry", "adv-tr"}


def test_the_index_counts_each_studys_floors_from_its_page_data(tmp_path):
    import json

    from lqvae_tf.study.index import write_index

    row = _row("end-to-end", "pgd", "A", 0.3, {"madry": 440}, nb_iter=40)
    row.update(source="A", no_attack=_cell(495), no_defense=_cell(0))
    floors = [
        {"kind": "clean", "column": "madry", "classifier": "A", "at_least": 98.0},
        {"kind": "robust", "column": "madry", "classifier": "A", "eps": 0.3, "at_least": 90.0},
        {"kind": "robust", "column": "madry", "classifier": "B", "eps": 0.3, "at_least": 85.0},
    ]
    folder = tmp_path / "results" / "mnist"
    folder.mkdir(parents=True)
    meta = {"date": "2026-12-06", "n": 500, "study": {"floors": floors}}
    (folder / "results.json").write_text(json.dumps({"meta": meta, "rows": [row]}))
    text = open(write_index(str(tmp_path)), encoding="utf-8").read()
    assert "Floors of the baselines (the page's Floors section): 1 met, 1 missed, 1 not measured of 3." in text
