"""The page's section on paper averages missed by more than 10 points, from the study's own rows."""

from __future__ import annotations

from lqvae_tf.study.config import PAPER_COLUMN
from lqvae_tf.study.gaps import GAP_POINTS, gap_lines, misses


def _cell(accuracy: float) -> dict:
    return {"accuracy": accuracy, "ci95": [accuracy - 1, accuracy + 1], "correct": 0, "n": 100}


def _row(attack: str, classifier: str, defended: dict[str, float], setting: str = "white-box", **extra) -> dict:
    return {
        "setting": setting,
        "attack": attack,
        "params": {"eps": 0.3},
        "classifier": classifier,
        "source": classifier,
        "n": 100,
        "no_attack": _cell(99.0),
        "no_defense": _cell(2.0),
        "clean_defended": {name: _cell(97.0) for name in defended},
        "defended": {name: _cell(value) for name, value in defended.items()},
        "distortion": {"mean_l2": 9.0, "mean_linf": 0.98},
        **extra,
    }


def test_a_miss_is_named_with_its_rows_largest_gap_first_and_what_they_measure():
    # The paper's MNIST white-box lq-vae: FGSM on A 89.17, on B 86.70; defense-gan 90.43 and 88.52.
    rows = [
        _row("fgsm", "A", {"lq-vae": 85.0, "defense-gan": 89.0, PAPER_COLUMN: 88.0}, bit_flips={"lq-vae": 31.5}),
        _row("fgsm", "B", {"lq-vae": 50.0, "defense-gan": 85.0, PAPER_COLUMN: 84.0}, bit_flips={"lq-vae": 40.0}),
        # Adaptive rows: the paper has none, and they never count.
        _row("pgd", "A", {"lq-vae": 0.0}, setting="end-to-end"),
    ]
    found = misses("mnist", rows)
    assert [(miss["group"], miss["column"]) for miss in found] == [("white-box attacks on the classifier", "lq-vae")]
    (miss,) = found
    assert miss["ours"] == 67.5 and round(miss["paper"], 3) == round((89.17 + 86.70) / 2, 3)
    assert [row["classifier"] for row, _ in miss["rows"]] == ["B", "A"]  # largest gap first

    text = "\n".join(gap_lines("mnist", rows))
    assert "### lq-vae, white-box attacks on the classifier: 67.50 against the paper's 87.94" in text
    assert "keeps 97.0% of these rows' images, the classifier alone 99.0%: 2.0 points lost" in text
    assert "ours leaves 2.0%, the paper's left 16.7%: ours is 14.7 points stronger" in text
    assert f"The authors' purifier (`{PAPER_COLUMN}`" in text and "86.0% against our purifier's 67.5%" in text
    table = [line for line in text.splitlines() if line.startswith("| fgsm |")]
    assert table[0].startswith("| fgsm | B | 50.0 | 86.7 | 36.7 | 97.0 | 2.0 / 13.2 | 9.00 / 0.98 | 40.0 | 84.0 |")
    assert table[1].startswith("| fgsm | A | 85.0 | 89.2 | 4.2 |")


def test_no_section_entry_where_every_average_is_within_the_margin():
    rows = [_row("fgsm", "A", {"lq-vae": 89.17 - GAP_POINTS + 0.01, "defense-gan": 90.0})]
    assert misses("mnist", rows) == []
    assert "No paper average is missed by more than 10 points." in gap_lines("mnist", rows)
