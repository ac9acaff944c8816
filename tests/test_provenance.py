"""The commit a page states is the checkout's, marked where the code differs from it."""

from __future__ import annotations

import subprocess

from lqvae_tf import provenance


def _git(folder, *args: str) -> str:
    command = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args]
    return subprocess.run(command, cwd=folder, check=True, capture_output=True, text=True).stdout.strip()


def test_code_version_is_the_short_commit_marked_when_the_package_changed(tmp_path, monkeypatch):
    package = tmp_path / "package"
    package.mkdir()
    monkeypatch.setattr(provenance, "_PACKAGE_DIR", str(package))
    assert "not a git checkout" in provenance.code_version()

    _git(tmp_path, "init", "-q")
    (package / "module.py").write_text("x = 1\n")
    (tmp_path / "page.md").write_text("a table\n")
    _git(tmp_path, "add", "package/module.py", "page.md")
    _git(tmp_path, "commit", "-q", "-m", "first")
    commit = _git(tmp_path, "rev-parse", "--short", "HEAD")
    assert provenance.code_version() == commit

    (package / "untracked.txt").write_text("a run folder's file\n")  # not code: no mark
    (tmp_path / "page.md").write_text("a table the run rewrote\n")  # its output, outside the package
    assert provenance.code_version() == commit
    (package / "module.py").write_text("x = 2\n")
    assert provenance.code_version() == f"{commit}+changes"
