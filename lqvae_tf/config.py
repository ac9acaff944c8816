"""Configuration of an LQ-VAE purifier: one typed, serialisable object.

Every choice that Algorithm 1 of the paper leaves open lives here, with the value the authors'
public TF1 script (`LQVAE/LQVAE`, `Train_LQ_VAE.py`) uses in the `paper` preset. The config is
what `LQVAE.get_config()` stores, and the training CLI writes it as JSON beside every model, so
any run can be rebuilt from one file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from collections.abc import Mapping
from typing import Any

from lqvae_tf.data.registry import dataset_info

QUANTIZERS = ("band", "levels")
SOFT_FORMS = ("softsign", "tanh")
PENALTY_ESTIMATORS = ("sum", "projection")
ARCHITECTURES = ("conv28", "conv64", "conv")
ADVERSARIAL_MODES = ("classifier", "end_to_end", "reconstruction", "code")
CLASSIFIER_MODES = ("classifier", "end_to_end")  # the modes that attack a classifier


@dataclasses.dataclass
class AdversarialConfig:
    """Adversarial retraining of the purifier: what `LQVAE.train_step` perturbs, and how.

    Part of a batch is replaced by L-inf PGD perturbations of its images (a uniform start in the
    eps-ball, `steps` signed-gradient steps of `step_size`, each projected onto the ball and the
    pixel range), crafted inside the step against the current weights; every network is still
    trained to reconstruct the CLEAN image. What the perturbation maximises is the `mode`:

    * "classifier": the paper's closing remark (Madry PGD): the cross-entropy of a given Keras
      classifier on the perturbed image itself, at the batch's true labels;
    * "end_to_end": the cross-entropy of that classifier behind the filter,
      `classifier(g(H(mu(x + delta))))` (the filter's BPDA gradient, `H~` standing in for `H` on
      the backward pass): the attack the filter meets in deployment, BPDA-PGD;
    * "reconstruction": classifier-free: the filter's reconstruction error
      `||x - g(H(mu(x + delta)))||^2` (same BPDA gradient);
    * "code": classifier-free: the change of the latent code, `||H~(mu(x + delta)) - H(mu(x))||^2`.

    In every mode but "classifier" the encoder also descends `code_weight` times the distance
    of the perturbed image's soft code to the clean image's code, so it learns to keep the code.

    Args:
        mode: "classifier", "end_to_end", "reconstruction" or "code".
        eps: the L-inf radius as a fraction of the pixel range (0.1 is 0.1 on [0, 1] pixels,
            0.2 on [-1, 1] ones).
        steps: PGD's iterations.
        step_size: PGD's step, in the units of `eps`; None takes Madry et al.'s `2.5 eps / steps`.
        fraction: the fraction of each batch replaced by its perturbed images (at least one).
        code_weight: the weight of the code-keeping loss in the encoder's `loss_f` (0 turns it off).
        classifier: for the modes "classifier" and "end_to_end", the `.keras` file of the
            classifier to attack, kept so the run can be rebuilt; a classifier may also be handed
            to `LQVAE.attach_classifier`.
        classifier_range: (low, high) pixel range the classifier takes.
        clean_epochs: epochs of plain Algorithm 1 (no perturbed batches) before adversarial
            retraining starts, within `LQVAEConfig.epochs`: a purifier must first learn a code
            that carries the image (from random weights, perturbed batches can keep the code
            collapsed). 0 (the default) perturbs from the first step, and is left out of
            `to_dict`, so configs without it serialise as before it existed.
    """

    mode: str = "reconstruction"
    eps: float = 0.1
    steps: int = 5
    step_size: float | None = None
    fraction: float = 0.5
    code_weight: float = 1.0
    classifier: str | None = None
    classifier_range: tuple[float, float] = (0.0, 1.0)
    clean_epochs: int = 0

    def __post_init__(self) -> None:
        self.classifier_range = tuple(float(v) for v in self.classifier_range)
        self.validate()

    def validate(self) -> None:
        """Raises ValueError naming the first impossible setting."""
        if self.mode not in ADVERSARIAL_MODES:
            raise ValueError(f"adversarial mode must be one of {ADVERSARIAL_MODES}, got {self.mode!r}")
        if not _is_real(self.eps) or not 0.0 < self.eps <= 1.0:
            raise ValueError(f"adversarial eps must be in (0, 1] (a fraction of the pixel range), got {self.eps!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, numbers.Integral) or self.steps < 1:
            raise ValueError(f"adversarial steps must be an integer >= 1, got {self.steps!r}")
        if self.step_size is not None and (not _is_real(self.step_size) or not 0.0 < self.step_size <= self.eps):
            raise ValueError(f"adversarial step_size must be in (0, eps={self.eps}] or None, got {self.step_size!r}")
        if not _is_real(self.fraction) or not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"adversarial fraction must be in (0, 1], got {self.fraction!r}")
        if not _is_real(self.code_weight) or self.code_weight < 0:
            raise ValueError(f"adversarial code_weight must be >= 0, got {self.code_weight!r}")
        if self.classifier is not None and not self.attacks_classifier:
            raise ValueError(
                f"adversarial classifier is for the modes {' and '.join(CLASSIFIER_MODES)} only, got mode {self.mode!r}"
            )
        low, high = self.classifier_range
        if not low < high:
            raise ValueError(f"adversarial classifier_range must be (low, high) with low < high, got {low, high}")
        epochs = self.clean_epochs
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
            raise ValueError(f"adversarial clean_epochs must be an integer >= 0, got {self.clean_epochs!r}")

    @property
    def attacks_classifier(self) -> bool:
        """Whether the mode perturbs against a classifier (`CLASSIFIER_MODES`), so needs one."""
        return self.mode in CLASSIFIER_MODES

    @property
    def pgd_step_size(self) -> float:
        """The step PGD takes: `step_size`, or Madry et al.'s `2.5 eps / steps` (capped at eps)."""
        return self.step_size if self.step_size is not None else min(self.eps, 2.5 * self.eps / self.steps)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["classifier_range"] = list(self.classifier_range)
        if not self.clean_epochs:
            del data["clean_epochs"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdversarialConfig:
        """Inverse of `to_dict`; unknown keys are an error."""
        return cls(**_known_fields(cls, data))


@dataclasses.dataclass
class GuidanceConfig:
    """Classifier guidance: a loss that makes the filter keep what a classifier needs of an image.

    The reconstructions are also trained to give a fixed Keras classifier the class
    probabilities that the clean image gives it: `weight` times the KL divergence
    `KL(p(x) || p(reconstruction))` is added to the soft path's loss (so the encoder learns a code
    that keeps the class evidence, through `H~`) and to the hard path's (the filter's decoder).
    The loss of Liao et al.'s high-level representation guided denoiser (HGD, 2018) on the
    classifier's output. Pixel-wise reconstruction alone spends the code's bits on whatever has
    the most pixel energy; the guided code keeps fine details that tell, say, a shirt from a
    T-shirt. It ties the filter's training to one classifier (the filter still runs, and is
    measured, in front of any other).

    Args:
        classifier: the `.keras` file of the guiding classifier (logits or a final softmax), kept
            so the run can be rebuilt; None leaves it to the caller (`LQVAE.attach_guide` takes a
            loaded model; `lqvae frontier` uses its `--classifier`).
        weight: the weight of the KL term beside the reconstruction losses (`reconstruction_weight`
            times a mean squared error).
        classifier_range: (low, high) pixel range the classifier takes.
    """

    classifier: str | None = None
    weight: float = 1.0
    classifier_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        self.classifier_range = tuple(float(v) for v in self.classifier_range)
        self.validate()

    def validate(self) -> None:
        """Raises ValueError naming the first impossible setting."""
        if self.classifier is not None and (not isinstance(self.classifier, str) or not self.classifier.strip()):
            raise ValueError(f"guidance classifier must be a .keras file or None, got {self.classifier!r}")
        if not _is_real(self.weight) or not self.weight > 0:
            raise ValueError(f"guidance weight must be > 0, got {self.weight!r}")
        low, high = self.classifier_range
        if not low < high:
            raise ValueError(f"guidance classifier_range must be (low, high) with low < high, got {low, high}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["classifier_range"] = list(self.classifier_range)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GuidanceConfig:
        """Inverse of `to_dict`; unknown keys are an error."""
        return cls(**_known_fields(cls, data))


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _known_fields(cls, data: dict[str, Any]) -> dict[str, Any]:
    """`data`, refused with a ValueError naming the keys that are no field of dataclass `cls`."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} takes a dict of its fields, got {data!r}")
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {unknown}")
    return data


@dataclasses.dataclass
class LQVAEConfig:
    """Everything that defines an LQ-VAE model and how it trains.

    Args:
        image_shape: (height, width, channels) of the images; 28x28x1 uses the `conv28`
            architecture, 64x64x3 the `conv64` one.
        architecture: "conv28" or "conv64" (the paper's encoder/decoder for that size), or
            "conv" (the same pattern adapted to any image size; `architecture_for` chooses).
        width: multiplier on every filter count and hidden size (1.0 = the authors' network;
            0.5 trains about 3.5x more images per second on a CPU, see bench/RESULTS.md).
        value_range: (low, high) of the pixel values the model takes and returns. Internally
            images are mapped to [-1, 1], where the tanh decoder works and where `K` is measured.
        latent_dim: number of latent units.
        quantizer: "band" (the authors' `H(z) = sign(t^2 - z^2)`, one bit per unit) or
            "levels" (`bits_per_unit` bits per unit: 2**bits evenly spaced code symbols in
            [-1, 1], thresholds evenly spaced in [-level_range, level_range]).
        band_threshold: `t` of the band quantizer.
        bits_per_unit: bits per latent unit of the "levels" quantizer (1 gives `z > 0`).
        level_range: half-width of the threshold span of the "levels" quantizer.
        soft_form: shape of the differentiable quantizer `H~`: "softsign" or "tanh".
        soft_sharpness: initial sharpness (inverse temperature) of `H~`; `H~ -> H` as it grows.
        soft_sharpness_final: if set, the sharpness moves geometrically to this value over
            training (per epoch, by `SharpnessSchedule`); None keeps it constant.
        sample_noise_scale: scale of the reparameterised noise, `z = mu + s * sigma * eps`.
            Algorithm 1 reads as s = 1; the authors' script uses s = t / 2 = 0.05.
        lipschitz_k: target `K` of the encoder's input-gradient norm.
        penalty_estimator: how `||grad_x f(x)||` is taken for the vector-valued encoder:
            "sum" (gradient of sum(mu), the authors' choice) or "projection" (root of an
            unbiased random-projection estimate of the squared Frobenius norm of d mu / d x).
        penalty_projections: random projections per sample for the "projection" estimator.
        kl_weight, reconstruction_weight, penalty_weight: the loss weights:
            `loss_h = w_rec * MSE(x, x1)`, `loss_g = w_rec * MSE(x, x2)`,
            `loss_f = loss_h + w_kl * KL + w_pen * penalty` (KL, MSE and penalty are means).
        learning_rate, lr_decay_rate, lr_decay_steps: RMSProp schedule for all three parameter
            groups, `lr * decay_rate ** (step / decay_steps)`.
        batch_size, epochs: defaults of the training CLI.
        seed: seed of the model's own randomness (sampling, projections) and of training.
        adversarial: an `AdversarialConfig` (or its dict form) to retrain the purifier on
            perturbed inputs; None (the default) trains on clean images as Algorithm 1 does, and
            leaves the field out of `to_dict`, so such configs serialise as before it existed.
        init_from: start training from the networks of a trained purifier instead of random
            weights: a `.keras` file, or the name of a preset with shipped weights
            (`lqvae_tf.presets.trained_presets()`). Its network shapes (image shape,
            architecture, width, latent size, bits per unit) must be these; quantizer thresholds
            and every training setting may differ (fine-tuning, e.g. adversarially). None (the
            default) is left out of `to_dict`, like `adversarial`.
        guidance: a `GuidanceConfig` (or its dict form): also train the reconstructions to keep
            a classifier's answers; None (the default, classifier-free) is left out of
            `to_dict`, like `adversarial`.
    """

    image_shape: tuple[int, int, int] = (28, 28, 1)
    architecture: str = "conv28"
    width: float = 1.0
    value_range: tuple[float, float] = (0.0, 1.0)
    latent_dim: int = 64
    quantizer: str = "band"
    band_threshold: float = 0.1
    bits_per_unit: int = 1
    level_range: float = 1.0
    soft_form: str = "softsign"
    soft_sharpness: float = 500.0
    soft_sharpness_final: float | None = None
    sample_noise_scale: float = 0.05
    lipschitz_k: float = 0.1
    penalty_estimator: str = "sum"
    penalty_projections: int = 1
    kl_weight: float = 1.0
    reconstruction_weight: float = 10.0
    penalty_weight: float = 10.0
    learning_rate: float = 3e-4
    lr_decay_rate: float = 0.98
    lr_decay_steps: int = 10_000
    batch_size: int = 64
    epochs: int = 10
    seed: int = 0
    adversarial: AdversarialConfig | None = None
    init_from: str | None = None
    guidance: GuidanceConfig | None = None

    def __post_init__(self) -> None:
        # JSON turns tuples into lists; keep the declared types so configs compare equal.
        self.image_shape = tuple(int(v) for v in self.image_shape)
        self.value_range = tuple(float(v) for v in self.value_range)
        if isinstance(self.adversarial, dict):
            self.adversarial = AdversarialConfig.from_dict(self.adversarial)
        if isinstance(self.guidance, dict):
            self.guidance = GuidanceConfig.from_dict(self.guidance)
        self.validate()

    def validate(self) -> None:
        """Raises ValueError naming the first impossible setting."""
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise ValueError(f"image_shape must be (height, width, channels), got {self.image_shape}")
        expected_shape = {"conv28": (28, 28), "conv64": (64, 64)}
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.architecture in expected_shape and self.image_shape[:2] != expected_shape[self.architecture]:
            raise ValueError(
                f"architecture {self.architecture!r} takes {expected_shape[self.architecture]} images, "
                f"got image_shape {self.image_shape}"
            )
        low, high = self.value_range
        if not low < high:
            raise ValueError(f"value_range must be (low, high) with low < high, got {self.value_range}")
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"quantizer must be one of {QUANTIZERS}, got {self.quantizer!r}")
        if self.soft_form not in SOFT_FORMS:
            raise ValueError(f"soft_form must be one of {SOFT_FORMS}, got {self.soft_form!r}")
        if self.penalty_estimator not in PENALTY_ESTIMATORS:
            raise ValueError(f"penalty_estimator must be one of {PENALTY_ESTIMATORS}, got {self.penalty_estimator!r}")
        if self.quantizer == "band" and self.bits_per_unit != 1:
            raise ValueError("the band quantizer has exactly one bit per unit; use quantizer='levels'")
        for name in (
            "latent_dim",
            "bits_per_unit",
            "penalty_projections",
            "batch_size",
            "epochs",
            "lr_decay_steps",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in (
            "width",
            "band_threshold",
            "level_range",
            "soft_sharpness",
            "learning_rate",
            "lr_decay_rate",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in (
            "sample_noise_scale",
            "lipschitz_k",
            "kl_weight",
            "reconstruction_weight",
            "penalty_weight",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.soft_sharpness_final is not None and not self.soft_sharpness_final > 0:
            raise ValueError(f"soft_sharpness_final must be > 0 or None, got {self.soft_sharpness_final}")
        if self.adversarial is not None and not isinstance(self.adversarial, AdversarialConfig):
            raise ValueError(f"adversarial must be an AdversarialConfig, its dict or None, got {self.adversarial!r}")
        if self.adversarial is not None and self.adversarial.clean_epochs >= self.epochs:
            raise ValueError(
                f"adversarial clean_epochs ({self.adversarial.clean_epochs}) must be below epochs ({self.epochs}), "
                "or no adversarial epoch runs (lower clean_epochs, or adversarial=None: --adversarial none)"
            )
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from.strip()):
            raise ValueError(f"init_from must be a .keras file or a trained preset's name, got {self.init_from!r}")
        if self.guidance is not None and not isinstance(self.guidance, GuidanceConfig):
            raise ValueError(f"guidance must be a GuidanceConfig, its dict or None, got {self.guidance!r}")

    @property
    def code_bits(self) -> int:
        """Bits in one latent code: latent_dim * bits_per_unit."""
        return self.latent_dim * self.bits_per_unit

    def replace(self, **changes: Any) -> LQVAEConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    @property
    def needs_classifier(self) -> bool:
        """Whether training needs a classifier the config does not name: guidance without one, or
        an adversarial mode that attacks one (`CLASSIFIER_MODES`) without one."""
        adversarial, guidance = self.adversarial, self.guidance
        attacks = adversarial is not None and adversarial.attacks_classifier and not adversarial.classifier
        return attacks or (guidance is not None and not guidance.classifier)

    def with_classifier(self, path: str, classifier_range: tuple[float, float] | None = None) -> LQVAEConfig:
        """This config trained with the classifier `path` (a `.keras` file) wherever it names none:
        as the guide of its `guidance`, and as the target of an adversarial mode that attacks one.

        The presets that guide (`fashion_mnist_guided`, `mnist_guided`) leave the classifier to
        whoever trains them (the pipeline's Trainer, `lqvae train --classifier`, a study's
        classifier A, `lqvae frontier`); this is the one place that fills it in.
        `classifier_range` (default: as the config has it) is the classifier's pixel range.
        """
        adversarial, guidance, changes = self.adversarial, self.guidance, {}
        ranged = {} if classifier_range is None else {"classifier_range": tuple(classifier_range)}
        if adversarial is not None and adversarial.attacks_classifier and not adversarial.classifier:
            changes["adversarial"] = dataclasses.replace(adversarial, classifier=path, **ranged)
        if guidance is not None and not guidance.classifier:
            changes["guidance"] = dataclasses.replace(guidance, classifier=path, **ranged)
        return self.replace(**changes) if changes else self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field (`adversarial`, `init_from` and `guidance` only when
        set: model stores hash this dict, and a config without them must hash as it always has)."""
        data = dataclasses.asdict(self)
        data["image_shape"] = list(self.image_shape)
        data["value_range"] = list(self.value_range)
        if self.adversarial is None:
            del data["adversarial"]
        else:
            data["adversarial"] = self.adversarial.to_dict()
        if self.init_from is None:
            del data["init_from"]
        if self.guidance is None:
            del data["guidance"]
        else:
            data["guidance"] = self.guidance.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LQVAEConfig:
        """Inverse of `to_dict`; unknown keys are an error, not silently dropped."""
        return cls(**_known_fields(cls, data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LQVAEConfig:
        return cls.from_dict(json.loads(text))


# The optimizer steps of the authors' Train_LQ_VAE.py (10k iterations of batch 64), which the
# `paper` preset's epochs cover.
PAPER_ITERATIONS = 10_000


def _paper() -> LQVAEConfig:
    # The authors' Train_LQ_VAE.py (LQVAE/LQVAE): inputs in [-1, 1], latent 64, band quantizer
    # t = 0.1, soft quantizer softsign(500 (t^2 - z^2)), noise 0.5 t sigma eps, K = 0.1 on the
    # gradient of sum(mu), L_f = KL + 10 MSE + 10 penalty, RMSProp 3e-4 decayed x0.98 per 10k
    # steps, batch 64, 10k iterations (= 640k images, about 10.7 epochs of 60k).
    return LQVAEConfig(
        image_shape=(28, 28, 1),
        architecture="conv28",
        value_range=(-1.0, 1.0),
        latent_dim=64,
        quantizer="band",
        band_threshold=0.1,
        soft_form="softsign",
        soft_sharpness=500.0,
        sample_noise_scale=0.05,
        lipschitz_k=0.1,
        penalty_estimator="sum",
        kl_weight=1.0,
        reconstruction_weight=10.0,
        penalty_weight=10.0,
        learning_rate=3e-4,
        lr_decay_rate=0.98,
        lr_decay_steps=10_000,
        batch_size=64,
        epochs=11,
    )


def _half_width(dataset: str) -> LQVAEConfig:
    # The paper's method at half width and batch 128, taking the registry's image shape and pixel
    # range ([0, 1], what most Keras classifiers are fed): 5 epochs of the full 60k images take
    # about 18 minutes on a 2-core CPU (the full-width network runs about 3.5x slower per image
    # there; bench/RESULTS.md has both). The first presets; CelebA's still is.
    info = dataset_info(dataset)
    return _paper().replace(
        image_shape=info.image_shape, value_range=info.value_range, width=0.5, batch_size=128, epochs=5
    )


# The default purifier of 28x28x1 datasets, chosen from the Fashion-MNIST frontier (docs/frontier/;
# why: docs/GUIDE.md, Robustness evaluation): the paper's method at half width with a 128-unit
# latent, 2 plain epochs at batch 64 and learning rate 1e-3, then 2 epochs on batches half perturbed by 5-step PGD
# at eps 0.1 that maximises the reconstruction error of the soft path, trained to reconstruct the
# clean image and keep its code (the classifier-free retraining, usable in front of any
# classifier). Against 2 plain epochs of the same network it keeps more clean accuracy behind the
# filter and far more adaptive robust accuracy at eps 0.1, for longer training.
DEFAULT_ADVERSARIAL = AdversarialConfig(mode="reconstruction", eps=0.1, steps=5, clean_epochs=2)


def _digits_like(dataset: str) -> LQVAEConfig:
    return _half_width(dataset).replace(
        latent_dim=128, batch_size=64, learning_rate=1e-3, epochs=4, adversarial=DEFAULT_ADVERSARIAL
    )


def _fashion_mnist() -> LQVAEConfig:
    return _digits_like("fashion_mnist")


def _mnist() -> LQVAEConfig:
    # Its own entry (the same settings today), so that its trained weights and any later change
    # are MNIST's alone.
    return _digits_like("mnist")


# The default purifier where a classifier is at hand (the TFX pipeline's, whose Trainer always has
# one; the studies'), chosen from the Fashion-MNIST frontier (docs/frontier/; docs/GUIDE.md): the
# classifier-free default above plus classifier guidance (weight 3: the reconstructions also keep
# the classifier's answers) and, in the adversarial epochs, PGD against that classifier behind the
# filter (mode end_to_end, through its BPDA gradient) on a quarter of each batch. Against the
# classifier-free default it costs less clean accuracy and resists the adaptive attack better,
# also in front of classifiers it was not trained with, for longer training. The
# classifier is left unnamed: `LQVAEConfig.with_classifier` fills it in.
GUIDED_ADVERSARIAL = AdversarialConfig(mode="end_to_end", eps=0.1, steps=5, clean_epochs=2, fraction=0.25)
DEFAULT_GUIDANCE = GuidanceConfig(weight=3.0)


def _guided(dataset: str) -> LQVAEConfig:
    # Copies: a config's parts are mutable, and no two presets may share one.
    return _digits_like(dataset).replace(
        adversarial=dataclasses.replace(GUIDED_ADVERSARIAL), guidance=dataclasses.replace(DEFAULT_GUIDANCE)
    )


def _fashion_mnist_guided() -> LQVAEConfig:
    return _guided("fashion_mnist")


def _mnist_guided() -> LQVAEConfig:
    return _guided("mnist")


def _celeb_a() -> LQVAEConfig:
    # 64x64x3 gender task: the paper's method in the 64x64 variant of its architecture, latent 128,
    # trained on clean faces only (the adversarial default was measured on 28x28 images only).
    return _half_width("fashion_mnist").replace(
        image_shape=dataset_info("celeb_a").image_shape, architecture="conv64", latent_dim=128
    )


def _celeb_a_guided() -> LQVAEConfig:
    # CelebA's recipe guided by the classifier (weight 3, as the 28x28 guided presets), still on
    # clean faces only: the classifier-free filter left the study's classifiers at 60-68% clean
    # behind it on the gender task (docs/results/, 2026-12-02), about what one class gets (issue 27).
    return _celeb_a().replace(guidance=dataclasses.replace(DEFAULT_GUIDANCE))


PRESETS = {
    "paper": _paper,
    "fashion_mnist": _fashion_mnist,
    "mnist": _mnist,
    "fashion_mnist_guided": _fashion_mnist_guided,
    "mnist_guided": _mnist_guided,
    "celeb_a": _celeb_a,
    "celeb_a_guided": _celeb_a_guided,
}


def preset(name: str) -> LQVAEConfig:
    """The named configuration (`paper`, `fashion_mnist`, `mnist`, `fashion_mnist_guided`,
    `mnist_guided`, `celeb_a`, `celeb_a_guided`); the guided ones need a classifier (`LQVAEConfig.with_classifier`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()


def config_from_settings(settings: Mapping[str, Any], **changes: Any) -> LQVAEConfig:
    """The configuration `{"preset": name, "overrides": {field: value}}` names, with `changes` on top.

    The one reading of the purifier settings the TFX Trainer's `custom_config`, the pipeline's
    validation and the study's model store share, so all three build the same config.

    Raises:
        ValueError: an unknown preset, or an override that names no field or an impossible value.
    """
    return preset(settings["preset"]).replace(**{**settings.get("overrides", {}), **changes})
