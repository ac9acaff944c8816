"""PNG figures of training results."""

from __future__ import annotations

import os

import numpy as np

from lqvae_tf.atomic import atomic_path


def save_purification_grid(
    images: np.ndarray,
    purified: np.ndarray,
    path: str,
    value_range=(0.0, 1.0),
    title: str = "input (top) / purified (bottom)",
) -> str:
    """Saves a two-row grid: inputs on top, their purified images below. Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    low, high = value_range
    count = len(images)
    figure, axes = plt.subplots(2, count, figsize=(1.2 * count, 2.8), squeeze=False)
    for row, batch in enumerate((images, purified)):
        for column in range(count):
            image = np.clip((batch[column] - low) / (high - low), 0.0, 1.0)
            axis = axes[row][column]
            if image.shape[-1] == 1:
                axis.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
            else:
                axis.imshow(image)
            axis.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format=os.path.splitext(path)[1][1:] or "png", dpi=100)
    plt.close(figure)
    return path
