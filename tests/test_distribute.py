"""The training runs' tf.distribute strategy: replicated training on two devices, loss shares, choice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

from lqvae_tf.distribute import make_strategy, replica_share

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a fresh process: logical devices must be configured before TensorFlow starts.
TWO_REPLICAS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, "tests")
    from conftest import tiny_config
    from lqvae_tf.data import DEBIAN_FASHION_MNIST, load_idx_arrays
    from lqvae_tf.distribute import replica_share
    from lqvae_tf.training import fit_purifier

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    shares = strategy.experimental_local_results(strategy.run(lambda: replica_share(tf.constant(1.0))))
    images, _ = load_idx_arrays(DEBIAN_FASHION_MNIST, "test")
    images = (images[:320].astype("float32") / 255.0).reshape(-1, 28, 28, 1)
    data = tf.data.Dataset.from_tensor_slices(images)
    config = tiny_config(epochs=3)
    model, history = fit_purifier(config, data, data.take(32), sys.argv[1], images[:4], verbose=0, strategy=strategy)
    purified = model.purify(images[:8])

    # Madry PGD training replicates too; WGAN-GP refuses clearly (its generator turn is a tf.cond).
    from lqvae_tf.classifiers import AdversarialTrainer, build_classifier
    from lqvae_tf.models import WGANGP
    labels = np.arange(len(images)) % 10
    with strategy.scope():
        classifier = build_classifier("E", (28, 28, 1), 10)
        madry = AdversarialTrainer(classifier, method="pgd", eps=0.1, steps=2, step_size=0.05)
        madry.compile(optimizer="adam")
        gan = WGANGP((28, 28, 1), latent_dim=8, width=0.125, critic_steps=2)
        gan.compile()
    madry_loss = madry.fit(images, labels, batch_size=32, epochs=1, verbose=0).history["loss"]
    try:
        gan.fit(images, batch_size=32, epochs=1, verbose=0)
        gan_error = ""
    except ValueError as error:
        gan_error = str(error)
    print(json.dumps({
        "baseline_losses": madry_loss,
        "gan_error": gan_error,
        "replicas": strategy.num_replicas_in_sync,
        "shares": [float(s) for s in shares],
        "loss_g": history["loss_g"],
        "val_loss_g": history["val_loss_g"],
        "purified_shape": list(purified.shape),
        "purified_finite": bool(np.isfinite(purified).all()),
        "variables_mirrored": type(model.encoder.trainable_variables[0].value).__name__,
    }))
    """
)


def test_fit_purifier_trains_replicated_over_two_devices(tmp_path):
    """MirroredStrategy over two CPU devices: the LQ-VAE's custom train_step trains on both replicas."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO}
    completed = subprocess.run(
        [sys.executable, "-c", TWO_REPLICAS, str(tmp_path / "logs")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["shares"] == [0.5, 0.5]  # each replica differentiates half of its mean loss
    assert all(value == value and value < 1e3 for value in result["loss_g"] + result["val_loss_g"])
    assert result["loss_g"][-1] < result["loss_g"][0]  # it learns
    assert result["purified_shape"] == [8, 28, 28, 1] and result["purified_finite"]
    assert "Mirrored" in result["variables_mirrored"] or "Distributed" in result["variables_mirrored"]
    assert os.listdir(tmp_path / "logs")  # TensorBoard logs written
    assert all(abs(value) < 1e3 for value in result["baseline_losses"])  # Madry training replicated
    assert "WGANGP trains on a single replica" in result["gan_error"]


def test_replica_share_is_the_loss_itself_without_replicas():
    assert float(replica_share(tf.constant(3.0))) == 3.0


def test_make_strategy_choices():
    assert make_strategy("default") is tf.distribute.get_strategy()
    if len(tf.config.list_logical_devices("GPU")) < 2:
        assert make_strategy("auto") is tf.distribute.get_strategy()
    assert make_strategy("mirrored").num_replicas_in_sync >= 1
    with pytest.raises(ValueError, match="unknown distribution strategy 'tpu'"):
        make_strategy("tpu")
