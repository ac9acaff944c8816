"""`lqvae train` under MultiWorkerMirroredStrategy: two worker processes on loopback, started with TF_CONFIG."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import tensorflow as tf

from lqvae_tf.distribute import cluster_size, is_chief, make_strategy, shard_by_example, worker_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKERS = 2

# One worker: `lqvae train` as a user runs it (the strategy comes from TF_CONFIG), with the
# trained model caught on its way out of `fit_purifier` so the workers' weights can be compared.
WORKER = textwrap.dedent(
    """
    import hashlib, json, sys
    import numpy as np
    from lqvae_tf.cli.main import main
    from lqvae_tf.training import train

    fit_purifier, trained = train.fit_purifier, {}

    def catching_fit(*args, **kwargs):
        trained["model"], history = fit_purifier(*args, **kwargs)
        return trained["model"], history

    train.fit_purifier = catching_fit
    code = main(["train", "--dataset", "fashion_mnist", "--limit", "128", "--epochs", "1", "--batch-size", "32",
                 "--adversarial", "none", "--set", "width=0.125", "--set", "latent_dim=16",
                 "--set", "learning_rate=0.001", "--out", sys.argv[1], "--verbose", "0"])
    model = trained["model"]
    weights = model.encoder.get_weights() + model.decoder_hard.get_weights() + model.decoder_soft.get_weights()
    digest = hashlib.sha256(b"".join(np.asarray(w, np.float32).tobytes() for w in weights)).hexdigest()
    replicas = model.distribute_strategy.num_replicas_in_sync
    print(json.dumps({"code": code, "digest": digest, "replicas": replicas,
                      "finite": bool(all(np.isfinite(w).all() for w in weights))}))
    """
)


def free_ports(count: int) -> list[int]:
    """`count` loopback ports nobody listens on now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def test_lqvae_train_runs_on_two_workers_and_only_the_chief_keeps_the_run(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in free_ports(WORKERS)]
    out = tmp_path / "run"
    processes, logs = [], []
    for index in range(WORKERS):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO}
        # Files, not pipes: a worker blocked on a full pipe would stall the other in a collective.
        logs.append((tmp_path / f"worker{index}.out", tmp_path / f"worker{index}.err"))
        with open(logs[-1][0], "w") as stdout, open(logs[-1][1], "w") as stderr:
            command = [sys.executable, "-c", WORKER, str(out)]
            processes.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=stdout, stderr=stderr))
    try:
        for process in processes:
            process.wait(timeout=600)
    finally:
        for process in processes:
            process.kill()
    # A worker's result line comes after `lqvae train` returned (its exit status may also carry the
    # other worker's shutdown: the first to exit takes the cluster's coordination service with it).
    results = []
    for stdout, stderr in logs:
        lines = stdout.read_text().strip().splitlines()
        assert lines, stderr.read_text()[-3000:]
        results.append(json.loads(lines[-1]))

    assert [result["code"] for result in results] == [0, 0]  # both workers finished
    assert all(result["replicas"] == WORKERS for result in results)  # one replica per worker, in sync
    assert results[0]["digest"] == results[1]["digest"]  # the same weights on both workers
    assert all(result["finite"] for result in results)
    assert (out / "purifier.keras").is_file() and (out / "history.json").is_file()  # the chief's run
    assert not [name for name in os.listdir(out) if name.startswith("workertemp")]  # the other's removed
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss_g"]) == 1 and all(value == value and value < 1e3 for value in history["loss_g"])


def test_cluster_size_counts_the_tasks_tf_config_names(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cluster_size() == 0
    cluster = {"chief": ["a:1"], "worker": ["b:2", "c:3"], "ps": ["d:4"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "chief", "index": 0}}))
    assert cluster_size() == 3


def test_a_lone_process_is_its_own_chief_and_writes_in_place(tmp_path):
    strategy = make_strategy("default")
    assert is_chief(strategy)
    with worker_dir(str(tmp_path), strategy) as folder:
        assert folder == str(tmp_path)
    assert tmp_path.is_dir()  # the chief's folder stays
    options = shard_by_example(tf.data.Dataset.range(4)).options()
    assert options.experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA
