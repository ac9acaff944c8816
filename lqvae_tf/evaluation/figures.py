"""The paper's figures: t-SNE of latent codes (Fig. 2), bits flipped by an attack with accuracy
per bin (Fig. 3), and accuracy against attack strength for each defense."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lqvae_tf.atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: str) -> str:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    _pyplot().close(figure)
    return path


def latent_tsne(
    clean_means: np.ndarray,
    adversarial_means: np.ndarray,
    path: str,
    labels: np.ndarray | None = None,
    seed: int = 0,
    title: str = "t-SNE of latent means: clean vs adversarial",
) -> str:
    """2-D t-SNE of encoder means of clean and adversarial inputs, drawn on one plot (Fig. 2)."""
    from sklearn.manifold import TSNE

    both = np.concatenate([clean_means, adversarial_means])
    # t-SNE needs a perplexity below the number of points (a row scored on a few images: `n=`).
    perplexity = float(min(30, max(5, len(both) // 4), len(both) - 1))
    embedded = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(both)
    n = len(clean_means)
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 5.5))
    colour = labels if labels is not None else None
    axis.scatter(embedded[:n, 0], embedded[:n, 1], c=colour, cmap="tab10", marker="o", s=14, alpha=0.6, label="clean")
    axis.scatter(
        embedded[n:, 0],
        embedded[n:, 1],
        c=colour,
        cmap="tab10",
        marker="x",
        s=14,
        alpha=0.9,
        label="adversarial",
    )
    axis.legend()
    axis.set_title(title)
    axis.set_xticks([])
    axis.set_yticks([])
    return _save(figure, path)


def bit_flip_histogram(
    flipped: np.ndarray,
    correct: np.ndarray,
    path: str,
    bins: int = 10,
    title: str = "Latent bits flipped by the attack",
) -> str:
    """Histogram of the fraction of bits flipped, each bar labelled with its accuracy (Fig. 3)."""
    flipped, correct = np.asarray(flipped), np.asarray(correct, bool)
    edges = np.linspace(0.0, max(float(flipped.max()), 1e-6) * 1.0001, bins + 1)
    index = np.clip(np.digitize(flipped, edges) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    centres = 100 * (edges[:-1] + edges[1:]) / 2
    bars = axis.bar(centres, 100 * counts / len(flipped), width=100 * (edges[1] - edges[0]) * 0.9)
    for bar, k in zip(bars, range(bins)):
        if counts[k]:
            accuracy = 100 * correct[index == k].mean()
            axis.annotate(
                f"{accuracy:.0f}%",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    axis.set_xlabel("bits flipped (% of the code)")
    axis.set_ylabel("adversarial images (%)")
    axis.set_title(title + " (accuracy after purification on top of each bar)")
    return _save(figure, path)


def accuracy_vs_strength(
    strengths: Sequence[float],
    accuracies: Mapping[str, Sequence[float]],
    path: str,
    xlabel: str = "attack strength eps",
    title: str = "Accuracy against attack strength",
) -> str:
    """One line per defense: accuracy (%) against the attack's eps."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4.5))
    for name, values in accuracies.items():
        axis.plot(strengths, values, marker="o", label=name)
    axis.set_xlabel(xlabel)
    axis.set_ylabel("accuracy (%)")
    axis.set_ylim(0, 100)
    axis.grid(alpha=0.3)
    axis.legend()
    axis.set_title(title)
    return _save(figure, path)
