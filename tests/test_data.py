"""Datasets: the IDX path on the real Fashion-MNIST files, tfds through mock_data, clear errors."""

import gzip

import numpy as np
import pytest
import tensorflow_datasets as tfds

from lqvae_tf import data
from lqvae_tf.data import DEBIAN_FASHION_MNIST, DatasetUnavailableError


def test_real_fashion_mnist_idx_files_have_the_published_sizes():
    train_images, train_labels = data.load_idx_arrays(DEBIAN_FASHION_MNIST, "train")
    test_images, test_labels = data.load_idx_arrays(DEBIAN_FASHION_MNIST, "test")
    assert train_images.shape == (60_000, 28, 28, 1) and test_images.shape == (10_000, 28, 28, 1)
    assert train_images.dtype == np.uint8
    assert set(np.unique(train_labels)) == set(range(10))
    assert np.bincount(test_labels).tolist() == [1000] * 10  # the test split is balanced


@pytest.mark.parametrize("value_range", [(0.0, 1.0), (-1.0, 1.0)])
def test_fashion_mnist_pipeline_scales_to_the_value_range(value_range, fmnist_test_arrays):
    images, labels = zip(*data.fashion_mnist("test", value_range=value_range, limit=64).as_numpy_iterator())
    images, labels = np.stack(images), np.array(labels)
    raw_images, raw_labels = fmnist_test_arrays
    low, high = value_range
    assert images.shape == (64, 28, 28, 1) and images.dtype == np.float32
    np.testing.assert_allclose(images, raw_images[:64] / 255.0 * (high - low) + low, atol=1e-6)
    np.testing.assert_array_equal(labels, raw_labels[:64])


def test_gzipped_and_plain_idx_files_read_the_same(tmp_path, fmnist_test_arrays):
    with gzip.open(f"{DEBIAN_FASHION_MNIST}/t10k-labels-idx1-ubyte.gz") as handle:
        (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(handle.read())
    np.testing.assert_array_equal(data.read_idx(tmp_path / "t10k-labels-idx1-ubyte"), fmnist_test_arrays[1])


def test_truncated_idx_file_is_rejected_with_its_path(tmp_path):
    with gzip.open(f"{DEBIAN_FASHION_MNIST}/t10k-labels-idx1-ubyte.gz") as handle:
        (tmp_path / "broken").write_bytes(handle.read()[:-10])
    with pytest.raises(ValueError, match="broken holds 9990 bytes"):
        data.read_idx(tmp_path / "broken")
    (tmp_path / "text").write_bytes(b"not an idx file")
    with pytest.raises(ValueError, match="bad magic"):
        data.read_idx(tmp_path / "text")


def test_missing_idx_folder_says_how_to_get_the_data(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="apt-get install dataset-fashion-mnist"):
        data.fashion_mnist(source="idx", data_dir=str(tmp_path))


def test_tfds_dataset_absent_and_download_off_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="with a network"):
        data.mnist(source="tfds", data_dir=str(tmp_path), download=False)


def test_tfds_dataset_absent_offline_fails_fast_without_downloading(tmp_path, monkeypatch):
    def no_network(address, timeout=None):
        raise OSError("network is unreachable")

    monkeypatch.setattr("socket.create_connection", no_network)
    with pytest.raises(DatasetUnavailableError, match="no network to download it"):
        data.mnist(source="tfds", data_dir=str(tmp_path))


@pytest.mark.parametrize("loader", [data.mnist, data.fashion_mnist])
def test_tfds_path_for_digits_through_mock_data(loader):
    with tfds.testing.mock_data(num_examples=6):
        pairs = list(loader("train", source="tfds", value_range=(-1.0, 1.0)).as_numpy_iterator())
    assert len(pairs) == 6
    for image, label in pairs:
        assert image.shape == (28, 28, 1) and image.dtype == np.float32
        assert -1.0 <= image.min() and image.max() <= 1.0 and 0 <= label <= 9


def test_celeb_a_is_64x64x3_faces_labelled_by_gender():
    with tfds.testing.mock_data(num_examples=5):
        pairs = list(data.celeb_a("train", limit=4, source="tfds").as_numpy_iterator())
    assert len(pairs) == 4
    for image, label in pairs:
        assert image.shape == (64, 64, 3) and image.dtype == np.float32
        assert 0.0 <= image.min() and image.max() <= 1.0 and label in (0, 1)


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="unknown dataset 'cifar10'"):
        data.load("cifar10")
    with pytest.raises(ValueError, match="split must be one of"):
        data.fashion_mnist("validation")


def test_mnist_is_read_from_an_idx_folder_named_by_data_dir_or_the_environment(mnist_dir, monkeypatch):
    monkeypatch.delenv("LQVAE_MNIST_DIR", raising=False)
    by_argument = list(data.mnist("test", data_dir=mnist_dir, limit=3).as_numpy_iterator())
    assert [int(label) for _, label in by_argument] == [7, 2, 1]  # the first three MNIST test digits
    monkeypatch.setenv("LQVAE_MNIST_DIR", mnist_dir)
    by_variable = list(data.mnist("test", limit=3, value_range=(-1.0, 1.0)).as_numpy_iterator())
    for (image, label), (reference, reference_label) in zip(by_variable, by_argument):
        assert image.shape == (28, 28, 1) and label == reference_label
        np.testing.assert_allclose(image, reference * 2 - 1, atol=1e-6)
    train = data.load_idx_arrays(mnist_dir, "train")
    assert train[0].shape == (60_000, 28, 28, 1) and np.bincount(train[1]).tolist()[:2] == [5923, 6742]


def test_a_named_mnist_folder_without_the_files_is_an_error_not_a_download(tmp_path, monkeypatch):
    monkeypatch.setenv("LQVAE_MNIST_DIR", str(tmp_path))
    with pytest.raises(data.DatasetUnavailableError, match="LQVAE_MNIST_DIR"):
        data.mnist("test")


def test_take_images_reads_image_only_and_labelled_datasets_alike():
    import tensorflow as tf

    from lqvae_tf.data import take_images

    images = np.arange(5 * 4, dtype=np.float32).reshape(5, 2, 2, 1)
    alone = tf.data.Dataset.from_tensor_slices(images)
    labelled = tf.data.Dataset.from_tensor_slices((images, np.arange(5)))
    np.testing.assert_array_equal(take_images(alone, 3), images[:3])
    np.testing.assert_array_equal(take_images(labelled, 3), images[:3])


def test_split_arrays_reads_a_whole_split_in_batches_and_its_first_examples_alike(fmnist_test_arrays):
    images, labels = data.split_arrays("fashion_mnist", "test", value_range=(0.0, 1.0))
    raw_images, raw_labels = fmnist_test_arrays
    assert images.shape == (10_000, 28, 28, 1) and images.dtype == np.float32 and labels.dtype == np.int64
    np.testing.assert_array_equal(labels, raw_labels)
    np.testing.assert_allclose(images, raw_images.reshape(images.shape) / 255.0, atol=1e-6)
    first, first_labels = data.first_examples("fashion_mnist", "test", 3, value_range=(-1.0, 1.0))
    np.testing.assert_allclose(first, images[:3] * 2 - 1, atol=1e-6)
    np.testing.assert_array_equal(first_labels, labels[:3])


def test_split_arrays_of_an_empty_split_says_which_split_rather_than_failing_in_numpy():
    with pytest.raises(ValueError, match="the test split of 'fashion_mnist' holds no examples"):
        data.split_arrays("fashion_mnist", "test", limit=0)
