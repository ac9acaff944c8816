"""The paper's numbers (Kyatham et al., accuracy %), keyed like our result rows so that reports
can print them beside ours: (setting, attack, classifier label) -> {column: value}.

Columns are named as our result columns are: "no attack", "no defense", "lq-vae",
"defense-gan", "madry" (Madry et al. PGD adversarial training) and "adv-tr" (plain FGSM
adversarial training). The paper gives MNIST white-box (Table 1), CelebA white-box (Table 2)
and black-box CW (Table 4), Fashion-MNIST only black-box DeepFool (Table 3), and the BPDA
end-to-end attack (Table 5: one number per dataset for LQ-VAE and Defense-GAN, classifier
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
# Table 2: CelebA (gender) white-box; "Iter FGSM" is our `bim`, "Madry" our `pgd`.
_CELEB_A_WHITE_BOX = {
    ("fgsm", "A"): (96.34, 3.65, 81.04, 74.13, 62.35, 4.53),
    ("fgsm", "B"): (96.60, 3.40, 64.74, 67.06, 71.42, 72.88),
    ("fgsm", "C"): (95.02, 28.62, 61.48, 53.76, 61.35, 42.55),
    ("deepfool", "A"): (96.34, 3.56, 85.89, 83.87, 52.86, 6.26),
    ("deepfool", "B"): (96.60, 2.43, 83.81, 83.65, 49.39, 14.17),
    ("deepfool", "C"): (95.02, 10.92, 62.79, 78.56, 42.37, 38.45),
    ("cw", "A"): (96.34, 6.98, 85.90, 84.64, 58.62, 11.88),
    ("cw", "B"): (96.60, 6.88, 86.29, 86.01, 60.33, 12.91),
    ("cw", "C"): (95.02, 10.92, 79.20, 78.56, 45.02, 38.45),
    ("bim", "A"): (96.34, 3.12, 85.44, 81.00, 82.34, 3.50),
    ("bim", "B"): (96.60, 3.55, 72.29, 72.05, 72.19, 9.16),
    ("bim", "C"): (95.02, 11.92, 52.12, 42.13, 90.87, 19.47),
    ("pgd", "A"): (96.34, 2.84, 85.11, 81.43, 76.35, 3.52),
    ("pgd", "B"): (96.60, 3.12, 70.01, 74.01, 70.32, 8.52),
    ("pgd", "C"): (95.02, 8.57, 54.00, 45.11, 84.09, 18.59),
}
# Table 4: CelebA, CW crafted on substitute Y, tested on classifier X ("X/Y").
_CELEB_A_BLACK_BOX = {
    "A/B": (96.34, 39.53, 86.01, 84.70, 85.41, 94.13),
    "A/C": (96.34, 37.59, 80.10, 78.11, 64.72, 54.22),
    "B/A": (96.60, 49.21, 85.67, 86.19, 82.55, 68.11),
    "B/C": (96.60, 52.52, 79.98, 79.91, 76.31, 62.53),
    "C/A": (95.02, 82.87, 85.90, 86.29, 89.79, 86.75),
    "C/B": (95.02, 83.26, 85.20, 86.17, 89.91, 88.40),
}
# Table 5: BPDA end to end on filter + classifier: (LQ-VAE, Defense-GAN). The attack, from the
# authors' code (mayank31398/lqvae src/BPDA.py), is our `authors_fgsm` through the soft path.
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
    if dataset == "celeb_a":
        for (attack, classifier), values in _CELEB_A_WHITE_BOX.items():
            table[("white-box", attack, classifier)] = dict(zip(COLUMNS, values))
        for label, values in _CELEB_A_BLACK_BOX.items():
            table[("black-box", "cw", label)] = dict(zip(COLUMNS, values))
    if dataset in BPDA_END_TO_END:
        lq_vae, defense_gan = BPDA_END_TO_END[dataset]
        for classifier in ("A", "B", "C"):
            table[("end-to-end", "authors_fgsm", classifier)] = {"lq-vae": lq_vae, "defense-gan": defense_gan}
    return table


def reference_key(setting: str, attack: str, label: str, variant: str = "") -> tuple[str, str, str] | None:
    """The key of the paper's number for a row (`reference`), or None where the row's spec set the
    attack's parameters (`variant`, e.g. a larger PGD step beside the paper's): that row asks
    another question than the paper's. End-to-end rows are told apart by their attack alone (the
    paper's is `authors_fgsm`)."""
    if variant and setting != "end-to-end":
        return None
    return (setting, attack, label)
