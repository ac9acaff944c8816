"""Shared fixtures: small real slices of Fashion-MNIST and tiny model configurations."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lqvae_tf.config import LQVAEConfig, preset  # noqa: E402
from lqvae_tf.data import DEBIAN_FASHION_MNIST, load_idx_arrays  # noqa: E402


def tiny_config(**changes) -> LQVAEConfig:
    """The default preset at 1/8 width and latent 16, one clean epoch: seconds per test on a 2-core CPU.

    The learning rate is 1e-3 so that a few dozen steps move such a small model; the preset's
    adversarial retraining is off unless a test passes its own `adversarial`.
    """
    base = preset("fashion_mnist").replace(
        width=0.125, latent_dim=16, batch_size=32, epochs=1, learning_rate=1e-3, adversarial=None
    )
    return base.replace(**changes)


@pytest.fixture(scope="session")
def fmnist_test_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The real Fashion-MNIST test split (uint8 images, labels), read once per session."""
    if not os.path.isdir(DEBIAN_FASHION_MNIST):
        pytest.fail(f"{DEBIAN_FASHION_MNIST} is missing: run `make data` (the test suite needs it)")
    return load_idx_arrays(DEBIAN_FASHION_MNIST, "test")


@pytest.fixture(scope="session")
def fmnist_images(fmnist_test_arrays) -> np.ndarray:
    """512 real Fashion-MNIST test images as float32 in [0, 1]."""
    images, _ = fmnist_test_arrays
    return images[:512].astype(np.float32) / 255.0


SHARED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")


def shared_data_folder(variable: str, name: str) -> str:
    """A data folder of this project's machines: `$variable`, else `../shared/data/<name>` beside
    the repository. Missing, the test is skipped on a developer's machine and fails under CI."""
    folder = os.environ.get(variable) or os.path.normpath(os.path.join(SHARED_DATA, name))
    if not os.path.isdir(folder):
        message = f"{folder} is missing (set {variable}); CI machines have it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return folder


@pytest.fixture(scope="session")
def mnist_dir() -> str:
    """The folder of MNIST's four IDX files."""
    return shared_data_folder("LQVAE_MNIST_DIR", "mnist")


# The files that take minutes (TFX pipeline runs, the --quick studies, model training in
# subprocesses), longest first. `make test` runs the suite on two pytest-xdist workers with
# `--dist loadfile --no-loadscope-reorder`, so this order is the order files are handed out:
# the long ones start first and the many short files fill the gaps, instead of the two longest
# landing last on one worker.
LONGEST_FIRST = (
    "test_pipeline.py",
    "test_reproduce.py",
    "test_pipeline_user_data.py",
    "test_serving_server.py",
    "test_multi_worker.py",
    "test_distribute.py",
    "test_serving_batching.py",
    "test_serving_workers.py",
)


def pytest_collection_modifyitems(config, items) -> None:
    """Order the collected tests by file, LONGEST_FIRST's files ahead of the rest (stable)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.path)), len(rank)))
