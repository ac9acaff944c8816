"""The commit a page states is the checkout's, marked where the code differs from it."""

from __future__ import annotations

import subprocess

from lqvae_tf import provenance


def _git(folder, *args: str) -> str:
    command = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args]
    return subprocess.run(command, cwd=folder, check=True, capture_output=True, text=True).stdout.strip()


def test_code_version_is_the_short_commit_marked_when_tracked_files_changed(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "_PACKAGE_DIR", str(tmp_path))
    assert "not a git checkout" in provenance.code_version()

    _git(tmp_path, "init", "-q")
    (tmp_path / "module.py").write_text("x = 1\n")
    _git(tmp_path, "add", "module.py")
    _git(tmp_path, "commit", "-q", "-m", "first")
    commit = _git(tmp_path, "rev-parse", "--short", "HEAD")
    assert provenance.code_version() == commit

    (tmp_path / "untracked.txt").write_text("a run folder's file\n")  # not code: no mark
    assert provenance.code_version() == commit
    (tmp_path / "module.py").write_text("x = 2\n")
    assert provenance.code_version() == f"{commit}+changes"
