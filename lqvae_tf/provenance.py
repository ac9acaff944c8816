"""Which code made a result: the git commit of the checkout the package runs from.

Pages and bench files that carry measured numbers state the commit beside their date, so that a
reader can check out the exact code and run the command again.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, cwd=_PACKAGE_DIR, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def code_version() -> str:
    """The short commit of the checkout this package runs from, with "+changes" where the package's
    tracked files differ from it (the result then comes from code no commit holds); the package version where the
    package is not in a git checkout (an installed wheel)."""
    commit = _git("rev-parse", "--short", "HEAD")
    if not commit:
        try:
            version = importlib.metadata.version("lqvae-tf")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown version"
        return f"lqvae-tf {version} (not a git checkout)"
    # Only the package's own files count ("." is its folder): a study writes its tables and
    # figures, tracked under docs/, before the page that states this commit, and its own output
    # is not code that no commit holds.
    changed = _git("status", "--porcelain", "--untracked-files=no", "--", ".")
    return f"{commit}+changes" if changed else commit
