#!/usr/bin/env bash
# Creates .venv from requirements.lock with Python 3.10 and installs lqvae-tf into it (editable).
# Does nothing when the venv already matches the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.lock-sha256
want=$(cat requirements.lock setup.py | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/python ]; then
  exit 0
fi
python=$(scripts/find_python.sh)
echo "creating .venv with $python from requirements.lock (about 3 GB) ..."
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check uv==0.13.9
.venv/bin/uv pip sync -q --python .venv/bin/python requirements.lock
.venv/bin/uv pip install -q --python .venv/bin/python --no-deps -e .
echo "$want" > "$stamp"
