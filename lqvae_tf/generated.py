"""Pages a command writes: the first-line marker that names the command and says not to edit.

Measurements live only in such pages; hand-written prose links to them (the docs test,
`tests/test_docs_numbers.py`, skips marked pages and refuses measured numbers in the rest).
"""

from __future__ import annotations

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
