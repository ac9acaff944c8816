"""A user's own dataset, in any of three forms, as a `tf.data` pipeline of (image, label).

* a folder of PNG/JPEG (or GIF, BMP) images, either flat with a `labels.csv` (a header row, then
  `file name,integer label` rows; see `lqvae_tf.data.image_folder`) or one subfolder per class
  (class names sorted, as `keras.utils.image_dataset_from_directory` orders them);
* a `.npz` holding `x` (N, height, width[, 1 or 3]: uint8 in [0, 255] or float in [0, 1]) and
  `y` (N integer labels);
* TFRecords of `tf.train.Example` (one file, or a folder of `*.tfrecord[s][.gz]`), each with an
  `image` feature (encoded PNG/JPEG bytes, or the pixels as a float list in [0, 1] or an int64
  list in [0, 255], shaped by `height`/`width`/`channels` features or, without them, square) and
  an int64 `label`.

Any image size and 1 or 3 channels: `inspect_user_data` finds the shape (images with an alpha
channel lose it; a mix of grey and colour images is read as colour). All images must share one
size unless `image_size` is given, in which case every image is cropped to its central box of
that aspect ratio and resized, antialiased, to it (`center_crop_resized`). Labels run from 0;
the number of classes is the largest label plus one.

Everything is checked up front, before any training writes a file: every image is decoded once
(folders) or read (npz, TFRecords), and a bad file raises `ValueError` naming it: unreadable or
empty files, mixed sizes, an empty folder, labels that do not parse. The train/test split is the
seeded 80/20 split of `lqvae_tf.data.image_folder` (same rule, same seed).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import zipfile
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from lqvae_tf.data.image_folder import (
    LABELS_FILE,
    SPLIT_SEED,
    TEST_FRACTION,
    center_crop_resized,
    image_folder_files,
    scale_pixels,
    split_rows,
)
from lqvae_tf.data.registry import PIXEL_RANGE, DatasetInfo

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp")
RECORD_EXTENSIONS = (".tfrecord", ".tfrecords", ".tfrecord.gz", ".tfrecords.gz")
# Feature names of a TFRecord example (the first present is used).
IMAGE_FEATURES = ("image", "image_raw", "image/encoded")
LABEL_FEATURES = ("label", "image/class/label")
SHAPE_FEATURES = ("height", "width", "channels")


KINDS = ("folder", "npz", "tfrecord")


@dataclasses.dataclass(frozen=True)
class _Files:
    """What one scan of a user's dataset found (every image read once)."""

    kind: str  # one of KINDS
    labels: np.ndarray  # int64 (N,)
    sizes: tuple[tuple[int, int], ...]  # (height, width) of each image
    channels: int  # 1 or 3
    names: tuple[str, ...]  # each image's file (folder) or file and record/row (npz, TFRecords)
    class_names: tuple[str, ...] = ()
    paths: np.ndarray | None = None  # folder: the image files, decoded lazily
    pixels: tuple[np.ndarray, ...] = ()  # npz, TFRecords: float32 images in [0, 255]


def _channels(native: int) -> int:
    """1 for grey (with or without alpha), else 3 (alpha dropped)."""
    return 1 if native in (1, 2) else 3


def _to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """An (height, width, native channels) image with `channels` (1 or 3) channels; alpha dropped."""
    image = image[..., : _channels(image.shape[-1])]
    if image.shape[-1] == channels:
        return image
    converted = tf.image.grayscale_to_rgb(image) if channels == 3 else tf.image.rgb_to_grayscale(image)
    return converted.numpy()


def _check_labels(labels: np.ndarray, names: Sequence[str], where: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        if labels.ndim == 1 and np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0):
            labels = labels.astype(np.int64)
        else:
            raise ValueError(f"{where}: labels must be integers (one per image), got {labels.dtype} {labels.shape}")
    negative = np.flatnonzero(labels < 0)
    if negative.size:
        raise ValueError(f"{where}: the label of {names[negative[0]]} is {labels[negative[0]]}; labels run from 0")
    return labels.astype(np.int64)


def _decode(path: str) -> tf.Tensor:
    """A file's image at its own size and channel count; ValueError naming the file if it is not one."""
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path} is empty (0 bytes)")
    try:
        return tf.io.decode_image(tf.io.read_file(path), channels=0, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        raise ValueError(f"{path} is not a readable PNG/JPEG/GIF/BMP image ({error.message.splitlines()[0]})") from None


def _image_files(folder: str) -> list[str]:
    return sorted(
        name
        for name in os.listdir(folder)
        if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, name))
    )


def _scan_folder(folder: str) -> _Files:
    if os.path.isfile(os.path.join(folder, LABELS_FILE)):
        paths, labels = image_folder_files(folder, "all")
        class_names = ()
        where = os.path.join(folder, LABELS_FILE)
    else:
        class_names = tuple(sorted(name for name in os.listdir(folder) if os.path.isdir(os.path.join(folder, name))))
        subfolders = [(os.path.join(folder, name), label) for label, name in enumerate(class_names)]
        listed = [(os.path.join(sub, file), label) for sub, label in subfolders for file in _image_files(sub)]
        if not listed:
            loose = _image_files(folder)
            hint = (
                f" ({len(loose)} images but no {LABELS_FILE}: add one, or move them into one subfolder per class)"
                if loose
                else ""
            )
            raise ValueError(f"{folder} holds no labelled images{hint}")
        paths = np.array([path for path, _ in listed])
        labels = np.array([label for _, label in listed], dtype=np.int64)
        where = folder
    labels = _check_labels(labels, paths, where)
    images = [_decode(path) for path in paths]
    natives = {int(image.shape[-1]) for image in images}
    return _Files(
        "folder",
        labels,
        tuple((int(image.shape[0]), int(image.shape[1])) for image in images),
        max(_channels(native) for native in natives),
        tuple(str(path) for path in paths),
        class_names,
        paths=paths,
    )


def _pixel_array(array: np.ndarray, where: str) -> np.ndarray:
    """uint8 / integer [0, 255] or float [0, 1] pixels -> float32 [0, 255], or ValueError naming `where`."""
    array = np.asarray(array)
    if array.size == 0:
        return array.astype(np.float32)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{where}: images have dtype {array.dtype}; expected uint8 in [0, 255] or float in [0, 1]")
    low, high = float(array.min()), float(array.max())
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or low < 0.0 or high > 1.0:
            raise ValueError(f"{where}: float images must lie in [0, 1], found values in [{low:g}, {high:g}]")
        return array.astype(np.float32) * PIXEL_RANGE[1]
    if low < PIXEL_RANGE[0] or high > PIXEL_RANGE[1]:
        raise ValueError(f"{where}: integer images must lie in [0, 255], found values in [{low:g}, {high:g}]")
    return array.astype(np.float32)


def _scan_npz(path: str) -> _Files:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"{path} is not a readable .npz file ({error})") from None
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing:
        raise ValueError(
            f"{path} has no array {missing[0]!r} (it holds {sorted(arrays)}; expected x: images, y: labels)"
        )
    images, labels = arrays["x"], arrays["y"]
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"{path}: x has shape {images.shape}; expected (N, height, width) or (N, height, width, 1 or 3)"
        )
    if len(images) == 0:
        raise ValueError(f"{path} holds no images (x is empty)")
    if labels.shape != (len(images),):
        raise ValueError(f"{path}: y has shape {labels.shape}; expected one label per image, ({len(images)},)")
    names = tuple(f"{path}, row {row}" for row in range(len(images)))
    pixels = _pixel_array(images, path)
    return _Files(
        "npz",
        _check_labels(labels, names, path),
        ((images.shape[1], images.shape[2]),) * len(images),
        images.shape[-1],
        names,
        pixels=tuple(pixels),
    )


def _record_files(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    return sorted(os.path.join(path, name) for name in os.listdir(path) if name.lower().endswith(RECORD_EXTENSIONS))


def _feature(example: tf.train.Example, names: Sequence[str]):
    for name in names:
        if name in example.features.feature:
            return name, example.features.feature[name]
    return None, None


def _square_shape(count: int, where: str) -> tuple[int, int, int]:
    for channels in (1, 3):
        side = round((count / channels) ** 0.5)
        if side * side * channels == count:
            return side, side, channels
    raise ValueError(
        f"{where}: {count} pixel values are no square image of 1 or 3 channels; add int64 features "
        f"{', '.join(SHAPE_FEATURES)}"
    )


def _record_image(example: tf.train.Example, where: str) -> np.ndarray:
    """One example's image as float32 [0, 255], (height, width, native channels)."""
    name, feature = _feature(example, IMAGE_FEATURES)
    if feature is None:
        raise ValueError(f"{where}: no image feature (expected one of {', '.join(IMAGE_FEATURES)})")
    kind = feature.WhichOneof("kind")
    if kind == "bytes_list":
        try:
            image = tf.io.decode_image(feature.bytes_list.value[0], channels=0, expand_animations=False)
        except (tf.errors.InvalidArgumentError, IndexError):
            raise ValueError(f"{where}: feature {name!r} is not an encoded PNG/JPEG image") from None
        return image.numpy().astype(np.float32)
    values = np.array(feature.float_list.value if kind == "float_list" else feature.int64_list.value)
    if values.size == 0:
        raise ValueError(f"{where}: feature {name!r} is empty")
    sizes = [
        example.features.feature[key].int64_list.value for key in SHAPE_FEATURES if key in example.features.feature
    ]
    shape = tuple(int(size[0]) for size in sizes) if len(sizes) == 3 else _square_shape(values.size, where)
    if int(np.prod(shape)) != values.size:
        raise ValueError(f"{where}: {values.size} pixel values do not fill its {shape} image")
    return _pixel_array(values.reshape(shape), where)


def _scan_records(path: str) -> _Files:
    files = _record_files(path)
    if not files:
        raise ValueError(f"{path} holds no TFRecord files ({', '.join(RECORD_EXTENSIONS)})")
    images, labels, names = [], [], []
    for file in files:
        compression = "GZIP" if file.endswith(".gz") else None
        try:
            for index, record in enumerate(tf.data.TFRecordDataset(file, compression_type=compression)):
                where = f"{file}, record {index}"
                try:
                    example = tf.train.Example.FromString(record.numpy())
                except Exception:  # protobuf's DecodeError
                    raise ValueError(f"{where} is not a tf.train.Example") from None
                _, label = _feature(example, LABEL_FEATURES)
                if label is None or len(label.int64_list.value) != 1:
                    raise ValueError(f"{where}: no int64 label (expected one of {', '.join(LABEL_FEATURES)})")
                images.append(_record_image(example, where))
                labels.append(label.int64_list.value[0])
                names.append(where)
        except tf.errors.OpError as error:
            raise ValueError(f"{file} is not a readable TFRecord file ({error.message.splitlines()[0]})") from None
    if not images:
        raise ValueError(f"{path} holds no examples")
    channels = max(_channels(image.shape[-1]) for image in images)
    images = [_to_channels(image, channels) for image in images]
    return _Files(
        "tfrecord",
        _check_labels(np.array(labels, dtype=np.int64), names, path),
        tuple((image.shape[0], image.shape[1]) for image in images),
        channels,
        tuple(names),
        pixels=tuple(images),
    )


@functools.lru_cache(maxsize=4)
def _scan_cached(path: str, stamp: tuple) -> _Files:
    del stamp  # part of the cache key only: a changed file is scanned again
    if os.path.isdir(path):
        if os.listdir(path) == []:
            raise ValueError(f"{path} is an empty folder")
        has_records = any(name.lower().endswith(RECORD_EXTENSIONS) for name in os.listdir(path))
        return _scan_records(path) if has_records else _scan_folder(path)
    if path.lower().endswith(".npz"):
        return _scan_npz(path)
    if path.lower().endswith(RECORD_EXTENSIONS):
        return _scan_records(path)
    raise ValueError(f"{path}: unknown dataset form; give a folder of images, a .npz or TFRecords")


def _scan(path: str | os.PathLike) -> _Files:
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist")
    stat = os.stat(path)
    return _scan_cached(path, (stat.st_mtime_ns, stat.st_size))


def _size(files: _Files, image_size: Sequence[int] | None) -> tuple[int, int]:
    if image_size is not None:
        height, width = (int(v) for v in image_size)
        if height < 1 or width < 1:
            raise ValueError(f"image_size must be (height, width) of positive integers, got {tuple(image_size)}")
        return height, width
    first = files.sizes[0]
    for name, size in zip(files.names, files.sizes):
        if size != first:
            raise ValueError(
                f"mixed image sizes: {name} is {size[0]}x{size[1]}, {files.names[0]} is {first[0]}x{first[1]}; "
                "give image_size (--image-size HxW) to crop and resize every image to one size"
            )
    return first


def inspect_user_data(path: str | os.PathLike, image_size: Sequence[int] | None = None) -> DatasetInfo:
    """Reads every image of a user's dataset once and describes it; see the module docstring.

    Args:
        path: a folder of images, a `.npz`, or a TFRecord file or folder.
        image_size: (height, width) to resize to; None keeps the images' own size, which they
            must then share.

    Returns:
        A `DatasetInfo` named `path`: the image shape the loader yields and the number of classes.

    Raises:
        ValueError: the files are not a dataset (see the module docstring); the message names the file.
        FileNotFoundError: `path`, or an image its label file lists, does not exist.
    """
    files = _scan(path)
    height, width = _size(files, image_size)
    num_classes = int(files.labels.max()) + 1
    if num_classes < 2:
        raise ValueError(f"{path}: every image has label 0; a classification dataset needs at least two classes")
    return DatasetInfo(
        os.fspath(path),
        image_shape=(height, width, files.channels),
        num_classes=num_classes,
        reader=files.kind,
        class_names=files.class_names,
    )


def user_dataset(
    path: str | os.PathLike,
    split: str = "train",
    value_range: Sequence[float] = (0.0, 1.0),
    image_size: Sequence[int] | None = None,
    channels: int | None = None,
    limit: int | None = None,
    test_fraction: float = TEST_FRACTION,
    seed: int = SPLIT_SEED,
    shard: tuple[int, int] | None = None,
) -> tf.data.Dataset:
    """A user's dataset as (float32 image in `value_range`, int64 label); see the module docstring.

    Args:
        path: a folder of images, a `.npz`, or a TFRecord file or folder.
        split: "train", "test" (the seeded split of `lqvae_tf.data.image_folder`) or "all".
        value_range: the pixel range to scale to (the model's `config.value_range`).
        image_size: (height, width) to crop and resize every image to; None keeps their own
            (shared) size.
        channels: 1 or 3 to convert to; None keeps the dataset's (see `inspect_user_data`).
        limit: keep only the first `limit` images of the split.
        test_fraction, seed: the split's test share and seed.
        shard: (index, count): every `count`-th image of the split from the `index`-th only, for
            parallel readers (the pipeline's ExampleGen); only that shard's files are decoded.

    Raises:
        ValueError, FileNotFoundError: as `inspect_user_data`, or an empty split or shard.

    Example:
        >>> train = user_dataset("my_images/", "train")  # one subfolder per class
        >>> info = inspect_user_data("my_images/")        # its shape and classes
    """
    info = inspect_user_data(path, image_size)
    files = _scan(path)
    channels = channels or info.image_shape[2]
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    rows = split_rows(len(files.labels), split, test_fraction, seed)[:limit]
    if shard is not None:
        index, count = shard
        if not 0 <= index < count:
            raise ValueError(f"shard must be (index, count) with 0 <= index < count, got {shard}")
        rows = rows[index::count]
    if len(rows) == 0:
        raise ValueError(f"split {split!r} of {path} is empty ({len(files.labels)} images)")
    size = info.image_shape[:2]
    resize = any(files.sizes[row] != size for row in rows)

    def finish(image, label):
        image = center_crop_resized(image, size, value_range) if resize else scale_pixels(image, value_range)
        return tf.ensure_shape(image, (*size, channels)), label

    labels = files.labels[rows]
    if files.paths is not None:

        def read(path, label):
            return tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False), label

        dataset = tf.data.Dataset.from_tensor_slices((files.paths[rows], labels)).map(read)
    else:
        images = [_to_channels(files.pixels[row], channels) for row in rows]
        if resize:  # ragged: one image at a time
            dataset = tf.data.Dataset.from_generator(
                lambda: zip(images, labels),
                output_signature=(
                    tf.TensorSpec((None, None, channels), tf.float32),
                    tf.TensorSpec((), tf.int64),
                ),
            )
        else:
            dataset = tf.data.Dataset.from_tensor_slices((np.stack(images), labels))
    return dataset.map(finish, num_parallel_calls=tf.data.AUTOTUNE)


__all__ = ["IMAGE_EXTENSIONS", "RECORD_EXTENSIONS", "inspect_user_data", "user_dataset"]
