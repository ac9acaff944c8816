"""A folder of images plus a label file: generated folders, the seeded split, clear errors, and the
real CelebA subset (`../shared/data/celeba`, or `$LQVAE_CELEBA_DIR`)."""

import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from lqvae_tf import data
from lqvae_tf.data import DatasetUnavailableError, image_folder, image_folder_files
from lqvae_tf.data.datasets import celeb_a_image
from lqvae_tf.data.image_folder import center_crop_resized, split_rows

from conftest import shared_data_folder

# CelebA's subset as its README describes it: 10,000 faces, 4,217 of them male.
CELEBA_IMAGES, CELEBA_MALE = 10_000, 4_217


def write_image(path: Path, pixels: np.ndarray) -> None:
    """`pixels` (uint8, height x width x channels) as a PNG or JPEG, by the file's extension."""
    encode = tf.io.encode_png if path.suffix == ".png" else tf.io.encode_jpeg
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(pixels).numpy())


def make_folder(root: Path, shapes, labels, extension=".png", subfolder="images", seed=0) -> list[np.ndarray]:
    """A folder of random images of `shapes` and their labels.csv; returns the pixels written."""
    rng = np.random.default_rng(seed)
    pixels = [rng.integers(0, 256, size=shape, dtype=np.uint8) for shape in shapes]
    rows = ["image,label"]
    for index, (image, label) in enumerate(zip(pixels, labels)):
        name = f"{index:06d}{extension}"
        write_image(root / subfolder / name, image)
        rows.append(f"{name},{label}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return pixels


def as_arrays(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    images, labels = zip(*dataset.as_numpy_iterator())
    return np.stack(images), np.array(labels)


@pytest.mark.parametrize("value_range", [(0.0, 1.0), (-1.0, 1.0)])
def test_folder_gives_64x64x3_images_in_the_value_range_with_their_labels(tmp_path, value_range):
    shapes = [(109, 89, 3), (30, 40, 3), (64, 64, 3), (218, 178, 3), (10, 10, 3)]
    make_folder(tmp_path, shapes, labels=[1, 0, 7, 0, 1])
    images, labels = as_arrays(image_folder(tmp_path, value_range=value_range))
    assert images.shape == (5, 64, 64, 3) and images.dtype == np.float32
    assert value_range[0] <= images.min() < images.max() <= value_range[1]
    assert labels.dtype == np.int64 and labels.tolist() == [1, 0, 7, 0, 1]


def test_image_is_its_central_square_resized():
    # 218x178 like CelebA's aligned faces: 20 rows of white above and below a grey 178x178 square.
    face = np.full((218, 178, 3), 255, np.uint8)
    face[20:198] = 100
    for resized in (center_crop_resized(face, (64, 64)), celeb_a_image(face)):
        assert resized.shape == (64, 64, 3)
        np.testing.assert_allclose(resized, 100 / 255, atol=1e-5)
    # Wide images lose their sides; a non-square size keeps its aspect ratio instead of stretching.
    wide = np.full((40, 100, 1), 255, np.uint8)
    wide[:, 30:70] = 0
    np.testing.assert_allclose(center_crop_resized(wide, (8, 8)), 0.0, atol=1e-5)
    half_height = center_crop_resized(face, (32, 64), value_range=(-1.0, 1.0))
    assert half_height.shape == (32, 64, 3)
    np.testing.assert_allclose(half_height, 100 / 255 * 2 - 1, atol=1e-5)


def test_png_pixels_survive_when_no_resizing_is_needed(tmp_path):
    pixels = make_folder(tmp_path, [(32, 32, 3)], labels=[3])
    images, _ = as_arrays(image_folder(tmp_path, image_size=(32, 32)))
    np.testing.assert_allclose(images[0], pixels[0] / 255.0, atol=1e-5)


def test_jpegs_beside_the_label_file_read_as_grayscale(tmp_path):
    make_folder(tmp_path, [(50, 40, 3), (40, 50, 3)], labels=[0, 1], extension=".jpg", subfolder=".")
    images, labels = as_arrays(image_folder(tmp_path, image_size=(28, 28), channels=1))
    assert images.shape == (2, 28, 28, 1) and labels.tolist() == [0, 1]


def test_split_is_seeded_disjoint_and_covers_every_row():
    train, test = split_rows(10_000, "train"), split_rows(10_000, "test")
    assert (len(train), len(test)) == (8_000, 2_000)
    assert not set(train) & set(test)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(10_000))
    np.testing.assert_array_equal(split_rows(10_000, "test"), test)  # the same on every call
    assert not np.array_equal(split_rows(10_000, "test", seed=1), test)
    np.testing.assert_array_equal(split_rows(10, "all"), np.arange(10))
    with pytest.raises(ValueError, match="split must be one of"):
        split_rows(10, "validation")


def test_folder_splits_keep_the_label_file_order_and_never_share_an_image(tmp_path):
    make_folder(tmp_path, [(8, 8, 3)] * 10, labels=range(10))
    train_paths, train_labels = image_folder_files(tmp_path, "train")
    test_paths, test_labels = image_folder_files(tmp_path, "test")
    assert (len(train_paths), len(test_paths)) == (8, 2)
    assert not set(train_paths) & set(test_paths)
    assert sorted(train_labels.tolist() + test_labels.tolist()) == list(range(10))
    assert train_labels.tolist() == sorted(train_labels.tolist())
    assert image_folder(tmp_path, "test").cardinality() == 2
    assert image_folder(tmp_path, "train", limit=3).cardinality() == 3


def break_folder(root: Path, how: str) -> tuple[Path, str]:
    """A generated folder broken in one way; returns the folder and the file the error must name."""
    make_folder(root / "faces", [(8, 8, 3)] * 3, labels=[0, 1, 0])
    folder, labels = root / "faces", root / "faces" / "labels.csv"
    if how == "missing folder":
        return root / "nowhere", str(root / "nowhere")
    if how == "missing label file":
        labels.unlink()
    elif how == "empty label file":
        labels.write_text("")
    elif how == "header only":
        labels.write_text("image,label\n")
    elif how == "label not an integer":
        labels.write_text("image,label\n000000.png,0\n000001.png,male\n000002.png,0\n")
    elif how == "listed image missing":
        (folder / "images" / "000001.png").unlink()
        return folder, str(folder / "images" / "000001.png")
    return folder, str(labels)


BAD_FOLDERS = {
    "missing folder": (FileNotFoundError, "does not exist"),
    "missing label file": (FileNotFoundError, "has no label file"),
    "empty label file": (ValueError, "lists no images"),
    "header only": (ValueError, "lists no images"),
    "label not an integer": (ValueError, "line 3: the label of 000001.png is 'male', not an integer"),
    "listed image missing": (FileNotFoundError, "is listed in .* but does not exist"),
}


@pytest.mark.parametrize("how", BAD_FOLDERS)
def test_bad_folder_is_rejected_naming_the_offending_file(tmp_path, how):
    folder, offending = break_folder(tmp_path, how)
    error_type, message = BAD_FOLDERS[how]
    with pytest.raises(error_type, match=message) as raised:
        image_folder(folder)
    assert offending in str(raised.value)


@pytest.mark.parametrize("how", ["missing label file", "listed image missing"])
def test_celeb_a_folder_that_is_not_there_says_how_to_get_it(tmp_path, monkeypatch, how):
    folder, offending = break_folder(tmp_path, how)
    monkeypatch.setenv("LQVAE_CELEBA_DIR", str(folder))  # a named folder never turns into a download
    split = "test" if 1 in split_rows(3, "test") else "train"  # the split that lists image 000001
    with pytest.raises(DatasetUnavailableError, match="LQVAE_CELEBA_DIR") as raised:
        data.celeb_a(split)
    assert offending in str(raised.value)


def test_celeb_a_reads_a_folder_named_by_data_dir_or_the_environment(tmp_path, monkeypatch):
    make_folder(tmp_path, [(109, 89, 3)] * 10, labels=[0, 1] * 5)
    monkeypatch.delenv("LQVAE_CELEBA_DIR", raising=False)
    from_data_dir = as_arrays(data.celeb_a("train", value_range=(-1.0, 1.0), data_dir=str(tmp_path)))
    monkeypatch.setenv("LQVAE_CELEBA_DIR", str(tmp_path))
    from_environment = as_arrays(data.load("celeb_a", "train", value_range=(-1.0, 1.0)))
    assert from_data_dir[0].shape == (8, 64, 64, 3)
    for got, expected in zip(from_environment, from_data_dir):
        np.testing.assert_array_equal(got, expected)


def test_celeb_a_without_a_folder_comes_from_tensorflow_datasets(monkeypatch, tmp_path):
    monkeypatch.delenv("LQVAE_CELEBA_DIR", raising=False)
    with tfds.testing.mock_data(num_examples=3):
        auto = list(data.celeb_a("train").as_numpy_iterator())
        monkeypatch.setenv("LQVAE_CELEBA_DIR", str(tmp_path / "nowhere"))
        forced = list(data.celeb_a("test", source="tfds", limit=2).as_numpy_iterator())
    assert (len(auto), len(forced)) == (3, 2)
    for image, label in auto + forced:
        assert image.shape == (64, 64, 3) and 0.0 <= image.min() and image.max() <= 1.0 and label in (0, 1)


@pytest.fixture
def celeba_dir(monkeypatch) -> str:
    folder = shared_data_folder("LQVAE_CELEBA_DIR", "celeba")
    monkeypatch.setenv("LQVAE_CELEBA_DIR", folder)
    return folder


def test_real_celeb_a_subset_gives_64x64_faces_labelled_0_or_1(celeba_dir):
    images, labels = as_arrays(data.celeb_a("test", limit=8))
    assert images.shape == (8, 64, 64, 3) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert images.std(axis=(1, 2, 3)).min() > 0.05  # pictures, not blank frames
    assert set(labels.tolist()) <= {0, 1}


def test_real_celeb_a_subset_splits_8000_train_2000_test_the_same_everywhere(celeba_dir):
    train_paths, train_labels = image_folder_files(celeba_dir, "train")
    test_paths, test_labels = image_folder_files(celeba_dir, "test")
    assert (len(train_paths), len(test_paths)) == (8_000, 2_000)
    assert len(train_paths) + len(test_paths) == CELEBA_IMAGES
    assert train_labels.sum() + test_labels.sum() == CELEBA_MALE
    assert data.celeb_a("train").cardinality() == 8_000 and data.celeb_a("test").cardinality() == 2_000
    # Pinned: if numpy's generator or the split rule changed, every CelebA result would move.
    assert [os.path.basename(path) for path in test_paths[:5]] == [
        "000002.jpg",
        "000005.jpg",
        "000016.jpg",
        "000018.jpg",
        "000028.jpg",
    ]
