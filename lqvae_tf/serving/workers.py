"""Several server processes on one port (`lqvae serve --workers N`), each with its own model copy.

Why: one Python process answers REST requests on one event loop and runs the model in batch
threads, all under one interpreter lock; on a small CPU the HTTP/JSON work and the model calls
then take turns instead of overlapping. N processes, each binding the port with `SO_REUSEPORT`
(the kernel spreads connections across them), overlap them; bench/RESULTS.md has the measured
effect. The supervisor here only starts, watches and stops the workers; it loads no model.

Each worker is a whole server: it loads and polls the model folder itself, so during a version
change workers may answer from different versions for up to one poll interval, and the limits
(`--max_connections`, batching queues) are per worker.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

WORKER_FLAG = "--reuse_port"  # what a worker is started with, instead of --workers


def check_workers(workers: int, port: int) -> None:
    """Refuses a number of workers below 1, and several workers without a fixed port or SO_REUSEPORT."""
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if workers > 1 and port == 0:
        raise ValueError("--workers above 1 needs a fixed --rest_api_port (port 0 would differ per worker)")
    if workers > 1 and not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("--workers above 1 needs SO_REUSEPORT, which this platform lacks")


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) with SO_REUSEPORT, so other workers can bind the same port.

    Raises:
        ValueError: port 0 (each worker would get its own random port) or a platform without
            SO_REUSEPORT (`check_workers`).
        OSError: the address cannot be bound (in use by another program, say).
    """
    check_workers(2, port)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def worker_command(argv: Sequence[str]) -> list[str]:
    """The command line of one worker: `lqvae serve ...` as given, `--workers N` replaced by `--reuse_port`."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--workers":
            skip = True
            continue
        if arg.startswith("--workers="):
            continue
        kept.append(arg)
    return [sys.executable, "-m", "lqvae_tf.cli.main", *kept, WORKER_FLAG]


def run_workers(command: Sequence[str], workers: int, poll_seconds: float = 0.2) -> int:
    """Starts `workers` copies of `command` and supervises them until one exits or a signal comes.

    SIGTERM and SIGINT are passed on to every worker. When a worker exits on its own (it could
    not load the model or bind the port, say), the others are stopped too and its exit code is
    returned, so a supervisor above (systemd, Kubernetes) sees the server fail as a whole.

    Returns:
        0 after a signal; else the first worker's exit code.
    """
    check_workers(workers, port=None)
    processes = [subprocess.Popen(list(command)) for _ in range(workers)]
    stopping = []

    def forward(signum, _frame):
        stopping.append(signum)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = None
        while code is None and not stopping:
            for process in processes:
                if process.poll() is not None:
                    code = process.returncode
                    break
            else:
                time.sleep(poll_seconds)
        for process in processes:  # one worker failed: stop the rest
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return 0 if stopping else code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
