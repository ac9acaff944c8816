"""`lqvae serve` under abusive clients: the real server in a subprocess, driven with raw sockets.

Each test reproduces one way a client used to hurt the others (issue 30) and checks the bound
that now holds: early answers close their connection, the header size and read deadline hold,
dripping clients cannot lock anyone out, rejected bodies and version swaps give their memory
back, and a version that is incomplete at start-up is served once it is complete.
"""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import orjson
import pytest
import requests

from lqvae_tf import LQVAE
from lqvae_tf.serving import export_purifier
from lqvae_tf.serving.memory import rss_bytes

from conftest import tiny_config

MAX_CONNECTIONS = 12
READ_TIMEOUT_MS = 3000
MAX_BODY = 64 * 1024 * 1024
MAX_IMAGES = 1024
MAX_HEADER = 16 * 1024
LINGER_MS = 1000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(base, *flags) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    command = [sys.executable, "-m", "lqvae_tf.cli.main", "serve", "--model_base_path", str(base)]
    command += ["--port", str(port), *flags]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    deadline = time.monotonic() + 180
    while True:
        assert server.poll() is None, f"the server exited with {server.returncode}"
        assert time.monotonic() < deadline, "the server did not start listening"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, port
        except OSError:
            time.sleep(0.3)


def _stop(server: subprocess.Popen) -> None:
    server.kill()
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(3)
    base = tmp_path_factory.mktemp("abuse")
    export_purifier(LQVAE(tiny_config()), str(base), "lqvae", version=1, warmup=False)
    return base / "lqvae"


@pytest.fixture(scope="module")
def server(exported):
    limits = ["--max_connections", str(MAX_CONNECTIONS), "--rest_api_timeout_in_ms", str(READ_TIMEOUT_MS)]
    limits += ["--max_body_bytes", str(MAX_BODY), "--max_images_per_request", str(MAX_IMAGES)]
    limits += ["--max_header_bytes", str(MAX_HEADER), "--linger_ms", str(LINGER_MS)]
    process, port = _start(exported, "--enable_batching", *limits)
    try:
        _predict(port)  # warm: the first call traces the signature
        yield process, port
    finally:
        _stop(process)


GOOD_BODY = orjson.dumps({"instances": np.zeros((1, 28, 28, 1), np.float32).tolist()})


def _predict(port: int, body: bytes = GOOD_BODY, timeout: float = 30) -> requests.Response:
    return requests.post(f"http://127.0.0.1:{port}/v1/models/lqvae:predict", data=body, timeout=timeout)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """The status and head of one answer on a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before an answer; got {data[:200]!r}"
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0]
    return int(head.split(b" ", 2)[1]), head.lower()


def _closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """Whether the server ends the connection (EOF or reset) within `within_s`, reading all it sends."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True
    return False


def _good_requests_succeed(port: int, count: int = 4, within_s: float = 5.0) -> None:
    for _ in range(count):
        start = time.monotonic()
        response = _predict(port, timeout=within_s)
        assert response.status_code == 200, response.text
        assert time.monotonic() - start < within_s


@pytest.mark.parametrize(
    "path, length, status", [("/v1/models/nope:predict", 200_000, 404), ("/v1/models/lqvae:predict", MAX_BODY + 1, 413)]
)
def test_early_answers_end_their_connection_so_none_can_be_held(server, path, length, status):
    """Defect 1: a client that got 404 or 413 before its body and then sends the body kept the
    connection for ever; twice `--max_connections` of them locked every other client out."""
    _, port = server
    held = []
    try:
        for _ in range(2 * MAX_CONNECTIONS):
            sock = _connect(port)
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode())
            got, head = _read_answer(sock)
            assert got == status and b"connection: close" in head
            try:
                sock.sendall(b"0" * min(length, 200_000))  # the body it announced, after the answer
            except ConnectionError:
                pass  # the server may stop reading once the linger bound is spent
            held.append(sock)
        _good_requests_succeed(port)  # while every one of those sockets is still open on our side
        assert all(_closed_by_server(sock, LINGER_MS / 1000 + 3) for sock in held)
    finally:
        for sock in held:
            sock.close()


def test_a_header_over_the_limit_is_a_431_and_costs_the_others_nothing(server):
    """Defect 3: a 128 MiB header took 18 s to parse and stalled every other client."""
    _, port = server
    sock = _connect(port)
    try:
        sock.sendall(b"GET /v1/models/lqvae HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent, answer = 0, None
        with pytest.raises(ConnectionError):  # the server closes well before 64 MiB of header
            while sent < 64 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
                if sent == 4 * 65536:
                    _good_requests_succeed(port, count=2, within_s=2.0)
        sock.settimeout(5)
        answer = sock.recv(65536)
    except ConnectionError:
        answer = b""
    finally:
        sock.close()
    assert sent < 8 * 1024 * 1024
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431")
    # Asked plainly, the answer is a 431 with TF Serving's error body.
    with _connect(port) as sock:
        sock.sendall(b"GET /v1/models/lqvae HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (2 * MAX_HEADER) + b"\r\n\r\n")
        status, head = _read_answer(sock)
        assert status == 431 and b"application/json" in head


def test_many_headers_under_the_limit_are_still_a_431_when_they_add_up(server):
    _, port = server
    headers = b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADER // 8 + 100))
    with _connect(port) as sock:
        sock.sendall(b"GET /v1/models/lqvae HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        status, _ = _read_answer(sock)
        assert status == 431


def test_dripping_clients_cannot_lock_others_out_and_meet_the_read_deadline(server):
    """Defect 4: clients that drip a byte at a time got every other client 503s for 30 s."""
    _, port = server
    drips = [_connect(port) for _ in range(MAX_CONNECTIONS + 4)]
    stop = threading.Event()

    def drip():
        request = b"GET /v1/models/lqvae HTTP/1.1\r\nHost: x\r\n"
        for index in range(len(request)):
            for sock in drips:
                try:
                    sock.send(request[index : index + 1])
                except OSError:
                    pass
            if stop.wait(0.2):
                return

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        time.sleep(0.5)
        _good_requests_succeed(port, count=6, within_s=5.0)
        # Each dripping connection is closed by the read deadline (or was evicted for a newer one).
        deadline_s = READ_TIMEOUT_MS / 1000 + 2
        assert all(_closed_by_server(sock, deadline_s) for sock in drips)
    finally:
        stop.set()
        dripper.join(timeout=5)
        for sock in drips:
            sock.close()


@pytest.mark.parametrize("depth", [600, 1000])
def test_string_inputs_nested_far_deeper_than_their_rank_are_a_400(server, depth):
    """Defect 6: such a `purify_png` body ended in a RecursionError and a 500."""
    _, port = server
    body = b'{"signature_name": "purify_png", "instances": ' + b"[" * depth + b"]" * depth + b"}"
    with _connect(port) as sock:
        sock.sendall(
            f"POST /v1/models/lqvae:predict HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        sock.sendall(body)
        status, head = _read_answer(sock)
    assert status == 400 and b"application/json" in head
    _good_requests_succeed(port, count=1)


def _numbers_body(images: np.ndarray) -> bytes:
    return b'{"instances": ' + orjson.dumps(images, option=orjson.OPT_SERIALIZE_NUMPY) + b"}"


def test_the_image_count_is_refused_before_parsing_and_memory_stays_flat(server):
    """Defect 2: each rejected body left hundreds of MB behind and blocked the others while parsed."""
    process, port = server
    body = _numbers_body(np.zeros((MAX_IMAGES * 8, 28, 28, 1), np.uint8))  # 8 times too many images
    assert len(body) < MAX_BODY
    _good_requests_succeed(port, count=2)
    before = rss_bytes(process.pid)
    for _ in range(4):
        start = time.monotonic()
        response = _predict(port, body)
        assert response.status_code == 413 and f"at most {MAX_IMAGES} per request" in response.json()["error"]
        assert time.monotonic() - start < 1.5  # counted on the bytes, not parsed
    _good_requests_succeed(port, count=2)
    assert rss_bytes(process.pid) < before * 1.2


def test_memory_of_bodies_parsed_then_refused_goes_back(server):
    """Bodies within the count limit that fail after the parse (a string among the pixels)."""
    process, port = server
    images = np.full((MAX_IMAGES, 28, 28, 1), 0.123456789).tolist()
    images[-1][-1][-1][-1] = "not a number"
    body = orjson.dumps({"instances": images})
    del images
    _predict(port, body)
    before = rss_bytes(process.pid)
    for _ in range(6):
        response = _predict(port, body)
        assert response.status_code == 400 and "error" in response.json()
    assert rss_bytes(process.pid) < before * 1.2


def _status(port: int) -> list[dict]:
    return requests.get(f"http://127.0.0.1:{port}/v1/models/lqvae", timeout=10).json().get("model_version_status", [])


def _wait_available(port: int, version: int, within_s: float = 120) -> None:
    deadline = time.monotonic() + within_s
    while not any(s["version"] == str(version) and s["state"] == "AVAILABLE" for s in _status(port)):
        assert time.monotonic() < deadline, f"version {version} was not served: {_status(port)}"
        time.sleep(0.2)


def test_version_swaps_give_their_memory_back(exported, tmp_path):
    """Defect 5: each swap left about 22 MB that was never returned."""
    base = tmp_path / "lqvae"
    shutil.copytree(exported / "1", base / "1")
    process, port = _start(base, "--enable_batching", "--file_system_poll_wait_seconds", "0.2")
    try:
        for version in range(2, 12):
            shutil.copytree(base / "1", base / f".{version}")
            os.rename(base / f".{version}", base / str(version))
            _wait_available(port, version)
            assert _predict(port).status_code == 200
            if version == 4:
                settled = rss_bytes(process.pid)  # after the first swaps have warmed the allocator
        growth = rss_bytes(process.pid) - settled
        assert growth < 40 << 20, f"{growth / 2**20:.0f} MiB more after 7 swaps (22 MiB each before the fix)"
    finally:
        _stop(process)


def test_an_incomplete_version_at_start_up_is_served_once_complete(exported, tmp_path):
    """Defect 7: the server exited with code 2; TF Serving keeps running and serves it later."""
    base = tmp_path / "lqvae"
    shutil.copytree(exported / "1", base / "1", ignore=shutil.ignore_patterns("saved_model.pb"))
    retries = ["--max_num_load_retries", "1000", "--load_retry_interval_micros", "300000"]
    process, port = _start(base, "--file_system_poll_wait_seconds", "0.2", *retries)
    try:
        (state,) = _status(port)
        assert state["version"] == "1" and state["state"] == "LOADING" and state["status"]["error_message"]
        response = _predict(port)
        assert response.status_code == 404 and "error" in response.json()
        shutil.copy(exported / "1" / "saved_model.pb", base / "1" / "saved_model.pb")
        _wait_available(port, 1, within_s=60)
        assert _predict(port).status_code == 200
        assert process.poll() is None
    finally:
        _stop(process)


def test_an_empty_model_folder_is_served_and_its_first_version_picked_up(exported, tmp_path):
    base = tmp_path / "lqvae"
    base.mkdir()
    process, port = _start(base, "--file_system_poll_wait_seconds", "0.2")
    try:
        response = requests.get(f"http://127.0.0.1:{port}/v1/models/lqvae", timeout=10)
        assert response.status_code == 404 and "Could not find any versions" in response.json()["error"]
        shutil.copytree(exported / "1", base / ".1")
        os.rename(base / ".1", base / "1")
        _wait_available(port, 1, within_s=60)
        assert _predict(port).status_code == 200
    finally:
        _stop(process)
