"""Where a server process spends its time: py-spy samples, summed per thread and per stage.

py-spy (PyPI) samples a running process from outside, so the server runs unchanged. It is found
on PATH or installed once into `~/.cache/lqvae-bench/py-spy` with pip (not into the project's
venv: it is a tool of this benchmark only).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter

_HOME = os.path.join(os.path.expanduser("~"), ".cache", "lqvae-bench", "py-spy")

# Stage -> frames (function name and file) whose samples count for it, first match wins, in
# the event-loop thread; read off the server's code (lqvae_tf/serving).
STAGES = (
    ("JSON parse of the body (orjson)", ("decode_json rest_format.py",)),
    ("nested lists to a numpy array", ("parse_predict rest_format.py",)),
    ("JSON of the outputs (orjson)", ("_encode_predict server.py",)),
    ("batching hand-off (queue, futures)", ("submit batching.py", "wrap_future futures.py")),
    ("the rest of the request's Python (routing, checks, body read)", ("_predict server.py", "dispatch server.py")),
    ("HTTP protocol and ASGI (uvicorn, httptools, limits)", ("run_asgi httptools_impl.py", "data_received")),
)


def find_py_spy() -> str:
    """The path of `py-spy`, installed into a cache folder with pip where it is missing."""
    found = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.join(_HOME, "bin"))
    if found:
        return found
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", _HOME, "py-spy"], check=True)
    found = shutil.which("py-spy", path=os.path.join(_HOME, "bin"))
    if not found:
        raise SystemExit("py-spy is needed for the profile: `pip install py-spy`")
    return found


def _key(frame: str) -> str:
    name, _, where = frame.partition(" (")
    return f"{name} {where.rsplit('/', 1)[-1].split(':')[0]}"


def record(pid: int, seconds: int, rate: int = 200) -> dict[str, Counter]:
    """Samples `pid` for `seconds`; thread name -> Counter of stage -> samples (with "all")."""
    with tempfile.TemporaryDirectory() as folder:
        raw = os.path.join(folder, "profile.txt")
        command = [find_py_spy(), "record", "-p", str(pid), "-d", str(seconds), "-r", str(rate), "-f", "raw"]
        command += ["-o", raw, "--threads", "--idle", "--nonblocking"]
        subprocess.run(command, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": _HOME})
        with open(raw, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    threads: dict[str, Counter] = {}
    for line in lines:
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = frames[0].split(": ", 1)[-1].split("-")[0]  # "MainThread", "batch", "poll", ...
        tally = threads.setdefault(thread, Counter())
        tally["all"] += int(count)
        keys = [_key(f) for f in frames[1:]]
        if thread == "batch":
            stage = "inside TensorFlow (the model)" if any(k.startswith("quick_execute ") for k in keys) else "other"
        else:
            stage = next(
                (name for name, marks in STAGES if any(k.startswith(m) or m in k for k in keys for m in marks)),
                "waiting for the network (epoll) and the rest of the event loop",
            )
        tally[stage] += int(count)
    return threads
