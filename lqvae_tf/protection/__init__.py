"""`lqvae protect`: the strong, classifier-guided filter for a user's own classifier, in minutes.

`protect(classifier, out_dir, dataset=...)` warm-starts from the shipped preset of the data
(`LQVAE.from_preset`), fine-tunes it guided by the user's classifier and against PGD through it
(the pipeline's guided recipe, `lqvae_tf.config.GUIDED_ADVERSARIAL`), and writes the purifier,
the defended model (purifier then classifier, one `.keras`) and a report of what the filter
does for that classifier, measured with the adaptive attacks of the frontier
(`lqvae_tf.evaluation.frontier.measure_robustness`).
"""

from lqvae_tf.protection.protect import (
    DEFENDED_FILE,
    FINE_TUNE_IMAGES,
    PURIFIER_FILE,
    REPORT_FILES,
    fine_tune_config,
    protect,
)

__all__ = ["DEFENDED_FILE", "FINE_TUNE_IMAGES", "PURIFIER_FILE", "REPORT_FILES", "fine_tune_config", "protect"]
