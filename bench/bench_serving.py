"""Benchmark: REST serving latency and throughput against in-process calls, in one run.

Exports the given purifier (default: a fresh default-preset model; pass --model for a trained
one) and measures, in one run:

- the references: in-process Keras `purify` and the exported SavedModel's `serving_default`
  called in-process, at batch 1 and 32;
- `lqvae serve` started as its own process (as a user runs it), on loopback, under 1, 8 and 32
  concurrent clients sending batch-1 `:predict` requests, without and with server-side batching
  (TF Serving's --enable_batching; parameters below), and with batching in `--workers` processes
  (default 2) that each run TensorFlow on one thread (`--tensorflow_intra_op_parallelism 1
  --tensorflow_inter_op_parallelism 1`). The clients are `bench/http_load.py`, a
  closed-loop keep-alive generator in a separate process (as `wrk` would be).

Latency p50/p99 and images/s per row; every answer must be a 200. Run:
`python bench/bench_serving.py --model path/to/purifier.keras` (`--requests 5` for a smoke run);
the table is printed and appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402
import requests  # noqa: E402
import tensorflow as tf  # noqa: E402
from http_load import run_load  # noqa: E402
from results_table import RESULTS, append_table  # noqa: E402

from lqvae_tf import LQVAE, preset  # noqa: E402
from lqvae_tf.data import DEBIAN_FASHION_MNIST, load_idx_arrays  # noqa: E402
from lqvae_tf.serving import export_purifier  # noqa: E402


def timed(call, images: np.ndarray, batch: int, requests: int) -> tuple[float, float, float]:
    """p50 and p99 latency (s) and images/s of `call` on consecutive batches."""
    latencies = []
    for i in range(requests):
        chunk = images[(i * batch) % 4096 :][:batch]
        start = time.perf_counter()
        call(chunk)
        latencies.append(time.perf_counter() - start)
    return np.percentile(latencies, 50), np.percentile(latencies, 99), batch * requests / sum(latencies)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_bodies(path: str, images: np.ndarray, count: int = 256) -> str:
    """One batch-1 columnar `:predict` body per line, for `http_load.py`; returns `path`."""
    with open(path, "wb") as file:
        for i in range(count):
            file.write(orjson.dumps({"inputs": images[i : i + 1].tolist()}) + b"\n")
    return path


def write_batching_file(path: str, max_batch_size: int, batch_timeout_micros: int, num_batch_threads: int) -> str:
    """TF Serving's batching-parameters text proto; returns `path`."""
    with open(path, "w", encoding="ascii") as file:
        file.write(
            f"max_batch_size {{ value: {max_batch_size} }}\n"
            f"batch_timeout_micros {{ value: {batch_timeout_micros} }}\n"
            f"num_batch_threads {{ value: {num_batch_threads} }}\n"
        )
    return path


def _listeners(port: int) -> int:
    """Sockets listening on loopback TCP `port` (Linux's /proc/net/tcp): one per started worker."""
    with open("/proc/net/tcp", encoding="ascii") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(1 for row in rows if row[1].endswith(f":{port:04X}") and row[3] == "0A")


@contextlib.contextmanager
def serving(base: str, flags: tuple[str, ...] = (), workers: int = 1):
    """`lqvae serve --workers N *flags` in its own process(es); yields (url, process) once every
    worker listens and the model answers."""
    port = _free_port()
    command = [sys.executable, "-m", "lqvae_tf.cli.main", "serve", "--model_base_path", base, "--port", str(port)]
    command += ["--workers", str(workers), *flags]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(requests.ConnectionError):
                if _listeners(port) >= workers and requests.get(f"{url}/v1/models/lqvae", timeout=5).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"lqvae serve did not start: {' '.join(command)}")
            time.sleep(0.2)
        yield url, process
    finally:
        process.terminate()
        process.wait(30)


@contextlib.contextmanager
def server_process(base: str, batching_file: str | None, workers: int = 1, extra: tuple[str, ...] = ()):
    """`serving` with TF Serving's batching parameters file (None: no batching); yields its URL."""
    batching = ("--enable_batching", "--batching_parameters_file", batching_file) if batching_file else ()
    with serving(base, (*batching, *extra), workers) as (url, _):
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="a trained purifier .keras (default: fresh default preset)")
    parser.add_argument("--requests", type=int, default=100, help="requests per client")
    parser.add_argument("--max_batch_size", type=int, default=32, help="server-side batching: max batch")
    parser.add_argument("--batch_timeout_micros", type=int, default=2000, help="server-side batching: wait")
    parser.add_argument("--num_batch_threads", type=int, default=1, help="server-side batching: threads")
    parser.add_argument("--workers", type=int, default=2, help="server processes of the last configuration")
    parser.add_argument("--results", default=RESULTS)
    args = parser.parse_args()

    model = keras.models.load_model(args.model) if args.model else LQVAE(preset("fashion_mnist"))
    images = load_idx_arrays(DEBIAN_FASHION_MNIST, "test")[0][:4200].astype(np.float32) / 255.0
    low, high = model.config.value_range
    images = images * (high - low) + low
    rows, failures = [], 0
    with tempfile.TemporaryDirectory() as base:
        export_purifier(model, base, "lqvae", warmup=False)
        serving_default = tf.saved_model.load(os.path.join(base, "lqvae", "1")).signatures["serving_default"]
        references = {
            "in-process Keras `purify`": lambda chunk: model.purify(chunk, batch_size=len(chunk)),
            "in-process SavedModel `serving_default`": lambda chunk: serving_default(images=tf.constant(chunk)),
        }
        best_batched = 0.0
        for batch in (1, 32):
            for label, call in references.items():
                call(images[:batch])  # trace
                p50, p99, rate = timed(call, images, batch, args.requests * 4)
                best_batched = max(best_batched, rate) if batch == 32 else best_batched
                rows.append(f"| {batch} | {label} | - | {p50 * 1000:.1f} | {p99 * 1000:.1f} | {rate:.0f} | - |")
        bodies = write_bodies(os.path.join(base, "bodies.jsonl"), images)
        batching_file = write_batching_file(
            os.path.join(base, "batching.txt"), args.max_batch_size, args.batch_timeout_micros, args.num_batch_threads
        )
        one_thread = ("--tensorflow_intra_op_parallelism", "1", "--tensorflow_inter_op_parallelism", "1")
        configurations = (
            ("REST, no batching", None, 1, ()),
            ("REST, --enable_batching", batching_file, 1, ()),
            (
                f"REST, --enable_batching --workers {args.workers}, 1 TF thread each",
                batching_file,
                args.workers,
                one_thread,
            ),
        )
        for label, parameters, workers, extra in configurations:
            with server_process(os.path.join(base, "lqvae"), parameters, workers, extra) as url:
                predict = f"{url}/v1/models/lqvae:predict"
                run_load(predict, bodies, 8, 5)  # warm every path
                for clients in (1, 8, 32):
                    result = run_load(predict, bodies, clients, args.requests)
                    latencies, statuses = result["latencies"], result["statuses"]
                    failures += sum(n for status, n in statuses.items() if status != "200")
                    rate = len(latencies) / result["wall_s"]
                    p50, p99 = np.percentile(latencies, 50), np.percentile(latencies, 99)
                    share = f"{rate / best_batched:.0%}"
                    rows.append(
                        f"| 1 | {label} | {clients} | {p50 * 1000:.1f} | {p99 * 1000:.1f} | {rate:.0f} | {share} |"
                    )
    if failures:
        raise SystemExit(f"{failures} requests did not get a 200")
    append_table(
        "Serving latency and throughput",
        f"requests per client={args.requests}; server and clients are separate processes on loopback, "
        f"JSON columnar format; model width {model.config.width}; batching "
        f"max_batch_size={args.max_batch_size}, batch_timeout_micros={args.batch_timeout_micros}, "
        f"num_batch_threads={args.num_batch_threads}; share = images/s over the best in-process batch-32 rate",
        ["batch", "path", "concurrent clients", "p50 ms", "p99 ms", "images/s", "share of in-process batch 32"],
        rows,
        args.results,
    )


if __name__ == "__main__":
    main()
