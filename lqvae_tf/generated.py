"""Pages a command writes: the first-line marker that names the command and says not to edit.

Measurements live only in such pages, or in a block a command writes inside a hand-written page
(`block` / `replace_block`: the README's measured `make run`); hand-written prose links to them
(the docs test, `tests/test_docs_numbers.py`, skips marked pages and blocks and refuses measured
numbers in the rest).
"""

from __future__ import annotations

import re

MARKER_PREFIX = "<!-- written by "
MARKER_SUFFIX = "; do not edit -->"


def marker(writer: str) -> str:
    """The first line of a page written by `writer` (a command, e.g. "`lqvae frontier`")."""
    return f"{MARKER_PREFIX}{writer}{MARKER_SUFFIX}"


def without_marker(text: str) -> str:
    """A page's text without its writer's marker, for a writer that embeds another's page."""
    return text.split("\n", 1)[1] if is_generated(text) and "\n" in text else text


def is_generated(text: str) -> bool:
    """Whether a page's first line is a writer's marker."""
    first = text.split("\n", 1)[0]
    return first.startswith(MARKER_PREFIX) and first.endswith(MARKER_SUFFIX)


BLOCK_START = "<!-- begin: written by "
BLOCK_END = "<!-- end: written by {writer} -->"


def block(writer: str, body: str) -> str:
    """`body` between the start and end lines that say `writer` wrote it (one block per writer and page)."""
    return f"{BLOCK_START}{writer}{MARKER_SUFFIX}\n{body.strip()}\n{BLOCK_END.format(writer=writer)}"


def _block_pattern(writer: str) -> str:
    return re.escape(f"{BLOCK_START}{writer}{MARKER_SUFFIX}") + r".*?" + re.escape(BLOCK_END.format(writer=writer))


def replace_block(text: str, writer: str, body: str) -> str:
    """`text` with `writer`'s block holding `body` now.

    Raises:
        ValueError: the page has no block of `writer` (a writer never adds one where the page
            does not say it belongs).
    """
    pattern = _block_pattern(writer)
    if not re.search(pattern, text, flags=re.S):
        raise ValueError(f"the page has no block written by {writer}; add its start and end lines first")
    return re.sub(pattern, lambda _: block(writer, body), text, count=1, flags=re.S)


def without_blocks(text: str) -> str:
    """`text` with every written block removed: the hand-written rest."""
    return re.sub(
        re.escape(BLOCK_START) + r"(.*?)" + re.escape(MARKER_SUFFIX) + r".*?<!-- end: written by \1 -->",
        "",
        text,
        flags=re.S,
    )
