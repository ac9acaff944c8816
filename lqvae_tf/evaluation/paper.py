"""The paper's numbers (Kyatham et al., accuracy %), keyed like our result rows so that reports
can print them beside ours: (setting, attack, classifier label) -> {column: value}.

Only the columns we also measure are kept ("no attack", "no defense", "lq-vae"). The paper
gives Fashion-MNIST only for black-box DeepFool (its Table 3) and the BPDA end-to-end attack (one
number for the dataset, classifier unstated; we show it beside each classifier's row).
"""

from __future__ import annotations

# Table 3: Fashion-MNIST, DeepFool crafted on substitute Y, tested on classifier X ("X/Y").
_FMNIST_BLACK_BOX = {
    "A/B": (92.76, 29.14, 77.74),
    "A/C": (92.76, 35.44, 77.11),
    "B/A": (91.17, 67.82, 81.33),
    "B/C": (91.17, 45.55, 78.83),
    "C/A": (89.06, 79.11, 82.12),
    "C/B": (89.06, 47.26, 80.76),
}
# Table 1: MNIST white-box, per attack and classifier: (no attack, no defense, LQ-VAE).
_MNIST_WHITE_BOX = {
    ("fgsm", "A"): (99.40, 20.16, 89.17),
    ("fgsm", "B"): (99.41, 13.17, 86.70),
    ("fgsm", "C"): (98.37, 5.66, 83.02),
    ("deepfool", "A"): (99.40, 7.38, 97.60),
    ("deepfool", "B"): (99.41, 5.88, 97.74),
    ("deepfool", "C"): (98.37, 48.24, 97.42),
    ("cw", "A"): (99.40, 8.85, 97.66),
    ("cw", "B"): (99.41, 5.07, 97.20),
    ("cw", "C"): (98.37, 8.44, 97.36),
}
# Table 5: BPDA end to end, LQ-VAE column.
BPDA_END_TO_END = {"mnist": 83.70, "fashion_mnist": 57.41, "celeb_a": 82.12}

COLUMNS = ("no attack", "no defense", "lq-vae")


def reference(dataset: str) -> dict[tuple[str, str, str], dict[str, float]]:
    """The paper's numbers for `dataset`, keyed (setting, attack, classifier label)."""
    table: dict[tuple[str, str, str], dict[str, float]] = {}
    if dataset == "fashion_mnist":
        for label, values in _FMNIST_BLACK_BOX.items():
            table[("black-box", "deepfool", label)] = dict(zip(COLUMNS, values))
    if dataset == "mnist":
        for (attack, classifier), values in _MNIST_WHITE_BOX.items():
            table[("white-box", attack, classifier)] = dict(zip(COLUMNS, values))
    if dataset in BPDA_END_TO_END:
        for classifier in ("A", "B", "C"):
            for attack in ("pgd", "bim", "fgsm"):
                table[("end-to-end", attack, classifier)] = {"lq-vae": BPDA_END_TO_END[dataset]}
    return table
