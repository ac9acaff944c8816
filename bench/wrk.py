"""Driving `wrk` (Debian's package) from a benchmark: find or install it, run it, read its summary.

wrk is a C load generator: its cost per request is a small fraction of the server's, so on a
2-core machine it measures the server rather than itself (unlike a Python client). Its Lua
`done()` hook prints the summary as one JSON line, so nothing is scraped from its text report.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile

_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = io.open(os.getenv("WRK_BODY"), "rb")
wrk.body = file:read("*a")
file:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"non_2xx": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def find_wrk() -> str:
    """The path of `wrk`, installing Debian's package where it is missing and apt can run."""
    found = shutil.which("wrk")
    if found:
        return found
    if shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, stdout=subprocess.DEVNULL)
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is needed: `apt-get install wrk` (Debian's package) and run again")
    return found


def run_wrk(url: str, body: bytes, threads: int = 2, connections: int = 32, duration_s: int = 30) -> dict:
    """POSTs `body` to `url` from `connections` keep-alive connections for `duration_s` seconds.

    Returns wrk's summary: requests, duration_us, socket errors (connect, read, write, timeout),
    non_2xx answers, latency p50_us / p99_us / max_us, req_per_s, and cores (wrk's own CPU time
    over the run's duration).
    """
    with tempfile.TemporaryDirectory() as folder:
        script, body_file = os.path.join(folder, "post.lua"), os.path.join(folder, "body.json")
        with open(script, "w", encoding="ascii") as handle:
            handle.write(_SCRIPT)
        with open(body_file, "wb") as handle:
            handle.write(body)
        command = [find_wrk(), f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--timeout", "10s"]
        command += ["-s", script, url]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = subprocess.run(
            command, env={**os.environ, "WRK_BODY": body_file}, capture_output=True, text=True, check=True
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {result.stdout[-500:]} {result.stderr[-500:]}")
    summary = json.loads(line.removeprefix("WRK_JSON "))
    summary["req_per_s"] = summary["requests"] / (summary["duration_us"] / 1e6)
    cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    summary["cores"] = cpu_s / (summary["duration_us"] / 1e6)  # wrk's own CPU, in cores
    return summary
