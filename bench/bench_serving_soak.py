"""Benchmark: `lqvae serve` throughput against in-process batch 32, and a soak under abuse, with wrk.

One run measures, on this machine:

1. **Throughput.** For each model (default: the paper-width network and the shipped half-width
   preset), the exported SavedModel's `serving_default` in-process at batch 32 (images/s, taken
   before and after the servers run; the higher is the reference), then `wrk -t2 -c32` sending
   batch-1 `:predict` requests to `lqvae serve` with each batching setting of `SERVERS` (the
   `--enable_batching` defaults, TF Serving's batching guide's advice, and the setting tuned for
   this CPU). Share = requests/s over the reference; the CPU time of the server and of wrk
   during the run show whether the machine was saturated. A py-spy profile of the
   one-process server shows where its threads spend their time.
2. **Soak.** `lqvae serve --enable_batching` for `--soak_seconds` (default 10 minutes) under
   mixed traffic: wrk's good predicts; in a loop, each bad request of the server tests (malformed
   JSON, wrong shapes, strings as pixels, unknown model, signature or version, deep nesting),
   bodies over the size limit (from Content-Length and streamed), bodies over the image count,
   oversized headers, early answers followed by their bodies; a pool of clients dripping a byte
   at a time; and a new version every minute. Every good request must get a 200, every bad one
   its 4xx (never a 5xx), and the server's RSS at the end must stay within 1.2x of its RSS after
   warm-up.

wrk is Debian's package (found on PATH, or installed with apt-get where it can be). Run:
`python bench/bench_serving_soak.py` (`--ratio_seconds 5 --soak_seconds 60` for a smoke run); the
tables are printed and appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections import Counter

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import requests  # noqa: E402
import tensorflow as tf  # noqa: E402
from bench_serving import serving, write_batching_file  # noqa: E402
from py_spy_profile import record  # noqa: E402
from results_table import RESULTS, append_table  # noqa: E402
from wrk import find_wrk, run_wrk  # noqa: E402

from lqvae_tf import LQVAE, preset  # noqa: E402
from lqvae_tf.data import DEBIAN_FASHION_MNIST, load_idx_arrays  # noqa: E402
from lqvae_tf.serving import export_purifier  # noqa: E402
from lqvae_tf.serving.limits import ServingLimits  # noqa: E402
from lqvae_tf.serving.memory import rss_bytes  # noqa: E402

ONE_TF_THREAD = ("--tensorflow_intra_op_parallelism", "1", "--tensorflow_inter_op_parallelism", "1")
# (label, BatchingParameters fields (None: the --enable_batching defaults), workers, other flags).
# max_batch_size 16 under 32 clients keeps two batches in turn, one in the model while the event
# loop reads and answers the other; num_batch_threads = cores is what TF Serving's guide advises.
SERVERS = (
    ("1 process, --enable_batching (defaults: 32, 2000 us, 1 thread)", None, 1, ()),
    ("1 process, batching 16, 2000 us, 1 thread", {"max_batch_size": 16, "batch_timeout_micros": 2000}, 1, ()),
    (
        "1 process, batching 16, 1000 us, 2 threads (= cores)",
        {"max_batch_size": 16, "batch_timeout_micros": 1000, "num_batch_threads": 2},
        1,
        (),
    ),
    (
        "--workers 2 (1 TF thread each), batching 16, 2000 us, 1 thread",
        {"max_batch_size": 16, "batch_timeout_micros": 2000},
        2,
        ONE_TF_THREAD,
    ),
)


def batching_flags(folder: str, label: str, fields: dict | None) -> tuple[str, ...]:
    """`--enable_batching`, with a parameters file (TF Serving's text proto) when `fields` are given."""
    if fields is None:
        return ("--enable_batching",)
    path = write_batching_file(
        os.path.join(folder, f"batching-{abs(hash(label))}.txt"),
        fields["max_batch_size"],
        fields["batch_timeout_micros"],
        fields.get("num_batch_threads", 1),
    )
    return ("--enable_batching", "--batching_parameters_file", path)


def _server_pids(supervisor: subprocess.Popen) -> list[int]:
    """The supervisor and its worker processes (each holds a model)."""
    with open(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children", encoding="ascii") as handle:
        return [supervisor.pid, *(int(child) for child in handle.read().split())]


def in_process_rate(saved_model: str, images: np.ndarray, seconds: float) -> float:
    """Images/s of `serving_default` called in-process on batches of 32."""
    function = tf.saved_model.load(saved_model).signatures["serving_default"]
    batch = tf.constant(images[:32])
    function(images=batch)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        function(images=batch)
        count += 32
    return count / (time.perf_counter() - start)


# ---------------------------------------------------------------------------------------- abuse
def _raw(url: str, data: bytes, read: bool = True, timeout: float = 30) -> int | None:
    """Sends raw bytes on a fresh connection; the answer's status (None if the server closed first)."""
    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        with contextlib.suppress(ConnectionError):
            sock.sendall(data)
        if not read:
            return None
        answer = b""
        with contextlib.suppress(ConnectionError):
            while b"\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


def _post(path: str, body: bytes, headers: str = "") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body


def bad_requests(image: np.ndarray) -> list[tuple[str, bytes, int]]:
    """(what, raw request, expected status): the refusals the server tests check, as raw HTTP."""
    predict = "/v1/models/lqvae:predict"
    deep = b'{"signature_name": "purify_png", "instances": ' + b"[" * 800 + b"]" * 800 + b"}"
    limits = ServingLimits()
    many = b'{"instances": ' + orjson.dumps(
        np.zeros((limits.max_images_per_request * 4, *image.shape), np.uint8), option=orjson.OPT_SERIALIZE_NUMPY
    )
    many += b"}"
    return [
        ("malformed JSON", _post(predict, b'{"instances": [1, 2'), 400),
        ("wrong shape", _post(predict, orjson.dumps({"instances": [[0.5] * 10]})), 400),
        ("strings as pixels", _post(predict, orjson.dumps({"instances": [[["x"] * 28] * 28]})), 400),
        ("unknown model", _post("/v1/models/nope:predict", orjson.dumps({"instances": [image.tolist()]})), 404),
        ("unknown signature", _post(predict, orjson.dumps({"signature_name": "x", "instances": [1]})), 400),
        ("bad version", _post("/v1/models/lqvae/versions/x1:predict", b"{}"), 400),
        ("deep nesting", _post(predict, deep), 400),
        ("over the image count", _post(predict, many), 413),
        (
            "over the size limit (Content-Length)",
            f"POST {predict} HTTP/1.1\r\nHost: x\r\nContent-Length: {limits.max_body_bytes + 1}\r\n\r\n".encode(),
            413,
        ),
        (
            "oversized header",
            b"GET /v1/models/lqvae HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (2 * limits.max_header_bytes) + b"\r\n\r\n",
            431,
        ),
        ("not HTTP", b"\x00\x01 NOT HTTP\r\n\r\n", 400),
    ]


def streamed_oversize(url: str) -> int | None:
    """A chunked body that grows past the size limit: refused while streaming."""
    limits = ServingLimits()
    parts = urllib.parse.urlsplit(url)
    chunk = b"0" * (1 << 20)
    head = b"POST /v1/models/lqvae:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        with contextlib.suppress(ConnectionError):
            sock.sendall(head)
            for _ in range(limits.max_body_bytes // len(chunk) + 2):
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        with contextlib.suppress(ConnectionError):
            answer = sock.recv(4096)
            return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None
    return None


def early_answer_then_body(url: str, held: list[socket.socket]) -> int | None:
    """404 before the body, then the body, and the connection kept open (the old lock-out)."""
    parts = urllib.parse.urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.sendall(b"POST /v1/models/nope:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
    answer = sock.recv(4096)
    with contextlib.suppress(ConnectionError):
        sock.sendall(b"0" * 100000)
    held.append(sock)
    if len(held) > 64:
        held.pop(0).close()
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


class Abuse:
    """The bad traffic of the soak, in background threads, with a tally of every answer."""

    def __init__(self, url: str, image: np.ndarray, drippers: int = 16):
        self.url, self.stop = url, threading.Event()
        self.requests = bad_requests(image)
        self.answers: Counter = Counter()  # (what, status) -> count
        self.unexpected: Counter = Counter()
        self.drippers = drippers
        self.threads = [threading.Thread(target=self._bad_loop, daemon=True)]
        self.threads.append(threading.Thread(target=self._drip_loop, daemon=True))

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _tally(self, what: str, status: int | None, expected: int | tuple) -> None:
        self.answers[(what, status)] += 1
        if status not in (expected if isinstance(expected, tuple) else (expected,)):
            self.unexpected[(what, status)] += 1

    def _bad_loop(self) -> None:
        held: list[socket.socket] = []
        round_ = 0
        while not self.stop.is_set():
            for what, raw, expected in self.requests:
                try:
                    self._tally(what, _raw(self.url, raw), expected)
                except OSError as error:
                    self._tally(what, f"socket error {type(error).__name__}", expected)
            try:
                self._tally("early answer, then its body", early_answer_then_body(self.url, held), 404)
                if round_ % 20 == 0:
                    self._tally("over the size limit (streamed)", streamed_oversize(self.url), (413, None))
            except OSError as error:
                self._tally("early answer / streamed", f"socket error {type(error).__name__}", 404)
            round_ += 1
            self.stop.wait(0.2)
        for sock in held:
            sock.close()

    def _drip_loop(self) -> None:
        """Keeps `drippers` connections sending one byte of a request every half second."""
        request = b"GET /v1/models/lqvae HTTP/1.1\r\nHost: x\r\n"
        parts = urllib.parse.urlsplit(self.url)
        pool: list[list] = []  # [socket, bytes sent]
        while not self.stop.is_set():
            while len(pool) < self.drippers:
                with contextlib.suppress(OSError):
                    pool.append([socket.create_connection((parts.hostname, parts.port), timeout=5), 0])
            for entry in list(pool):
                sock, sent = entry
                try:
                    sock.send(request[sent % len(request) : sent % len(request) + 1])
                    entry[1] += 1
                except OSError:  # closed by the read deadline: a new one takes its place
                    sock.close()
                    pool.remove(entry)
                    self.answers[("dripping client closed by the server", "closed")] += 1
            self.stop.wait(0.5)
        for sock, _ in pool:
            sock.close()


def swap_versions(base: str, stop: threading.Event, every_s: float, done: list[int]) -> None:
    """Publishes a new version (a copy of version 1, renamed into place) every `every_s` seconds."""
    version = 1
    while not stop.wait(every_s):
        version += 1
        staging = os.path.join(base, f".staging-{version}")
        shutil.copytree(os.path.join(base, "1"), staging)
        os.rename(staging, os.path.join(base, str(version)))
        done.append(version)


def cpu_seconds(process: subprocess.Popen) -> float:
    """User and system CPU time of the server's processes so far (Linux /proc/<pid>/stat)."""
    total = 0.0
    for pid in _server_pids(process):
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _rss(process: subprocess.Popen) -> int:
    return sum(rss_bytes(pid) for pid in _server_pids(process))


def soak(base: str, body: bytes, image: np.ndarray, seconds: int, warmup_s: int) -> dict:
    """The soak on `lqvae serve --enable_batching`; its figures."""
    with serving(base, ("--enable_batching", "--file_system_poll_wait_seconds", "1")) as (url, process):
        predict = f"{url}/v1/models/lqvae:predict"
        run_wrk(predict, body, duration_s=warmup_s)
        warm_rss = _rss(process)
        stop, versions = threading.Event(), []
        swapper = threading.Thread(target=swap_versions, args=(base, stop, 60.0, versions), daemon=True)
        swapper.start()
        with Abuse(url, image) as abuse:
            good = run_wrk(predict, body, duration_s=seconds)
        stop.set()
        swapper.join()
        end_rss = _rss(process)
        deadline = time.monotonic() + 30  # the last version published is served within a few polls
        while True:
            status = requests.get(f"{url}/v1/models/lqvae", timeout=10).json()["model_version_status"]
            newest = str(max(versions, default=1))
            if any(s["version"] == newest and s["state"] == "AVAILABLE" for s in status):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
    served = [s["version"] for s in status if s["state"] == "AVAILABLE"]
    return {
        "good": good,
        "warm_rss": warm_rss,
        "end_rss": end_rss,
        "answers": abuse.answers,
        "unexpected": abuse.unexpected,
        "versions": versions,
        "served": served,
    }


def profile_rows(name: str, base: str, body: bytes, seconds: int) -> list[str]:
    """Where the 1-process batching server's threads spend their time under wrk -c32."""
    with serving(base, ("--enable_batching",)) as (url, process):
        predict = f"{url}/v1/models/lqvae:predict"
        run_wrk(predict, body, duration_s=5)
        load = threading.Thread(target=run_wrk, args=(predict, body), kwargs={"duration_s": seconds + 4})
        load.start()
        time.sleep(2)
        threads = record(process.pid, seconds)
        load.join()
    rows = []
    for thread, label in (("MainThread", "event loop"), ("batch", "batch thread")):
        tally = threads.get(thread, Counter())
        for stage, count in tally.most_common():
            if stage != "all":
                rows.append(f"| {name} | {label} | {stage} | {count / tally['all']:.0%} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--presets", nargs="+", default=["paper", "fashion_mnist"], help="models of the ratio")
    parser.add_argument("--ratio_seconds", type=int, default=30, help="wrk -d of each throughput row")
    parser.add_argument("--reference_seconds", type=float, default=10.0)
    parser.add_argument("--soak_seconds", type=int, default=600)
    parser.add_argument("--soak_preset", default="fashion_mnist", help="the model served in the soak")
    parser.add_argument("--warmup_seconds", type=int, default=20)
    parser.add_argument("--profile_seconds", type=int, default=15, help="py-spy sampling per model (0: none)")
    parser.add_argument("--results", default=RESULTS)
    args = parser.parse_args()
    find_wrk()

    images = load_idx_arrays(DEBIAN_FASHION_MNIST, "test")[0][:64].astype(np.float32) / 255.0
    body = orjson.dumps({"instances": images[:1].tolist()})
    rows, failures, profile = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for name in dict.fromkeys([*args.presets, args.soak_preset]):
            export_purifier(LQVAE(preset(name)), os.path.join(folder, name), "lqvae", warmup=False)
        for name in args.presets:
            saved_model, base = os.path.join(folder, name, "lqvae", "1"), os.path.join(folder, name, "lqvae")
            before = in_process_rate(saved_model, images, args.reference_seconds)
            measured = []
            for label, fields, workers, extra in SERVERS:
                flags = (*batching_flags(folder, label, fields), *extra)
                with serving(base, flags, workers) as (url, process):
                    predict = f"{url}/v1/models/lqvae:predict"
                    run_wrk(predict, body, duration_s=5)  # warm every worker and batch size
                    start = cpu_seconds(process)
                    result = run_wrk(predict, body, duration_s=args.ratio_seconds)
                    result["server_cores"] = (cpu_seconds(process) - start) / (result["duration_us"] / 1e6)
                    measured.append((label, result))
            if args.profile_seconds:
                profile += profile_rows(name, base, body, args.profile_seconds)
            after = in_process_rate(saved_model, images, args.reference_seconds)
            reference = max(before, after)
            width = preset(name).width
            reference_row = f"in-process `serving_default`, batch 32 | {before:.0f} / {after:.0f} | - | - | - | - | -"
            rows.append(f"| {name} (width {width}) | {reference_row} |")
            for label, result in measured:
                bad = result["non_2xx"] + result["connect"] + result["read"] + result["write"] + result["timeout"]
                if bad:
                    failures.append(f"{name}, {label}: {bad} requests without a 200")
                rows.append(
                    f"| {name} (width {width}) | {label} | {result['req_per_s']:.0f} | {result['p50_us'] / 1000:.1f} | "
                    f"{result['p99_us'] / 1000:.1f} | {bad} | {result['server_cores']:.2f} / {result['cores']:.2f} | "
                    f"{result['req_per_s'] / reference:.2f} |"
                )
        append_table(
            "Serving throughput with wrk: REST batch-1 predicts against in-process batch 32",
            f"wrk -t2 -c32 -d{args.ratio_seconds}s, one batch-1 `:predict` body in row format; reference = the "
            "higher of the in-process rates measured before and after the servers "
            f"({args.reference_seconds:g} s each); "
            "untrained models of each preset (the compute does not depend on the weights); batching parameters "
            "as each row names them (max_batch_size, batch_timeout_micros, num_batch_threads)",
            [
                "model",
                "path",
                "images/s (in-process: before / after)",
                "p50 ms",
                "p99 ms",
                "not 200",
                "CPU cores: server / wrk",
                "share",
            ],
            rows,
            args.results,
        )
        if profile:
            append_table(
                "Serving: where the time goes (py-spy, 1 process, --enable_batching, wrk -t2 -c32)",
                f"{args.profile_seconds} s of samples at 200 Hz of each thread of the server, idle included; "
                "share = samples of the stage over the thread's samples (stages: bench/py_spy_profile.py)",
                ["model", "thread", "stage", "share of the thread's time"],
                profile,
                args.results,
            )
        base = os.path.join(folder, args.soak_preset, "lqvae")
        result = soak(base, body, images[0], args.soak_seconds, args.warmup_seconds)
    good = result["good"]
    errors = good["non_2xx"] + good["connect"] + good["read"] + good["write"] + good["timeout"]
    growth = result["end_rss"] / result["warm_rss"]
    bad_total = sum(result["answers"].values())
    unexpected = sum(result["unexpected"].values())
    soak_rows = [
        f"| good predicts (wrk -t2 -c32) | {good['requests']} | {errors} | {good['p50_us'] / 1000:.1f} | "
        f"{good['p99_us'] / 1000:.1f} | {good['max_us'] / 1000:.0f} |",
        f"| bad requests, abusive and dripping clients | {bad_total} | {unexpected} | - | - | - |",
        f"| RSS after warm-up / at the end (MiB) | {result['warm_rss'] / 2**20:.0f} / {result['end_rss'] / 2**20:.0f} "
        f"| {growth:.2f}x | - | - | - |",
        f"| versions published / served at the end | {len(result['versions'])} / {', '.join(result['served'])} "
        "| - | - | - | - |",
    ]
    kinds = ", ".join(
        f"{what}: {status} x{count}" for (what, status), count in sorted(result["answers"].items(), key=str)
    )
    append_table(
        "Serving soak under abuse (wrk)",
        f"{args.soak_seconds} s of `lqvae serve --enable_batching` with model {args.soak_preset}, default limits; "
        f"a new version every 60 s; answers to the bad traffic: {kinds}"
        + (f"; UNEXPECTED: {dict(result['unexpected'])}" if unexpected else ""),
        ["traffic", "requests", "failures (not 200 / not the expected 4xx / RSS growth)", "p50 ms", "p99 ms", "max ms"],
        soak_rows,
        args.results,
    )
    if errors:
        failures.append(f"soak: {errors} good requests without a 200")
    if unexpected:
        failures.append(f"soak: unexpected answers {dict(result['unexpected'])}")
    if growth > 1.2:
        failures.append(f"soak: RSS grew {growth:.2f}x")
    if failures:
        raise SystemExit("; ".join(failures))


if __name__ == "__main__":
    main()
