"""`report.md` of `lqvae protect`: what the fine-tuned filter does for one classifier, in one page."""

from __future__ import annotations

from typing import Any

from lqvae_tf.generated import marker


def _cell(accuracy: dict) -> str:
    low, high = accuracy["ci95"]
    return f"{accuracy['accuracy']:.1f} [{low:.1f}, {high:.1f}]"


def markdown(report: dict[str, Any]) -> str:
    """The page of a `protect` report (the dict `report.json` holds)."""
    clean, tune, attacks = report["clean"], report["fine_tune"], report["attacks"]
    images = "every" if tune["images"] is None else f"the first {tune['images']:,}"
    lines = [
        marker("`lqvae protect` (`lqvae_tf.protection.protect`)"),
        f"# The filter for `{report['classifier']}`",
        "",
        f"{report['date']}. The shipped preset `{report['preset']}` fine-tuned for this classifier on {images} "
        f"{report['dataset']} training images, {tune['epochs']} epoch(s) guided by it and against PGD through it "
        f"behind the filter: {tune['seconds'] / 60:.1f} minutes. Measured on the first {report['test_images']:,} "
        "test images; accuracies in percent with their 95% Wilson intervals.",
        "",
        "| | clean accuracy |",
        "|---|---|",
        f"| classifier alone | {_cell(clean['alone'])} |",
        f"| behind the shipped preset | {_cell(clean['behind_preset'])} |",
        f"| **behind the fine-tuned filter** | **{_cell(clean['behind_filter'])}** |",
        "",
        f"Clean cost of the filter: {clean['cost_points']:.1f} points.",
        "",
        f"L-inf attacks behind the filter (pixels in [0, 1]): PGD with {attacks['steps']} steps and "
        f"{attacks['restarts']} restarts through each backward pass (BPDA; the soft path with EOT over "
        f"{attacks['eot_samples']} draws; the identity); **adaptive** is, per image, the worst of the three. "
        f"Square: gradient-free, {attacks['square_queries']:,} queries; a Square row below the adaptive one "
        "means the gradients are masked and the adaptive number overestimates.",
        "",
        "| eps | BPDA | soft + EOT | identity | **adaptive** | Square | worst of all |",
        "|---|---|---|---|---|---|---|",
    ]
    for radius, measured in report["robustness"].items():
        pgd = measured["pgd"]
        flag = " (beats the gradient attacks)" if measured["square_beats_gradient"] else ""
        lines.append(
            f"| {radius} | {_cell(pgd['bpda'])} | {_cell(pgd['soft'])} | {_cell(pgd['identity'])} | "
            f"**{_cell(measured['adaptive'])}** | {_cell(measured['square'])}{flag} | {_cell(measured['worst'])} |"
        )
    lines += [
        "",
        f"Files: `{report['files']['purifier']}` (the purifier), `{report['files']['defended']}` (purifier then "
        "classifier: `import lqvae_tf; keras.models.load_model(...)`, or `lqvae export` for TF Serving).",
        "",
        f"Made by `{report['command'] or 'lqvae_tf.protect(...)'}`; `report.json` holds every number and the "
        f"fine-tune's config. Evaluation: {report['evaluation_seconds'] / 60:.1f} minutes.",
        "",
    ]
    return "\n".join(lines)
