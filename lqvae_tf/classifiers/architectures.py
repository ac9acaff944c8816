"""Classifiers A-E of Defense-GAN (Samangouei et al. 2018, Table 1), as functional Keras models.

The layer tables are the authors' code, kabkabm/defensegan `utils/network_builder.py`
(`model_a` ... `model_e`; `whitebox.py` picks them by letter):

    A  Conv(64, 5x5, 1, same)  Conv(64, 5x5, 2, valid)  Dropout(0.25)  FC(128)  Dropout(0.5)  FC(classes)
    B  Dropout(0.2)  Conv(64, 8x8, 2, same)  Conv(128, 6x6, 2, valid)  Conv(128, 5x5, 1, valid)
       Dropout(0.5)  FC(classes)
    C  Conv(128, 3x3, 1, same)  Conv(64, 5x5, 2, valid)  Dropout(0.25)  FC(128)  Dropout(0.5)  FC(classes)
    D  FC(200)  Dropout(0.5)  FC(200)  FC(classes)
    E  FC(200)  FC(200)  FC(classes)

Every Conv and every hidden FC is followed by a ReLU. The models end in **logits**, with no
softmax: the loss applies it (`from_logits=True`), and attacks need logits (C&W's margin, and
gradients that do not vanish in a saturated softmax). Inputs are images in [0, 1], with no
preprocessing layer.

CelebA gender: the authors run the same model functions on 64x64x3 faces with 2 classes
(`whitebox.py` sizes input and output from the data); `build_gender_classifier` does that for A-C.

Two departures from the authors' code, both towards Table 1 as written: dropout values are Keras
rates (the fraction dropped), where their TF1 `tf.nn.dropout(x, prob)` read them as the fraction
kept; and weights use Keras' default initializers instead of their unit-norm Gaussian columns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import keras

from lqvae_tf.data.registry import DATASETS

MNIST_SHAPE = DATASETS["mnist"].image_shape
MNIST_CLASSES = DATASETS["mnist"].num_classes
CELEB_A_SHAPE = DATASETS["celeb_a"].image_shape
GENDER_CLASSES = DATASETS["celeb_a"].num_classes  # CelebA's `Male` attribute
GENDER_CLASSIFIERS = ("A", "B", "C")


@dataclasses.dataclass(frozen=True)
class Conv:
    """A 2-D convolution followed by a ReLU, written as in Table 1: Conv(filters, k x k, stride)."""

    filters: int
    kernel_size: int
    strides: int
    padding: str


@dataclasses.dataclass(frozen=True)
class FC:
    """A hidden fully connected layer followed by a ReLU (flattening first where needed)."""

    units: int


@dataclasses.dataclass(frozen=True)
class Dropout:
    """Dropout with Keras' `rate`: the fraction of units dropped while training."""

    rate: float


Layer = Conv | FC | Dropout

# Table 1 of the paper, from kabkabm/defensegan utils/network_builder.py; the output layer,
# FC(num_classes) without activation, is added by the builder.
TABLE_1: dict[str, tuple[Layer, ...]] = {
    "A": (
        Conv(64, 5, 1, "same"),
        Conv(64, 5, 2, "valid"),
        Dropout(0.25),
        FC(128),
        Dropout(0.5),
    ),
    "B": (
        Dropout(0.2),
        Conv(64, 8, 2, "same"),
        Conv(128, 6, 2, "valid"),
        Conv(128, 5, 1, "valid"),
        Dropout(0.5),
    ),
    "C": (
        Conv(128, 3, 1, "same"),
        Conv(64, 5, 2, "valid"),
        Dropout(0.25),
        FC(128),
        Dropout(0.5),
    ),
    "D": (FC(200), Dropout(0.5), FC(200)),
    "E": (FC(200), FC(200)),
}


def _check_shape(image_shape: Sequence[int], num_classes: int) -> tuple[int, int, int]:
    shape = tuple(int(size) for size in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be (height, width, channels), got {tuple(image_shape)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    return shape


def build_from_table(name: str, layers: Sequence[Layer], image_shape: Sequence[int], num_classes: int) -> keras.Model:
    """A classifier from a layer table: images in [0, 1] -> logits (batch, num_classes).

    Args:
        name: the letter, used in the model's name (`classifier_a`).
        layers: the hidden layers, in order (`Conv`, `FC`, `Dropout`).
        image_shape: (height, width, channels) of the inputs.
        num_classes: the number of logits.
    """
    images = keras.Input(shape=_check_shape(image_shape, num_classes), name="images")
    h = images
    counts = {Conv: 0, FC: 0, Dropout: 0}

    def flat(tensor):
        return keras.layers.Flatten(name="flatten")(tensor) if len(tensor.shape) > 2 else tensor

    for layer in layers:
        counts[type(layer)] += 1
        index = counts[type(layer)]
        if isinstance(layer, Conv):
            h = keras.layers.Conv2D(
                layer.filters,
                layer.kernel_size,
                strides=layer.strides,
                padding=layer.padding,
                activation="relu",
                name=f"conv{index}",
            )(h)
        elif isinstance(layer, FC):
            h = keras.layers.Dense(layer.units, activation="relu", name=f"fc{index}")(flat(h))
        else:
            h = keras.layers.Dropout(layer.rate, name=f"dropout{index}")(h)
    logits = keras.layers.Dense(num_classes, name="logits")(flat(h))
    return keras.Model(images, logits, name=f"classifier_{name.lower()}")


def build_a(image_shape: Sequence[int] = MNIST_SHAPE, num_classes: int = MNIST_CLASSES) -> keras.Model:
    """Classifier A: two 5x5 convolutions, FC(128), dropout; outputs logits.

    Args:
        image_shape: (height, width, channels) of the inputs, in [0, 1].
        num_classes: the number of logits.
    """
    return build_from_table("A", TABLE_1["A"], image_shape, num_classes)


def build_b(image_shape: Sequence[int] = MNIST_SHAPE, num_classes: int = MNIST_CLASSES) -> keras.Model:
    """Classifier B: input dropout, three convolutions (8x8, 6x6, 5x5), no hidden FC; outputs logits.

    Args:
        image_shape: (height, width, channels) of the inputs, in [0, 1].
        num_classes: the number of logits.
    """
    return build_from_table("B", TABLE_1["B"], image_shape, num_classes)


def build_c(image_shape: Sequence[int] = MNIST_SHAPE, num_classes: int = MNIST_CLASSES) -> keras.Model:
    """Classifier C: 3x3 then 5x5 convolution, FC(128), dropout; outputs logits.

    Args:
        image_shape: (height, width, channels) of the inputs, in [0, 1].
        num_classes: the number of logits.
    """
    return build_from_table("C", TABLE_1["C"], image_shape, num_classes)


def build_d(image_shape: Sequence[int] = MNIST_SHAPE, num_classes: int = MNIST_CLASSES) -> keras.Model:
    """Classifier D: a fully connected 200-200 network with dropout; outputs logits.

    Args:
        image_shape: (height, width, channels) of the inputs, in [0, 1].
        num_classes: the number of logits.
    """
    return build_from_table("D", TABLE_1["D"], image_shape, num_classes)


def build_e(image_shape: Sequence[int] = MNIST_SHAPE, num_classes: int = MNIST_CLASSES) -> keras.Model:
    """Classifier E: a fully connected 200-200 network without dropout; outputs logits.

    Args:
        image_shape: (height, width, channels) of the inputs, in [0, 1].
        num_classes: the number of logits.
    """
    return build_from_table("E", TABLE_1["E"], image_shape, num_classes)


def build_residual(image_shape: Sequence[int] = MNIST_SHAPE, num_classes: int = MNIST_CLASSES) -> keras.Model:
    """Classifier R, not one of Defense-GAN's: a small residual network (two stages of two 3x3
    convolution blocks with batch normalisation and identity or 1x1 shortcuts, global average
    pooling, FC(classes)); outputs logits.

    Why: no purifier of this project is trained with it, so it is the held-out classifier that
    the shipped presets and `lqvae protect` are measured in front of (a user's own
    architecture, unlike any that guided the filter: batch norm, shortcuts, no hidden FC).

    Args:
        image_shape: (height, width, channels) of the inputs, in [0, 1].
        num_classes: the number of logits.
    """
    height, width, channels = _check_shape(image_shape, num_classes)

    def norm():
        # Momentum 0.9, not Keras' 0.99: after a few epochs the moving statistics must have caught
        # up with the weights, or inference-mode accuracy falls far below training-mode accuracy.
        return keras.layers.BatchNormalization(momentum=0.9)

    inputs = keras.Input((height, width, channels), name="images")
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.ReLU()(norm()(x))
    for filters, stride in ((32, 1), (64, 2)):
        shortcut = x
        y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        y = keras.layers.ReLU()(norm()(y))
        y = norm()(keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(y))
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False)(shortcut)
        x = keras.layers.ReLU()(keras.layers.Add()([shortcut, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="classifier_R")


def build_keras_example(image_shape: Sequence[int] = MNIST_SHAPE, num_classes: int = MNIST_CLASSES) -> keras.Model:
    """Classifier K, not one of Defense-GAN's: the Keras documentation's "Simple MNIST convnet"
    (keras.io/examples/vision/mnist_convnet: 3x3 convolutions of 32 and 64 filters, each followed
    by 2x2 max pooling, dropout 0.5, FC(classes)); outputs logits instead of its softmax.

    Why: the second held-out classifier, the one a Keras user most likely starts from. R is
    fragile to any pixel change through its batch norm (a 0.05 offset of every pixel ruins it,
    `bench/classifier_sensitivity.py`); K is as unlike the guides (max pooling, no hidden FC)
    without that, so that the two tell a new architecture from a fragile one.

    Args:
        image_shape: (height, width, channels) of the inputs, in [0, 1].
        num_classes: the number of logits.
    """
    height, width, channels = _check_shape(image_shape, num_classes)
    inputs = keras.Input((height, width, channels), name="images")
    x = inputs
    for filters in (32, 64):
        x = keras.layers.Conv2D(filters, 3, activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Dropout(0.5)(keras.layers.Flatten()(x))
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="classifier_K")


# The classifiers no purifier is trained with (`build_residual`, `build_keras_example`): `build_classifier` builds them
# too, but the studies, the presets and the pipeline only ever train purifiers with A-E.
HELD_OUT_CLASSIFIERS: dict[str, Callable[..., keras.Model]] = {"R": build_residual, "K": build_keras_example}

CLASSIFIERS: dict[str, Callable[..., keras.Model]] = {
    "A": build_a,
    "B": build_b,
    "C": build_c,
    "D": build_d,
    "E": build_e,
}


def build_classifier(
    name: str, image_shape: Sequence[int] = MNIST_SHAPE, num_classes: int = MNIST_CLASSES
) -> keras.Model:
    """The Defense-GAN classifier `name` ("A" to "E"), or a held-out one ("R",
    `HELD_OUT_CLASSIFIERS`): images in [0, 1] -> logits.

    Args:
        name: the letter of Table 1, or "R".
        image_shape: (height, width, channels) of the inputs.
        num_classes: the number of logits.

    Raises:
        ValueError: `name` is not a classifier, or the shape or class count is impossible.
    """
    builders = {**CLASSIFIERS, **HELD_OUT_CLASSIFIERS}
    if name not in builders:
        raise ValueError(f"unknown classifier {name!r}; choose one of {', '.join(builders)}")
    return builders[name](image_shape, num_classes)


def build_gender_classifier(name: str) -> keras.Model:
    """Classifier A, B or C for CelebA gender: 64x64x3 faces in [0, 1] -> 2 logits (1: male).

    Args:
        name: "A", "B" or "C".
    """
    if name not in GENDER_CLASSIFIERS:
        raise ValueError(f"unknown gender classifier {name!r}; choose one of {', '.join(GENDER_CLASSIFIERS)}")
    return build_classifier(name, CELEB_A_SHAPE, GENDER_CLASSES)
