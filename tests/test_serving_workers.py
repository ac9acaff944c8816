"""`lqvae serve --workers N`: server processes sharing one port, supervised as one server."""

import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import requests

from lqvae_tf import LQVAE
from lqvae_tf.cli.main import main
from lqvae_tf.serving import RestClient, export_purifier
from lqvae_tf.serving.workers import WORKER_FLAG, reuse_port_socket, worker_command

from conftest import tiny_config


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as handle:
        return {int(child) for child in handle.read().split()}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_workers_command_line_is_the_servers_with_reuse_port_instead_of_workers():
    for argv in (
        ["serve", "--model_base_path", "m", "--workers", "3", "--port", "9"],
        ["serve", "--model_base_path", "m", "--workers=3", "--port", "9"],
    ):
        command = worker_command(argv)
        assert command[:3] == [sys.executable, "-m", "lqvae_tf.cli.main"]
        assert command[3:] == ["serve", "--model_base_path", "m", "--port", "9", WORKER_FLAG]


def test_two_reuse_port_sockets_share_a_port_and_port_zero_is_refused():
    port = _free_port()
    first, second = reuse_port_socket("127.0.0.1", port), reuse_port_socket("127.0.0.1", port)
    try:
        assert first.getsockname()[1] == second.getsockname()[1] == port
    finally:
        first.close()
        second.close()
    with pytest.raises(ValueError, match="needs a fixed --rest_api_port"):
        reuse_port_socket("127.0.0.1", 0)


@pytest.mark.parametrize(
    "flags, message",
    [(["--workers", "0"], "--workers must be at least 1, got 0"), (["--workers", "2", "--port", "0"], "fixed")],
)
def test_impossible_workers_settings_are_refused_by_name(tmp_path, capsys, flags, message):
    assert main(["serve", "--model_base_path", str(tmp_path), *flags]) == 2
    assert message in capsys.readouterr().err


def _serve(base, port, *extra) -> subprocess.Popen:
    command = [sys.executable, "-m", "lqvae_tf.cli.main", "serve", "--model_base_path", str(base)]
    command += ["--port", str(port), "--workers", "2", *extra]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})


def test_two_workers_serve_one_port_and_stop_together(tmp_path, fmnist_images):
    keras.utils.set_random_seed(3)
    purifier = LQVAE(tiny_config())
    export_purifier(purifier, str(tmp_path), "lqvae", warmup=False)
    port = _free_port()
    supervisor = _serve(tmp_path / "lqvae", port)
    try:
        deadline = time.monotonic() + 180
        while True:  # both workers bound the port and load the model on their own
            workers = _children(supervisor.pid)
            listening = [pid for pid in workers if f":{port:04X} " in _listen_table(pid)]
            if len(workers) == 2 and len(listening) == 2:
                break
            assert supervisor.poll() is None and time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.5)
        # Fresh connections are spread over the workers by the kernel; each answers as one server.
        expected = purifier.purify(fmnist_images[:2])
        for _ in range(8):
            client = RestClient(f"http://127.0.0.1:{port}", "lqvae", timeout_s=30)
            np.testing.assert_allclose(client.predict(fmnist_images[:2]), expected, atol=1e-5)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0
        assert not any(_alive(pid) for pid in workers)  # no worker outlives its supervisor
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/v1/models/lqvae", timeout=5)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()


def _listen_table(pid: int) -> str:
    """The TCP sockets this process holds in LISTEN state, as /proc/net/tcp rows of its own inodes."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    with open(f"/proc/{pid}/net/tcp", encoding="ascii") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return "\n".join(f"{row[1]} " for row in rows if row[3] == "0A" and row[9] in inodes)


def test_a_worker_that_cannot_start_stops_the_server_with_its_exit_code(tmp_path):
    supervisor = _serve(tmp_path / "nothing", _free_port())
    try:
        assert supervisor.wait(timeout=180) == 2  # "--model_base_path ... is not a folder": every worker's error exit
    finally:
        if supervisor.poll() is None:
            supervisor.kill()


def _wait_for_line(lines: list[str], stream, needle: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(needle in line for line in lines):
        assert time.monotonic() < deadline, f"no log line with {needle!r}; the server wrote: {''.join(lines)}"
        line = stream.readline()
        if line:
            lines.append(line)


def test_loads_and_unloads_are_logged_one_line_each(tmp_path):
    keras.utils.set_random_seed(3)
    purifier = LQVAE(tiny_config())
    export_purifier(purifier, str(tmp_path), "lqvae", version=1, warmup=False)
    command = [sys.executable, "-m", "lqvae_tf.cli.main", "serve", "--model_base_path", str(tmp_path / "lqvae")]
    command += ["--port", str(_free_port()), "--file_system_poll_wait_seconds", "1"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ})
    lines: list[str] = []
    try:
        _wait_for_line(lines, server.stderr, "loaded lqvae version 1: AVAILABLE", 180)
        export_purifier(purifier, str(tmp_path), "lqvae", version=2, warmup=False)  # the newer version replaces 1
        _wait_for_line(lines, server.stderr, "loaded lqvae version 2: AVAILABLE", 120)
        _wait_for_line(lines, server.stderr, "unloaded lqvae version 1: END", 60)
        assert sum("loaded lqvae version 1: AVAILABLE" in line for line in lines) == 1
    finally:
        server.kill()
        server.wait(timeout=30)
