"""The `tf.distribute` strategy a training run uses: every worker and GPU it is given, else the default.

TFX's Trainer hands `run_fn` whatever machines the orchestrator scheduled (a laptop, a Vertex
worker with 8 GPUs, a Vertex job of several workers); the same code must use all of it.
`MultiWorkerMirroredStrategy` replicates the model on every worker named by `TF_CONFIG` (Vertex
and Kubeflow set it; so does a test for local processes) and all-reduces the gradients between
them; `MirroredStrategy` does so over the GPUs of one machine; with one GPU or none, the default
strategy (no replication) avoids the per-step overhead.

Under several workers every worker runs the same code and writes the same artifacts, so only the
chief keeps them: `worker_dir` gives the others a scratch folder (TensorFlow's multi-worker
pattern), and `shard_by_example` makes each worker train on its share of every batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator

import tensorflow as tf

STRATEGIES = ("auto", "mirrored", "multi_worker", "default")


def cluster_size() -> int:
    """The number of tasks (chief and workers) in the cluster `TF_CONFIG` names; 0 without one."""
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    return sum(len(cluster.get(role, ())) for role in ("chief", "worker"))


class MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """`MultiWorkerMirroredStrategy` whose `reduce` takes what Keras 3's `fit` hands it.

    Keras 3 (3.6 here; still so upstream, keras-team/keras#20585) cannot `fit` under
    MultiWorkerMirroredStrategy: it first reduces one `(images, labels)` batch across the replicas
    to build the model, a nest this strategy refuses ("Attempt to convert a value
    (PerReplica...)"), and then reduces every step's logs with `axis=0`, scalars too ("Invalid
    reduction dimension 0 for input with 0 dimensions"). Here each value of a nest is reduced
    alone, as MirroredStrategy does, and a scalar over the replicas only.
    """

    def reduce(self, reduce_op, value, axis):
        reduce_one = super().reduce

        def reduce_item(item):
            local = item.values[0] if isinstance(item, tf.distribute.DistributedValues) else item
            return reduce_one(reduce_op, item, None if tf.convert_to_tensor(local).shape.rank == 0 else axis)

        return tf.nest.map_structure(reduce_item, value)


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The strategy called `name`.

    Under "multi_worker" (or "auto" with a cluster of two or more tasks), create the strategy
    before the program builds any model: TensorFlow starts the worker's server with it.

    Args:
        name: "auto" (multi-worker when `TF_CONFIG` names a cluster of two or more tasks, else
            mirrored over the local GPUs when there are two or more, else the default),
            "multi_worker" (`MultiWorkerMirroredStrategy` over `TF_CONFIG`'s cluster; alone
            without one), "mirrored" (always; over the CPU when there is no GPU), or "default".

    Raises:
        ValueError: an unknown name.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown distribution strategy {name!r}; choose one of {STRATEGIES}")
    if name == "multi_worker" or (name == "auto" and cluster_size() > 1):
        return MultiWorkerStrategy()
    if name == "mirrored" or (name == "auto" and len(tf.config.list_logical_devices("GPU")) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process keeps the run's artifacts: always, but on a non-chief worker of a cluster."""
    return bool(strategy.extended.should_checkpoint)


@contextlib.contextmanager
def worker_dir(path: str, strategy: tf.distribute.Strategy) -> Iterator[str]:
    """The folder this process writes what belongs in `path` to.

    `path` on the chief; on the other workers of a cluster a scratch folder inside it
    (`workertemp_<task id>`), removed when the block ends without an error (left on an error,
    so an interrupted worker's backup is there to resume from). Every worker still writes:
    saving a distributed model may take all of them.
    """
    if is_chief(strategy):
        yield path
        return
    scratch = os.path.join(path, f"workertemp_{strategy.cluster_resolver.task_id}")
    os.makedirs(scratch, exist_ok=True)
    yield scratch
    shutil.rmtree(scratch, ignore_errors=True)


def shard_by_example(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset`, split between the workers of a cluster by examples (each worker takes its share
    of every global batch), not by input files: in-memory arrays have no files, and a split in
    fewer files than workers cannot be divided by file."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def replica_share(loss: tf.Tensor) -> tf.Tensor:
    """The loss one replica should differentiate so that the summed gradients equal the mean's.

    Keras 3.6's optimizers sum the replicas' gradients (`_all_reduce_sum_gradients`), and a
    custom `train_step` computes a per-replica mean, so each replica's loss is divided by the
    number of replicas in sync (1 outside a strategy: the loss itself).
    """
    replicas = tf.distribute.get_replica_context().num_replicas_in_sync
    return loss / tf.cast(replicas, loss.dtype) if replicas > 1 else loss
