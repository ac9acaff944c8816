"""Benchmark: `lqvae serve --workers` against one process, interleaved, as shares of the in-process rate.

One run of `bench_serving.py` on these shared machines moves by several points from run to run,
more than the difference it is meant to show. Here the server settings are started side by side
and measured in turns, round after round, each against an in-process batch-32 reference taken
in the same round, so that a slow moment of the machine hits every setting alike:

- one process with batching (TF Serving's --enable_batching, default parameters);
- `--workers 2`, each worker with one TensorFlow thread (intra- and inter-op parallelism 1);
- `--workers 2` with TensorFlow's default threads.

Each measurement is 32 concurrent batch-1 clients (`bench/http_load.py`). Run:
`python bench/bench_serving_workers.py --model path/to/purifier.keras --rounds 6`.
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from bench_serving import server_process, timed, write_batching_file, write_bodies  # noqa: E402
from http_load import run_load  # noqa: E402
from results_table import RESULTS, append_table  # noqa: E402

from lqvae_tf.data import DEBIAN_FASHION_MNIST, load_idx_arrays  # noqa: E402
from lqvae_tf.serving import export_purifier  # noqa: E402

ONE_THREAD = ("--tensorflow_intra_op_parallelism", "1", "--tensorflow_inter_op_parallelism", "1")
SETTINGS = (  # label, workers, extra flags
    ("1 process, --enable_batching", 1, ()),
    ("--enable_batching --workers 2, 1 TF thread each", 2, ONE_THREAD),
    ("--enable_batching --workers 2, default TF threads", 2, ()),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a trained purifier .keras")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=100, help="requests per client per measurement")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--results", default=RESULTS)
    args = parser.parse_args()

    model = keras.models.load_model(args.model)
    low, high = model.config.value_range
    images = load_idx_arrays(DEBIAN_FASHION_MNIST, "test")[0][:4200].astype(np.float32) / 255.0 * (high - low) + low
    shares: dict[str, list[float]] = {label: [] for label, _, _ in SETTINGS}
    p99s: dict[str, list[float]] = {label: [] for label, _, _ in SETTINGS}
    references = []
    with tempfile.TemporaryDirectory() as base:
        export_purifier(model, base, "lqvae", warmup=False)
        signature = tf.saved_model.load(os.path.join(base, "lqvae", "1")).signatures["serving_default"]

        def in_process(chunk):
            return signature(images=tf.constant(chunk))

        in_process(images[:32])  # trace
        bodies = write_bodies(os.path.join(base, "bodies.jsonl"), images)
        batching = write_batching_file(os.path.join(base, "batching.txt"), 32, 2000, 1)
        folder = os.path.join(base, "lqvae")
        with (
            server_process(folder, batching, *SETTINGS[0][1:]) as first,
            server_process(folder, batching, *SETTINGS[1][1:]) as second,
            server_process(folder, batching, *SETTINGS[2][1:]) as third,
        ):
            servers = zip(SETTINGS, (first, second, third))
            urls = {label: f"{url}/v1/models/lqvae:predict" for (label, _, _), url in servers}
            for url in urls.values():
                run_load(url, bodies, 8, 10)  # warm every worker's path
            for round_number in range(args.rounds):
                reference = timed(in_process, images, 32, 200)[2]
                references.append(reference)
                for label, url in urls.items():
                    result = run_load(url, bodies, args.clients, args.requests)
                    if set(result["statuses"]) != {"200"}:  # status codes, as JSON keys
                        raise SystemExit(f"{label}: answers other than 200: {result['statuses']}")
                    shares[label].append(len(result["latencies"]) / result["wall_s"] / reference)
                    p99s[label].append(float(np.percentile(result["latencies"], 99)) * 1000)
                print(
                    f"round {round_number}: reference {reference:.0f} images/s, "
                    + ", ".join(f"{label}: {values[-1]:.0%}" for label, values in shares.items()),
                    flush=True,
                )
    rows = [
        f"| {label} | {np.median(shares[label]):.0%} | {min(shares[label]):.0%} - {max(shares[label]):.0%} "
        f"| {np.median(p99s[label]):.1f} | {sum(a > b for a, b in zip(shares[label], shares[SETTINGS[0][0]]))} "
        f"of {args.rounds} |"
        for label, _, _ in SETTINGS
    ]
    append_table(
        "Serving: --workers",
        f"{args.clients} concurrent batch-1 clients, {args.requests} requests each, {args.rounds} interleaved rounds; "
        f"share = images/s over the in-process batch-32 `serving_default` rate of the same round "
        f"(median {np.median(references):.0f} images/s, with every server process started beside it)",
        ["server", "median share", "range", "median p99 ms", "rounds above 1 process"],
        rows,
        args.results,
    )


if __name__ == "__main__":
    main()
