"""The `tf.distribute` strategy a training run uses: every GPU it is given, else the default.

TFX's Trainer hands `run_fn` whatever machine the orchestrator scheduled (a laptop, a Vertex
worker with 8 GPUs); the same code must use all of it. `MirroredStrategy` replicates the model
on each local GPU and all-reduces the gradients; with one GPU or none, the default strategy
(no replication) avoids MirroredStrategy's per-step overhead.
"""

from __future__ import annotations

import tensorflow as tf

STRATEGIES = ("auto", "mirrored", "default")


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The strategy called `name`.

    Args:
        name: "auto" (mirrored over the local GPUs when there are two or more, else the
            default), "mirrored" (always; over the CPU when there is no GPU), or "default".

    Raises:
        ValueError: an unknown name.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown distribution strategy {name!r}; choose one of {STRATEGIES}")
    if name == "mirrored" or (name == "auto" and len(tf.config.list_logical_devices("GPU")) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def replica_share(loss: tf.Tensor) -> tf.Tensor:
    """The loss one replica should differentiate so that the summed gradients equal the mean's.

    Keras 3.6's optimizers sum the replicas' gradients (`_all_reduce_sum_gradients`), and a
    custom `train_step` computes a per-replica mean, so each replica's loss is divided by the
    number of replicas in sync (1 outside a strategy: the loss itself).
    """
    replicas = tf.distribute.get_replica_context().num_replicas_in_sync
    return loss / tf.cast(replicas, loss.dtype) if replicas > 1 else loss
