"""The frontiers' index (`docs/frontier/README.md`) is written by `lqvae frontier`, never by hand."""

from __future__ import annotations

import json
import pathlib
import shutil

from lqvae_tf.evaluation.frontier import FrontierAttacks, write_frontier
from lqvae_tf.evaluation.frontier_index import index_markdown, write_index
from lqvae_tf.generated import is_generated

ROOT = pathlib.Path(__file__).resolve().parents[1]
FRONTIERS = ROOT / "docs" / "frontier"


def _rows(name: str) -> list[dict]:
    return json.loads((FRONTIERS / name / "frontier.json").read_text())["rows"]


def test_committed_index_is_what_the_frontiers_json_rebuild():
    assert (FRONTIERS / "README.md").read_text() == index_markdown(str(FRONTIERS))


def test_every_committed_frontier_page_carries_the_writers_marker():
    pages = sorted(FRONTIERS.glob("*/frontier.md"))
    assert pages and all(is_generated(page.read_text()) for page in pages)


def test_writing_a_frontier_marks_its_page_and_rebuilds_the_index_beside_it(tmp_path):
    shutil.copytree(FRONTIERS / "fashion_mnist_default_B", tmp_path / "default_B")
    rows = _rows("fashion_mnist_finetune")
    out = str(tmp_path / "finetune")
    write_frontier(rows, out, "fashion_mnist", "A.keras", FrontierAttacks(n=500), None, command="lqvae frontier")
    assert is_generated((tmp_path / "finetune" / "frontier.md").read_text())
    index = (tmp_path / "README.md").read_text()
    assert is_generated(index)
    assert "[finetune](finetune/frontier.md)" in index and "[default_B](default_B/frontier.md)" in index
    best = max(rows, key=lambda row: row["measured"]["adaptive"]["accuracy"])
    assert f"`{best['key']}`: {best['measured']['adaptive']['accuracy']:.1f}" in index


def test_a_hand_written_readme_beside_the_frontiers_is_left_alone(tmp_path):
    shutil.copytree(FRONTIERS / "fashion_mnist_default_B", tmp_path / "default_B")
    (tmp_path / "README.md").write_text("# My notes\n")
    assert write_index(str(tmp_path)) is None
    assert (tmp_path / "README.md").read_text() == "# My notes\n"
