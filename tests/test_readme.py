"""The README's commands and snippets run as written (issue 29): a front page that cannot go stale."""

from __future__ import annotations

import pathlib
import re
import shlex
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)


def _commands() -> list[str]:
    lines = (line.split("#")[0].strip() for lang, body in BLOCKS if lang == "bash" for line in body.splitlines())
    return [line for line in lines if line]


def test_readme_is_a_front_page():
    assert len(README.splitlines()) <= 200


def test_make_targets_named_in_readme_exist():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("run", "test"):
        assert f"make {target}" in _commands()
        assert re.search(rf"^{target}:", makefile, flags=re.M), target


@pytest.mark.parametrize("command", [c for c in _commands() if c.endswith("--help")])
def test_readme_help_commands_run(command):
    argv = shlex.split(command)
    if argv[0] == "lqvae":
        argv = [sys.executable, "-m", "lqvae_tf.cli.main", *argv[1:]]
    else:
        argv = [sys.executable, *argv[1:]]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage" in result.stdout.lower()


@pytest.mark.parametrize("index", [i for i, (lang, _) in enumerate(BLOCKS) if lang == "python"])
def test_readme_python_snippets_run(index):
    code = BLOCKS[index][1]
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
