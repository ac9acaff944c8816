"""Benchmark: REST serving latency and throughput against in-process `purify`, in one run.

Exports the given purifier (default: a fresh default-preset model; pass --model for a trained
one) and measures, in one process: in-process `purify` at batch 1 and 32 (the reference), then
the embedded server on loopback under 1, 8 and 32 concurrent clients sending batch-1 requests,
without and with server-side batching (TF Serving's --enable_batching; parameters below).
Latency p50/p99 and images/s per row. Run: `python bench/bench_serving.py` (about 20 requests per
client; `--requests 2` for a smoke run); the table is printed and appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from results_table import RESULTS, append_table  # noqa: E402

from lqvae_tf import LQVAE, preset  # noqa: E402
from lqvae_tf.data import DEBIAN_FASHION_MNIST, load_idx_arrays  # noqa: E402
from lqvae_tf.serving import RestClient, export_purifier  # noqa: E402
from lqvae_tf.serving.batching import BatchingParameters  # noqa: E402
from lqvae_tf.serving.server import running_server  # noqa: E402


def in_process(model: LQVAE, images: np.ndarray, batch: int, requests: int) -> tuple[float, float, float]:
    latencies = []
    for i in range(requests):
        chunk = images[(i * batch) % 4096 :][:batch]
        start = time.perf_counter()
        model.purify(chunk, batch_size=batch)
        latencies.append(time.perf_counter() - start)
    total = sum(latencies)
    return np.percentile(latencies, 50), np.percentile(latencies, 99), batch * requests / total


def over_rest(url: str, images: np.ndarray, batch: int, clients: int, requests: int):
    def worker(index: int) -> list[float]:
        client = RestClient(url, "lqvae")
        latencies = []
        for i in range(requests):
            chunk = images[((index * requests + i) * batch) % 4096 :][:batch]
            start = time.perf_counter()
            client.predict(chunk)
            latencies.append(time.perf_counter() - start)
        return latencies

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [t for part in pool.map(worker, range(clients)) for t in part]
    wall = time.perf_counter() - start
    return np.percentile(latencies, 50), np.percentile(latencies, 99), batch * clients * requests / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="a trained purifier .keras (default: fresh default preset)")
    parser.add_argument("--requests", type=int, default=20, help="requests per client")
    parser.add_argument("--max_batch_size", type=int, default=32, help="server-side batching: max batch")
    parser.add_argument("--batch_timeout_micros", type=int, default=2000, help="server-side batching: wait")
    parser.add_argument("--results", default=RESULTS)
    args = parser.parse_args()

    model = keras.models.load_model(args.model) if args.model else LQVAE(preset("fashion_mnist"))
    images = load_idx_arrays(DEBIAN_FASHION_MNIST, "test")[0][:4200].astype(np.float32) / 255.0
    low, high = model.config.value_range
    images = images * (high - low) + low
    batching = BatchingParameters(max_batch_size=args.max_batch_size, batch_timeout_micros=args.batch_timeout_micros)
    rows = []
    for batch in (1, 32):
        model.purify(images[:batch], batch_size=batch)  # trace
        p50, p99, rate = in_process(model, images, batch, args.requests * 4)
        rows.append(f"| {batch} | in-process `purify` | - | {p50 * 1000:.1f} | {p99 * 1000:.1f} | {rate:.0f} |")
    with tempfile.TemporaryDirectory() as base:
        export_purifier(model, base, "lqvae", warmup=False)
        for label, parameters in (("REST, no batching", None), ("REST, --enable_batching", batching)):
            with running_server(os.path.join(base, "lqvae"), "lqvae", batching=parameters) as url:
                RestClient(url, "lqvae").predict(images[:1])  # warm
                for clients in (1, 8, 32):
                    p50, p99, rate = over_rest(url, images, 1, clients, args.requests)
                    rows.append(f"| 1 | {label} | {clients} | {p50 * 1000:.1f} | {p99 * 1000:.1f} | {rate:.0f} |")
    append_table(
        "Serving latency and throughput",
        f"requests per client={args.requests}; loopback HTTP, JSON columnar format; model width "
        f"{model.config.width}; batching max_batch_size={args.max_batch_size}, "
        f"batch_timeout_micros={args.batch_timeout_micros}, num_batch_threads=1",
        ["batch", "path", "concurrent clients", "p50 ms", "p99 ms", "images/s"],
        rows,
        args.results,
    )


if __name__ == "__main__":
    main()
