"""The paper's numbers (Kyatham et al., accuracy %), keyed like our result rows so that reports
can print them beside ours: (setting, attack, classifier label) -> {column: value}.

Columns are named as our result columns are: "no attack", "no defense", "lq-vae",
"defense-gan", "madry" (Madry et al. PGD adversarial training) and "adv-tr" (plain FGSM
adversarial training). The paper gives Fashion-MNIST only for black-box DeepFool (its Table 3)
and the BPDA end-to-end attack (one number per dataset for LQ-VAE and Defense-GAN, classifier
unstated; we show it beside each classifier's row).
"""

from __future__ import annotations

COLUMNS = ("no attack", "no defense", "lq-vae", "defense-gan", "madry", "adv-tr")

# Table 3: Fashion-MNIST, DeepFool crafted on substitute Y, tested on classifier X ("X/Y").
_FMNIST_BLACK_BOX = {
    "A/B": (92.76, 29.14, 77.74, 74.41, 60.11, 48.27),
    "A/C": (92.76, 35.44, 77.11, 74.11, 62.58, 57.53),
    "B/A": (91.17, 67.82, 81.33, 77.97, 80.71, 76.61),
    "B/C": (91.17, 45.55, 78.83, 74.5, 69.19, 64.05),
    "C/A": (89.06, 79.11, 82.12, 78.82, 80.99, 81.84),
    "C/B": (89.06, 47.26, 80.76, 76.6, 67.46, 59.64),
}
# Table 1: MNIST white-box, per attack and classifier.
_MNIST_WHITE_BOX = {
    ("fgsm", "A"): (99.40, 20.16, 89.17, 90.43, 96.85, 67.95),
    ("fgsm", "B"): (99.41, 13.17, 86.70, 88.52, 96.20, 49.49),
    ("fgsm", "C"): (98.37, 5.66, 83.02, 86.7, 84.71, 80.75),
    ("deepfool", "A"): (99.40, 7.38, 97.60, 95.41, 67.82, 3.10),
    ("deepfool", "B"): (99.41, 5.88, 97.74, 93.03, 66.35, 5.75),
    ("deepfool", "C"): (98.37, 48.24, 97.42, 92.32, 62.38, 10.97),
    ("cw", "A"): (99.40, 8.85, 97.66, 94.37, 69.15, 1.20),
    ("cw", "B"): (99.41, 5.07, 97.20, 90.56, 71.35, 1.45),
    ("cw", "C"): (98.37, 8.44, 97.36, 92.5, 58.65, 2.15),
}
# Table 5: BPDA end to end on filter + classifier: (LQ-VAE, Defense-GAN).
BPDA_END_TO_END = {"mnist": (83.70, 55.17), "fashion_mnist": (57.41, 39.41), "celeb_a": (82.12, 23.52)}


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
        lq_vae, defense_gan = BPDA_END_TO_END[dataset]
        for classifier in ("A", "B", "C"):
            for attack in ("pgd", "bim", "fgsm"):
                table[("end-to-end", attack, classifier)] = {"lq-vae": lq_vae, "defense-gan": defense_gan}
    return table
