"""Checks on images handed to the purifier, so bad input fails here with a clear message.

Without them a wrong shape, an integer batch or NaNs surface as a traceback from deep inside TF,
or (worse, for NaN and out-of-range values) as silently wrong purified images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RANGE_TOLERANCE = 1e-4  # float round-off allowed beyond the declared value range


def rescale(images, source: Sequence[float], target: Sequence[float]):
    """`images` mapped linearly from the pixel range `source` = (low, high) onto `target`.

    Works on numpy arrays and tensors alike (plain arithmetic); the one place the package maps
    pixel ranges (a classifier's [0, 1] onto a purifier's [-1, 1], and back).
    """
    (low, high), (new_low, new_high) = source, target
    return (images - low) * ((new_high - new_low) / (high - low)) + new_low


def check_images(images, image_shape: Sequence[int], value_range: Sequence[float], name: str = "images") -> np.ndarray:
    """Validates a batch of images and returns it as float32 numpy.

    Args:
        images: array-like of shape (batch, height, width, channels).
        image_shape: the expected (height, width, channels).
        value_range: the expected (low, high) of the pixel values.
        name: what to call the argument in error messages.

    Returns:
        The images as a float32 `np.ndarray`.

    Raises:
        ValueError: naming what is wrong (dtype, rank, shape, channels, NaN/inf, range, empty)
            and the expected form.
    """
    height, width, channels = (int(v) for v in image_shape)
    low, high = (float(v) for v in value_range)
    expected = f"float images of shape (batch, {height}, {width}, {channels}) in [{low:g}, {high:g}]"
    try:
        array = np.asarray(images)
    except Exception as error:  # ragged lists, unconvertible objects
        raise ValueError(f"{name} could not be read as an array ({error}); expected {expected}") from None
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} has dtype {array.dtype}; expected {expected}")
    if not np.issubdtype(array.dtype, np.floating):
        hint = " (for 8-bit pixels, scale first, e.g. x / 255)" if array.dtype == np.uint8 else ""
        raise ValueError(f"{name} has integer dtype {array.dtype}; expected {expected}{hint}")
    if array.ndim == 3 and array.shape == (height, width, channels):
        raise ValueError(
            f"{name} is a single image of shape {array.shape}; add a batch axis (x[None]); expected {expected}"
        )
    if array.ndim != 4:
        raise ValueError(f"{name} has rank {array.ndim} (shape {array.shape}); expected {expected}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch; expected {expected}")
    if array.shape[1:3] != (height, width):
        raise ValueError(
            f"{name} has images of {array.shape[1]}x{array.shape[2]} pixels (shape {array.shape}); expected {expected}"
        )
    if array.shape[3] != channels:
        raise ValueError(f"{name} has {array.shape[3]} channels (shape {array.shape}); expected {expected}")
    finite = np.isfinite(array)
    if not finite.all():
        raise ValueError(f"{name} contains {int((~finite).sum())} NaN or infinite values; expected {expected}")
    lowest, highest = float(array.min()), float(array.max())
    if lowest < low - RANGE_TOLERANCE or highest > high + RANGE_TOLERANCE:
        raise ValueError(
            f"{name} has values in [{lowest:g}, {highest:g}], outside the model's value range; expected {expected}"
        )
    return array.astype(np.float32, copy=False)
