"""No measured number in a hand-written page (issue 29): prose links to the page its command writes.

Every Markdown page of the repository either starts with a writer's marker
(`lqvae_tf.generated.marker`: written by a command, do not edit) or carries no measurement:
no accuracy, time, ratio, size, throughput or interval. Settings (eps 0.1, PGD-40, batch 64,
Python 3.10) are not measurements and may stay.
"""

from __future__ import annotations

import pathlib
import re

import pytest

from lqvae_tf.generated import block, is_generated, marker, replace_block, without_blocks

ROOT = pathlib.Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {"runs", "build", "node_modules", "__pycache__"}

NUMBER = r"(?<![\w.])\d[\d,]*(?:\.\d+)?"
MEASUREMENTS = {
    "percentage": rf"{NUMBER}\s?%",
    "duration": rf"{NUMBER}\s?(?:ms|s|sec|seconds?|min|minutes?|h|hours?)\b",
    "throughput": rf"{NUMBER}\s?(?:req|img|images?|steps?|examples?)/s\b",
    "size": rf"{NUMBER}\s?(?:[KMG]i?B)\b",
    "points": rf"{NUMBER}\s?points?\b",
    "ratio": rf"{NUMBER}x(?![\w])",
    "plus-minus": r"±",
    "interval": r"\[\d+\.\d+, \d+\.\d+\]",
}
# Settings that the patterns above would read as measurements.
ALLOWED = (
    r"95% (?:Wilson |confidence )?intervals?",  # the confidence level every interval is taken at
    r"the first 20% of it",  # the seeded test split of a folder of images
    r"(?:>=|thresholds) \d+%",  # the robustness gate's thresholds
    r"\| 64 MiB \|",  # the REST server's default --max_body_bytes
)


def _pages() -> list[pathlib.Path]:
    return sorted(
        path
        for path in ROOT.rglob("*.md")
        if not any(part.startswith(".") or part in SKIPPED_DIRS for part in path.relative_to(ROOT).parts)
    )


def measured_numbers(text: str) -> list[str]:
    """The measurements in a page's text, each as `kind: the match in its context`."""
    for allowed in ALLOWED:
        text = re.sub(allowed, "", text)
    found = []
    for kind, pattern in MEASUREMENTS.items():
        for match in re.finditer(pattern, text):
            context = text[max(0, match.start() - 30) : match.end() + 10].replace("\n", " ")
            found.append(f"{kind}: ...{context}...")
    return found


def test_the_walk_finds_the_hand_written_pages():
    names = {path.relative_to(ROOT).as_posix() for path in _pages()}
    assert {"README.md", "docs/GUIDE.md", "docs/ARCHITECTURE.md", "pipelines/README.md"} <= names


@pytest.mark.parametrize(
    "text",
    [
        "keeps 84.8% clean",
        "trained in 309 s",
        "13 min 5 s in all",
        "about 3.5x fewer images",
        "7.1 MB each",
        "costs 6.4 points",
        "120 req/s",
        "84.8 ± 1.2",
        "84.8% [82.4, 86.9]",
    ],
)
def test_a_measurement_is_found(text):
    assert measured_numbers(text)


@pytest.mark.parametrize(
    "text",
    [
        "PGD-40 at eps 0.1, 40 steps of 0.01",
        "batch 64, learning rate 1e-3, 10 epochs",
        "64x64x3 faces, pixels in [0, 1] or [-1, 1]",
        "Python 3.10, TFX 1.16.0",
        "every cell with its 95% interval",
    ],
)
def test_a_setting_is_not_a_measurement(text):
    assert not measured_numbers(text)


def test_a_written_block_inside_a_hand_written_page_is_skipped_and_rewritten_in_place():
    page = "# Front page\n\nIt runs:\n\n" + block("`bench/x.py`", "old") + "\n\nMore prose.\n"
    updated = replace_block(page, "`bench/x.py`", "took 12 min on 2026-12-04")
    assert updated.startswith("# Front page") and updated.endswith("More prose.\n") and "old" not in updated
    assert measured_numbers(updated) and not measured_numbers(without_blocks(updated))
    assert replace_block(updated, "`bench/x.py`", "took 11 min").count("begin: written by") == 1
    with pytest.raises(ValueError, match="no block written by `other`"):
        replace_block(page, "`other`", "3 min")
    assert measured_numbers(without_blocks(page + "\nand 5 min by hand\n"))  # prose outside a block still counts


def test_a_marked_page_is_generated():
    assert is_generated(marker("`lqvae frontier`") + "\n# Purifier frontier\n\n84.8%\n")
    assert not is_generated("# A page\n\n" + marker("`lqvae frontier`") + "\n")


@pytest.mark.parametrize("page", _pages(), ids=lambda path: path.relative_to(ROOT).as_posix())
def test_hand_written_pages_carry_no_measured_number(page):
    text = page.read_text(encoding="utf-8")
    if is_generated(text):
        return
    assert measured_numbers(without_blocks(text)) == [], (
        f"{page.relative_to(ROOT)}: link to the page the measuring command writes instead of copying its numbers"
    )


def test_a_bench_table_is_appended_under_the_writers_marker(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("results_table", ROOT / "bench" / "results_table.py")
    results_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results_table)
    path = tmp_path / "RESULTS.md"
    for title in ("first", "second"):
        results_table.append_table(title, "steps=1", ["what", "ms"], ["| step | 1.0 |"], path=str(path))
    text = path.read_text()
    assert is_generated(text) and text.count("<!--") == 1
    assert text.index("### first") < text.index("### second")
