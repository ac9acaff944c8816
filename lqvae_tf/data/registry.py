"""The datasets this library knows, in one place: each one's image shape, classes, value range and reader.

Every other module asks here (`dataset_info(name)`, `DATASETS`, `DATASET_NAMES`) instead of
writing `(28, 28, 1)`, `10` or `(0.0, 1.0)` again. A user's own dataset (a folder of images, a
`.npz`, TFRecords; see `lqvae_tf.data.user_data`) is described by the same `DatasetInfo`, built
by inspecting its files.

Example:
    >>> info = dataset_info("celeb_a")
    >>> info.image_shape, info.num_classes
    ((64, 64, 3), 2)
"""

from __future__ import annotations

import dataclasses

# The range of the stored 8-bit pixels, and the float range the loaders deliver by default and
# the library's classifiers (Table 1's A-E) take.
PIXEL_RANGE = (0, 255)
CLASSIFIER_VALUE_RANGE = (0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the library needs to know about a dataset.

    Args:
        name: the name `lqvae_tf.data.load` takes (for a user's dataset: its path).
        image_shape: (height, width, channels) of the images the loader yields.
        num_classes: how many labels (0 to num_classes - 1).
        preset: the `LQVAEConfig` preset a purifier for it starts from.
        reader: how the files are read (shown in errors and `--help`).
        value_range: the float range the loader yields by default (it takes any `value_range`).
        class_names: the labels' names, in label order, where known.
    """

    name: str
    image_shape: tuple[int, int, int]
    num_classes: int
    preset: str = "fashion_mnist"
    reader: str = ""
    value_range: tuple[float, float] = CLASSIFIER_VALUE_RANGE
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.image_shape) != 3 or self.image_shape[2] not in (1, 3) or min(self.image_shape) < 1:
            raise ValueError(f"{self.name}: image_shape must be (height, width, 1 or 3), got {self.image_shape}")
        if self.num_classes < 2:
            raise ValueError(f"{self.name}: a classification dataset needs at least 2 classes, got {self.num_classes}")

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.update(image_shape=list(self.image_shape), value_range=list(self.value_range))
        data["class_names"] = list(self.class_names)
        return data


DIGITS_READER = "IDX files (data_dir, $LQVAE_{NAME}_DIR) or tensorflow-datasets"
DATASETS: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo(
        "fashion_mnist",
        image_shape=(28, 28, 1),
        num_classes=10,
        preset="fashion_mnist",
        reader=DIGITS_READER.format(NAME="FASHION_MNIST"),
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
    "mnist": DatasetInfo(
        "mnist",
        image_shape=(28, 28, 1),
        num_classes=10,
        preset="mnist",
        reader=DIGITS_READER.format(NAME="MNIST"),
        class_names=tuple(str(digit) for digit in range(10)),
    ),
    # Gender (the `Male` attribute) on aligned faces: central square resized to 64x64.
    "celeb_a": DatasetInfo(
        "celeb_a",
        image_shape=(64, 64, 3),
        num_classes=2,
        preset="celeb_a",
        reader="a folder of images plus labels.csv (data_dir, $LQVAE_CELEBA_DIR) or tensorflow-datasets",
        class_names=("female", "male"),
    ),
}
DATASET_NAMES = tuple(DATASETS)
# The dataset every command and the pipeline use when none is named.
DEFAULT_DATASET = "fashion_mnist"


def dataset_info(name: str) -> DatasetInfo:
    """The registered dataset `name`.

    Raises:
        ValueError: `name` is not registered (the message lists those that are).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name]


__all__ = [
    "CLASSIFIER_VALUE_RANGE",
    "DATASETS",
    "DATASET_NAMES",
    "PIXEL_RANGE",
    "DatasetInfo",
    "dataset_info",
]
