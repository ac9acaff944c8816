"""One's own data: the dataset registry, the three forms a user's dataset comes in (a folder of
images, a `.npz`, TFRecords), any size and 1 or 3 channels, clear errors naming the bad file,
the purifier's architecture adapting to the size, and `lqvae train --data`."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from test_image_folder import make_folder, write_image

from lqvae_tf.classifiers import DATASET_SHAPES
from lqvae_tf.cli.main import main
from lqvae_tf.config import preset
from lqvae_tf.data import DATASETS, dataset_info, inspect_user_data, load, user_dataset
from lqvae_tf.data.registry import DatasetInfo
from lqvae_tf.models import LQVAE
from lqvae_tf.models.architectures import architecture_for
from lqvae_tf.pipeline_components.records import write_records

from conftest import tiny_config


def class_folders(root: Path, classes=5, per_class=8, shape=(32, 32, 3), extension=".png") -> Path:
    """`classes` subfolders of `per_class` random images each."""
    rng = np.random.default_rng(0)
    for label in range(classes):
        for index in range(per_class):
            write_image(root / f"class_{label}" / f"{index}{extension}", rng.integers(0, 256, shape, dtype=np.uint8))
    return root


def test_registry_is_what_the_loaders_and_classifiers_use(fmnist_test_arrays):
    assert set(DATASETS) == {"fashion_mnist", "mnist", "celeb_a"}
    assert {name: (info.image_shape, info.num_classes) for name, info in DATASETS.items()} == DATASET_SHAPES
    image, label = next(iter(load("fashion_mnist", "test", limit=1)))
    assert image.shape == dataset_info("fashion_mnist").image_shape
    assert 0 <= int(label) < dataset_info("fashion_mnist").num_classes
    for info in DATASETS.values():  # each dataset's preset builds a purifier of its shape
        assert preset(info.preset).image_shape == info.image_shape
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        dataset_info("svhn")


def test_a_folder_of_class_subfolders_reads_at_its_own_size_with_sorted_class_names(tmp_path):
    root = class_folders(tmp_path / "pets")
    info = inspect_user_data(root)
    assert (info.image_shape, info.num_classes, info.reader) == ((32, 32, 3), 5, "folder")
    assert info.class_names == tuple(f"class_{label}" for label in range(5))
    train, test = (list(load(str(root), split).as_numpy_iterator()) for split in ("train", "test"))
    assert (len(train), len(test)) == (32, 8)  # the seeded 80/20 split
    images = np.stack([image for image, _ in train])
    assert images.shape == (32, 32, 32, 3) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert {int(label) for _, label in train + test} == set(range(5))


def test_a_flat_folder_with_labels_csv_and_grey_images(tmp_path):
    pixels = make_folder(tmp_path, [(20, 24, 1)] * 6, [0, 1, 2, 0, 1, 2], subfolder="images")
    info = inspect_user_data(tmp_path)
    assert (info.image_shape, info.num_classes) == ((20, 24, 1), 3)
    (image, label), *_ = user_dataset(tmp_path, "all", value_range=(-1.0, 1.0)).as_numpy_iterator()
    np.testing.assert_allclose(image, pixels[0] / 127.5 - 1.0, atol=1e-6)
    assert label == 0


def test_npz_and_tfrecords_of_bytes_or_pixels(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (10, 30, 30), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(10) % 3)
    assert inspect_user_data(tmp_path / "d.npz").image_shape == (30, 30, 1)
    image, _ = next(iter(user_dataset(tmp_path / "d.npz", "all")))
    np.testing.assert_allclose(image.numpy()[..., 0], x[0] / 255.0, atol=1e-6)

    # TFRecords: square int64 pixels (the pipeline's own records), and encoded PNG bytes.
    write_records(str(tmp_path / "pixels" / "data.tfrecord"), rng.integers(0, 256, (6, 12, 12, 3)), [0, 1] * 3)
    assert inspect_user_data(tmp_path / "pixels").image_shape == (12, 12, 3)
    with tf.io.TFRecordWriter(str(tmp_path / "png.tfrecord")) as writer:
        for label in (0, 1, 1):
            png = tf.io.encode_png(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)).numpy()
            feature = {
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    info = inspect_user_data(tmp_path / "png.tfrecord")
    assert (info.image_shape, info.num_classes, info.reader) == ((9, 7, 3), 2, "tfrecord")


def test_mixed_sizes_are_refused_naming_both_files_unless_resized(tmp_path):
    make_folder(tmp_path, [(32, 32, 3), (32, 32, 3), (30, 32, 3)], [0, 1, 0])
    with pytest.raises(ValueError, match=r"mixed image sizes: .*000002\.png is 30x32, .*000000\.png is 32x32"):
        inspect_user_data(tmp_path)
    resized = user_dataset(tmp_path, "all", image_size=(16, 16))
    assert [image.shape for image, _ in resized] == [(16, 16, 3)] * 3


@pytest.mark.parametrize(
    "spoil, message",
    [
        (lambda root: (root / "class_1" / "3.png").write_bytes(b"not a png"), r"class_1/3\.png is not a readable"),
        (lambda root: (root / "class_0" / "0.png").write_bytes(b""), r"class_0/0\.png is empty \(0 bytes\)"),
    ],
)
def test_unreadable_and_empty_images_are_named(tmp_path, spoil, message):
    root = class_folders(tmp_path / "data", classes=2, per_class=4)
    spoil(root)
    with pytest.raises(ValueError, match=message):
        inspect_user_data(root)


def test_empty_folders_bad_labels_and_bad_arrays_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty folder"):
        inspect_user_data(tmp_path / "empty")
    make_folder(tmp_path / "csv", [(8, 8, 1)] * 2, ["0", "cat"])
    with pytest.raises(ValueError, match=r"labels\.csv, line 3: the label of 000001\.png is 'cat'"):
        inspect_user_data(tmp_path / "csv")
    np.savez(tmp_path / "float.npz", x=np.full((4, 8, 8), 3.0), y=[0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"float\.npz: float images must lie in \[0, 1\]"):
        inspect_user_data(tmp_path / "float.npz")
    np.savez(tmp_path / "nolabels.npz", x=np.zeros((4, 8, 8)))
    with pytest.raises(ValueError, match=r"nolabels\.npz has no array 'y'"):
        inspect_user_data(tmp_path / "nolabels.npz")
    (tmp_path / "junk.tfrecord").write_bytes(b"\x00" * 40)
    with pytest.raises(ValueError, match=r"junk\.tfrecord is not a readable TFRecord file"):
        inspect_user_data(tmp_path / "junk.tfrecord")


@pytest.mark.parametrize("shape", [(32, 32, 3), (17, 23, 1), (100, 80, 3)])
def test_the_purifier_adapts_to_any_size(shape):
    config = tiny_config(image_shape=shape, architecture=architecture_for(shape))
    assert config.architecture == "conv"
    images = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
    assert LQVAE(config).purify(images).shape == (2, *shape)


def test_the_paper_sizes_keep_the_paper_networks():
    assert architecture_for((28, 28, 1)) == "conv28" and architecture_for((64, 64, 3)) == "conv64"


def test_lqvae_train_on_a_folder_records_the_shape_in_the_resolved_config(tmp_path, capsys):
    root = class_folders(tmp_path / "pets", classes=5, per_class=6)
    out = tmp_path / "run"
    tiny = [
        "--set",
        "width=0.125",
        "--set",
        "latent_dim=16",
        "--batch-size",
        "16",
        "--epochs",
        "1",
        "--adversarial",
        "none",
    ]
    assert main(["train", "--data", str(root), "--out", str(out), "--verbose", "0", *tiny]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["image_shape"], config["architecture"]) == ([32, 32, 3], "conv")
    assert (out / "purifier.keras").is_file()
    assert "(32, 32, 3) images, 5 classes" in capsys.readouterr().out


def test_lqvae_train_on_bad_data_names_the_file_and_writes_nothing(tmp_path, capsys):
    root = class_folders(tmp_path / "pets", classes=2, per_class=3)
    write_image(root / "class_1" / "odd.png", np.zeros((31, 32, 3), np.uint8))
    out = tmp_path / "run"
    assert main(["train", "--data", str(root), "--out", str(out)]) == 2
    assert "odd.png is 31x32" in capsys.readouterr().err
    assert not out.exists()


def test_dataset_info_refuses_what_no_model_can_take():
    with pytest.raises(ValueError, match="1 or 3"):
        DatasetInfo("x", (8, 8, 2), 3)
    with pytest.raises(ValueError, match="at least 2 classes"):
        DatasetInfo("x", (8, 8, 1), 1)
    assert os.path.basename(dataset_info("celeb_a").name) == "celeb_a"
