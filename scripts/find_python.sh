#!/usr/bin/env bash
# Prints the path of a Python 3.10 interpreter (TFX 1.16 needs Python < 3.11), or explains how to get one.
set -euo pipefail
candidates=()
command -v python3.10 >/dev/null 2>&1 && candidates+=("$(command -v python3.10)")
pyenv_root=$( (command -v pyenv >/dev/null 2>&1 && pyenv root) || echo "${PYENV_ROOT:-$HOME/.pyenv}")
for found in "$pyenv_root"/versions/3.10.*/bin/python3.10; do
  [ -x "$found" ] && candidates+=("$found")
done
for python in "${candidates[@]}"; do
  if "$python" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then
    echo "$python"
    exit 0
  fi
done
cat >&2 <<'MSG'
error: Python 3.10 was not found (on PATH as python3.10, or in pyenv's versions folder).
lqvae-tf pins TFX 1.16, whose wheels need Python 3.10. Install it with one of:
  pyenv install 3.10          (then re-run make)
  apt-get install python3.10 python3.10-venv
MSG
exit 1
