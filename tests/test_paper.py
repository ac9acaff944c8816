"""The paper's numbers as transcribed: each table's averages equal the paper's own average rows."""

from __future__ import annotations

import numpy as np
import pytest

from lqvae_tf.evaluation.paper import COLUMNS, reference


@pytest.mark.parametrize(
    "dataset, setting, averages",
    [
        ("mnist", "white-box", (99.06, 13.65, 93.76, 91.54, 74.83, 24.76)),
        ("celeb_a", "white-box", (95.99, 7.37, 74.01, 72.40, 65.32, 20.32)),
        ("fashion_mnist", "black-box", (91.00, 50.72, 79.65, 76.07, 70.17, 64.66)),
        ("celeb_a", "black-box", (95.99, 57.50, 83.81, 83.56, 81.45, 75.69)),
    ],
)
def test_transcribed_tables_average_to_the_papers_average_rows(dataset, setting, averages):
    rows = [values for key, values in reference(dataset).items() if key[1] and key[0] == setting]
    assert rows
    for column, expected in zip(COLUMNS, averages):
        assert np.mean([row[column] for row in rows]) == pytest.approx(expected, abs=0.01), column


def test_bpda_end_to_end_numbers_sit_beside_the_authors_setting_only():
    table = reference("fashion_mnist")
    assert table[("end-to-end", "authors_fgsm", "B")] == {"lq-vae": 57.41, "defense-gan": 39.41}
    assert ("end-to-end", "pgd", "B") not in table  # our adaptive rows are not the paper's attack
    assert reference("cifar10") == {}
