"""The pipeline's configuration, in one place: the default run and the small test run side by side.

Like `official/vision/configs`: one typed dataclass with defaults, one factory per named
configuration (`default_config()`, `small_test_config(...)`), `validate()` rejecting impossible settings, and
`to_json()` so the resolved configuration can be kept beside a run. The runners turn a
`PipelineConfig` into `create_pipeline(...)`'s arguments; `create_pipeline` itself takes plain
arguments only.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from lqvae_tf.config import PRESETS, AdversarialConfig, GuidanceConfig, config_from_settings, preset
from lqvae_tf.data import DEBIAN_FASHION_MNIST
from lqvae_tf.data.registry import CLASSIFIER_VALUE_RANGE, DatasetInfo, dataset_info
from lqvae_tf.distribute import STRATEGIES
from lqvae_tf.models.architectures import architecture_for

PIPELINE_NAME = "lqvae"
AUTO_BASE = "auto"  # `PipelineConfig.base_model`: the shipped preset that fits, if any
# Epochs of a warm-started purifier: one pass of the guided, adversarial recipe over the data,
# against the recipe's four from random weights (two clean, two adversarial).
WARM_START_EPOCHS = 1
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINER_MODULE_FILE = os.path.join(REPO_ROOT, "pipelines", "models", "trainer_module.py")


@dataclasses.dataclass(frozen=True)
class AttackCheck:
    """One check of the robustness gate: an attack and the accuracy the defended classifier must keep.

    Args:
        attack: an `lqvae eval` spec: `NAME` (white-box on the classifier) or `bpda-NAME`,
            `identity-NAME`, `naive-NAME` (end to end on purifier + classifier).
        min_accuracy: the lowest acceptable accuracy, in percent, behind the purifier.
        params: the attack's parameters over its defaults (see `lqvae_tf.attacks`).
    """

    attack: str
    min_accuracy: float
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"attack": self.attack, "min_accuracy": self.min_accuracy, "params": dict(self.params)}


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Every setting of a pipeline run.

    Args:
        pipeline_name: the TFX pipeline's name (and its metadata's).
        output_root: the run's folder: `tfx/` (pipeline root), `metadata.db`, `data/` (the
            TFRecords ingested) and `serving/` (the TF Serving models) unless set apart below.
        idx_dir: the Fashion-MNIST IDX files.
        train_limit / eval_limit: ingest the first N train / test images only (None: all);
            Fashion-MNIST only.
        data_path: your own dataset instead of Fashion-MNIST: a folder of PNG/JPEG images (one
            subfolder per class, or a labels.csv), a .npz or TFRecords (`lqvae_tf.data.user_data`),
            ingested by the pipeline's `UserDataExampleGen`; set it with `with_user_data`, which
            inspects the files and fills the three fields below.
        image_size: (height, width) every image of `data_path` is cropped and resized to (None:
            their own size, which they must share).
        image_shape / num_classes: `data_path`'s image shape and number of classes (None for
            Fashion-MNIST, which the dataset registry describes).
        purifier_preset: the `LQVAEConfig` preset the purifier starts from.
        base_model: the trained purifier the Trainer warm-starts from (`LQVAEConfig.init_from`): a
            shipped preset's name or a `.keras` file; "auto" (the default): the shipped preset of
            the same name as the data's preset (`fashion_mnist` for Fashion-MNIST) when its
            networks have the purifier's shapes, else none; None trains from random weights.
            Warm-started, the purifier trains `warm_start_epochs` epochs, retrained adversarially
            from the first (the base's code already carries the image: no clean epochs).
        warm_start_epochs: the purifier's epochs when it warm-starts.
        purifier_overrides: `LQVAEConfig` fields over the preset (epochs, width, latent_dim...).
        adversarial: adversarial retraining of the purifier inside the Trainer (an
            `AdversarialConfig` or its dict; None: clean training, the paper's, whatever the
            preset's own `adversarial`; `default_config` takes the preset's). The modes that
            attack a classifier ("classifier", "end_to_end") attack `adversarial.classifier`, else
            `classifier_path`, else the Trainer's own classifier (trained before the purifier).
        guidance: classifier guidance of the purifier (a `GuidanceConfig` or its dict; None: none).
            Its classifier is `guidance.classifier` if set, else `classifier_path` (in
            `classifier_range`), else the Trainer's own classifier, which the Trainer then trains
            before the purifier.
        classifier_name: the Defense-GAN classifier ("A".."E") the Trainer trains; the gate
            attacks it unless `classifier_path` is given.
        classifier_path: your own `.keras` classifier for the gate to attack instead (it must take
            the data's image shape); None attacks the Trainer's.
        classifier_range: (low, high) pixel range `classifier_path` takes.
        classifier_epochs / classifier_batch_size / classifier_learning_rate: its training.
        classifier_adapt_epochs: then fine-tune the Trainer's classifier this many epochs on
            purified training images (`lqvae_tf.training.adapt`), so the filter costs it less clean
            accuracy; 0 does not. The adapted classifier is the one the gate attacks and the
            Pusher serves; the gate also reports the unadapted one's clean accuracy. Your own
            classifier (`classifier_path`) is adapted with `lqvae adapt` before the run instead.
        gate_examples: eval images the gate attacks.
        gate_batch_size: images per attack call.
        min_clean_accuracy: accuracy (percent) the classifier must keep on clean purified images.
        attack_suite: the gate's checks; all must pass for the model to be pushed.
        serving_model_name: the name the purifier is served under (`/v1/models/<name>`).
        serving_dir: the TF Serving base folder (default `<output_root>/serving`).
        beam_pipeline_args: Beam options for the data components (DirectRunner by default;
            `direct_runner_args(workers)` for several local processes).
        distribute: the Trainer's tf.distribute strategy (`lqvae_tf.distribute.make_strategy`):
            "auto" (the workers of TF_CONFIG when it names two or more, else every local GPU when
            there are two or more), "multi_worker", "mirrored" or "default".
    """

    pipeline_name: str = PIPELINE_NAME
    output_root: str = os.path.join(REPO_ROOT, "runs", "pipeline")
    idx_dir: str = DEBIAN_FASHION_MNIST
    train_limit: int | None = None
    eval_limit: int | None = None
    data_path: str | None = None
    image_size: tuple[int, int] | None = None
    image_shape: tuple[int, int, int] | None = None
    num_classes: int | None = None
    purifier_preset: str = "fashion_mnist"
    purifier_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    base_model: str | None = AUTO_BASE
    warm_start_epochs: int = WARM_START_EPOCHS
    adversarial: AdversarialConfig | None = None
    guidance: GuidanceConfig | None = None
    classifier_name: str = "A"
    classifier_path: str | None = None
    classifier_range: tuple[float, float] = (0.0, 1.0)
    classifier_epochs: int = 2
    classifier_batch_size: int = 128
    classifier_learning_rate: float = 1e-3
    classifier_adapt_epochs: int = 0
    gate_examples: int = 1000
    gate_batch_size: int = 250
    min_clean_accuracy: float = 0.0
    attack_suite: tuple[AttackCheck, ...] = ()
    serving_model_name: str = "lqvae"
    serving_dir: str | None = None
    beam_pipeline_args: tuple[str, ...] = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
    distribute: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.adversarial, dict):  # the config is frozen: set the field as dataclasses do
            object.__setattr__(self, "adversarial", AdversarialConfig.from_dict(self.adversarial))
        if isinstance(self.guidance, dict):
            object.__setattr__(self, "guidance", GuidanceConfig.from_dict(self.guidance))
        self.validate()

    def validate(self) -> None:
        """Rejects settings no run could honour."""
        if self.distribute not in STRATEGIES:
            raise ValueError(f"unknown distribution strategy {self.distribute!r}; choose one of {STRATEGIES}")
        if self.purifier_preset not in PRESETS:
            raise ValueError(f"unknown purifier preset {self.purifier_preset!r}; choose one of {sorted(PRESETS)}")
        for name in ("train_limit", "eval_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive or None, got {value}")
        described = (self.image_shape is not None, self.num_classes is not None)
        if self.data_path is None and (any(described) or self.image_size is not None):
            raise ValueError("image_size, image_shape and num_classes describe data_path, which is not set")
        if self.data_path is not None:
            if not all(described):
                raise ValueError(
                    "data_path needs its image_shape and num_classes: build the config with with_user_data"
                )
            if self.train_limit is not None or self.eval_limit is not None:
                raise ValueError("train_limit and eval_limit slice Fashion-MNIST; they do not apply to data_path")
        if self.eval_limit is not None and self.gate_examples > self.eval_limit:
            raise ValueError(f"gate_examples ({self.gate_examples}) exceeds the eval split ({self.eval_limit})")
        if self.gate_examples < 1 or self.classifier_epochs < 1:
            raise ValueError("gate_examples and classifier_epochs must be positive")
        adapt = self.classifier_adapt_epochs
        if isinstance(adapt, bool) or not isinstance(adapt, int) or adapt < 0:
            raise ValueError(f"classifier_adapt_epochs must be an integer >= 0, got {adapt!r}")
        if adapt and self.classifier_path is not None:
            raise ValueError(
                "classifier_adapt_epochs adapts the Trainer's classifier; adapt your own with `lqvae adapt` "
                "and give the adapted file as the classifier"
            )
        low, high = self.classifier_range
        if not low < high:
            raise ValueError(f"classifier_range must be (low, high) with low < high, got {self.classifier_range}")
        if self.classifier_path is not None and not os.path.isfile(self.classifier_path):
            raise ValueError(f"classifier_path {self.classifier_path} does not exist")
        if self.adversarial is not None and not isinstance(self.adversarial, AdversarialConfig):
            raise ValueError(f"adversarial must be an AdversarialConfig, its dict or None, got {self.adversarial!r}")
        epochs = self.warm_start_epochs
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"warm_start_epochs must be an integer >= 1, got {epochs!r}")
        if self.base_model not in (None, AUTO_BASE):
            from lqvae_tf.presets import trained_presets

            if self.base_model not in trained_presets() and not os.path.isfile(self.base_model):
                raise ValueError(
                    f"base_model {self.base_model!r} is neither a trained preset ({', '.join(trained_presets())}) "
                    "nor a .keras file"
                )
        for field in ("adversarial", "guidance", "init_from"):
            if field in self.purifier_overrides:
                name = "base_model" if field == "init_from" else field
                raise ValueError(f"set {field} with the pipeline's {name} field, not purifier_overrides")
        if self.guidance is not None and not isinstance(self.guidance, GuidanceConfig):
            raise ValueError(f"guidance must be a GuidanceConfig, its dict or None, got {self.guidance!r}")
        if self.guidance is not None and self.guidance.classifier is not None:
            if not os.path.isfile(self.guidance.classifier):
                raise ValueError(f"the guidance classifier {self.guidance.classifier} does not exist")
        if self.adversarial is not None and self.adversarial.attacks_classifier:
            path = self.adversarial.classifier or self.classifier_path  # None: the Trainer's own
            if path is not None and not os.path.isfile(path):
                raise ValueError(f"the adversarial classifier {path} does not exist")
        if not self.attack_suite:
            raise ValueError("the attack suite is empty: the gate would bless a defense never attacked")
        thresholds = [self.min_clean_accuracy] + [check.min_accuracy for check in self.attack_suite]
        if any(not 0.0 <= value <= 100.0 for value in thresholds):
            raise ValueError(f"accuracy thresholds are percentages in [0, 100], got {thresholds}")
        # The purifier's config as the Trainer will build it: a bad override or an adversarial
        # schedule that does not fit its epochs fails here, naming the field, not in the Trainer;
        # so does a base_model whose networks have other shapes.
        config = config_from_settings(self.purifier_settings)
        if config.init_from is not None:
            from lqvae_tf.training.warm_start import check_compatible, load_source

            check_compatible(load_source(config.init_from).config, config, config.init_from)

    def replace(self, **changes: Any) -> PipelineConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_root, "tfx")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output_root, "metadata.db")

    @property
    def data_root(self) -> str:
        return os.path.join(self.output_root, "data")

    @property
    def serving_base_dir(self) -> str:
        return self.serving_dir or os.path.join(self.output_root, "serving")

    @property
    def dataset(self) -> DatasetInfo:
        """What the pipeline ingests: Fashion-MNIST as the registry knows it, or `data_path` as inspected."""
        if self.data_path is None:
            return dataset_info("fashion_mnist")
        return DatasetInfo(self.data_path, tuple(self.image_shape), int(self.num_classes), reader="UserDataExampleGen")

    @property
    def warm_start_from(self) -> str | None:
        """The purifier the Trainer warm-starts from (`base_model` with "auto" resolved), or None."""
        if self.base_model != AUTO_BASE:
            is_file = self.base_model is not None and os.path.isfile(self.base_model)
            return os.path.abspath(self.base_model) if is_file else self.base_model
        if self.data_path is not None:  # your own data: trained from random weights unless you name a base
            return None
        from lqvae_tf.presets import trained_config, trained_presets
        from lqvae_tf.training.warm_start import SHAPE_FIELDS

        name = self.dataset.preset
        if name not in trained_presets():
            return None
        shipped, wanted = trained_config(name), self._scratch_config()
        return name if all(getattr(shipped, f) == getattr(wanted, f) for f in SHAPE_FIELDS) else None

    def _scratch_config(self):
        """The purifier's config as trained from random weights (no warm start)."""
        return config_from_settings(self._settings(warm=None))

    @property
    def purifier_settings(self) -> dict[str, Any]:
        """The Trainer's `custom_config["purifier"]`: for your own data, at its image shape with the
        architecture for that size (`architecture_for`); warm-started from `warm_start_from`
        (its epochs `warm_start_epochs`, no clean epochs), with the digest of its weights so that
        new base weights re-run the Trainer."""
        return self._settings(warm=self.warm_start_from)

    def _settings(self, warm: str | None) -> dict[str, Any]:
        overrides = dict(self.purifier_overrides)
        settings: dict[str, Any] = {"preset": self.purifier_preset, "overrides": overrides}
        adversarial = self.trainer_adversarial
        if warm is not None:
            overrides.update(init_from=warm, epochs=self.warm_start_epochs)
            if adversarial is not None:
                adversarial = dataclasses.replace(adversarial, clean_epochs=0)
            settings["base_model_digest"] = _weights_digest(warm)
        # Always written: None trains clean (unguided) even where the preset retrains (guides).
        for field, resolved in (("adversarial", adversarial), ("guidance", self.trainer_guidance)):
            overrides[field] = None if resolved is None else resolved.to_dict()
            if resolved is not None and resolved.classifier is not None:  # a changed file re-runs the Trainer
                from lqvae_tf.pipeline_components.gate import file_digest

                settings[f"{field}_classifier_digest"] = file_digest(resolved.classifier)
        if self.data_path is not None:
            shape = self.dataset.image_shape
            overrides.update(image_shape=list(shape), architecture=architecture_for(shape))
        return settings

    @property
    def trainer_adversarial(self) -> AdversarialConfig | None:
        """`adversarial` as the Trainer applies it (`_trainer_classifier` for the modes that attack
        a classifier)."""
        adversarial = self.adversarial
        if adversarial is None or not adversarial.attacks_classifier:
            return adversarial
        return self._trainer_classifier(adversarial)

    @property
    def trainer_guidance(self) -> GuidanceConfig | None:
        """`guidance` as the Trainer applies it (`_trainer_classifier`)."""
        return None if self.guidance is None else self._trainer_classifier(self.guidance)

    def _trainer_classifier(self, settings: AdversarialConfig | GuidanceConfig) -> AdversarialConfig | GuidanceConfig:
        """`settings` with the classifier the Trainer trains it with: its own file by absolute
        path, else the gate's `classifier_path` (in its pixel range), else none: the Trainer's own
        classifier, in `CLASSIFIER_VALUE_RANGE`."""
        if settings.classifier is not None:
            return dataclasses.replace(settings, classifier=os.path.abspath(settings.classifier))
        if self.classifier_path is not None:
            path = os.path.abspath(self.classifier_path)
            return dataclasses.replace(settings, classifier=path, classifier_range=self.classifier_range)
        return dataclasses.replace(settings, classifier_range=CLASSIFIER_VALUE_RANGE)

    @property
    def classifier_settings(self) -> dict[str, Any] | None:
        """The Trainer's `custom_config["classifier"]`; None when the gate attacks `classifier_path`."""
        if self.classifier_path is not None:
            return None
        return {
            "name": self.classifier_name,
            "epochs": self.classifier_epochs,
            "batch_size": self.classifier_batch_size,
            "learning_rate": self.classifier_learning_rate,
            "image_shape": list(self.dataset.image_shape),
            "num_classes": self.dataset.num_classes,
            "adapt_epochs": self.classifier_adapt_epochs,
        }

    @property
    def gate_classifier(self) -> dict[str, Any]:
        """The gate's classifier parameters (`RobustnessGate`'s `classifier_*`): none for the Trainer's."""
        if self.classifier_path is None:
            return {}
        from lqvae_tf.pipeline_components.gate import file_digest

        low, high = self.classifier_range
        return {
            "classifier_path": os.path.abspath(self.classifier_path),
            "classifier_min_value": float(low),
            "classifier_max_value": float(high),
            "classifier_digest": file_digest(self.classifier_path),
        }

    @property
    def attack_suite_json(self) -> str:
        """The gate's `attack_suite` parameter."""
        return json.dumps([check.to_dict() for check in self.attack_suite], sort_keys=True)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def pipeline_arguments(self) -> dict[str, Any]:
        """`create_pipeline`'s arguments that come from this configuration (the runners add theirs)."""
        return dict(
            pipeline_name=self.pipeline_name,
            pipeline_root=self.pipeline_root,
            data_root=self.data_root,
            user_data=self.data_path,
            image_size=self.image_size,
            purifier_settings=self.purifier_settings,
            classifier_settings=self.classifier_settings,
            attack_suite_json=self.attack_suite_json,
            min_clean_accuracy=self.min_clean_accuracy,
            gate_examples=self.gate_examples,
            gate_batch_size=self.gate_batch_size,
            gate_classifier=self.gate_classifier,
            serving_base_dir=self.serving_base_dir,
            serving_model_name=self.serving_model_name,
            beam_pipeline_args=self.beam_pipeline_args,
            distribute=self.distribute,
        )


def _weights_digest(base: str) -> str:
    """The SHA-256 of a base purifier's weights: a shipped preset's weight files, or the `.keras` file."""
    from lqvae_tf.pipeline_components.gate import file_digest
    from lqvae_tf.presets import WEIGHT_FILES, preset_dir, trained_presets

    if base in trained_presets():
        files = [os.path.join(preset_dir(base), name) for name in sorted(WEIGHT_FILES.values())]
    else:
        files = [base]
    return file_digest(files[0]) if len(files) == 1 else "-".join(file_digest(path)[:16] for path in files)


# -------------------------------------------------------------------- the named configurations
# Attack strengths of the gate: eps 0.1 (L-inf, [0, 1] pixels) is a common Fashion-MNIST budget;
# the adaptive attack is BPDA-PGD (the strongest of the frontier's gradient attacks on the default
# purifier) with 40 steps of 0.01, a few minutes on 2 CPU cores. The thresholds sit a few points
# under what the default run measured (README, "What the default run measured"), so that a
# purifier that regresses is refused while the default's run-to-run noise passes.
DEFAULT_ATTACK_SUITE = (
    AttackCheck("fgsm", min_accuracy=68.0, params={"eps": 0.1}),
    AttackCheck("bpda-pgd", min_accuracy=56.0, params={"eps": 0.1, "eps_iter": 0.01, "nb_iter": 40}),
)


def default_config() -> PipelineConfig:
    """`make run`: the full Fashion-MNIST on a 2-core CPU (README states a measured run's time).

    The purifier is the `fashion_mnist_guided` preset (`lqvae_tf.config`: batches a quarter
    perturbed by PGD at eps 0.1 against the classifier behind the filter, guided throughout by
    that classifier; the default chosen from the frontier in docs/frontier/, reasoned in
    docs/GUIDE.md), warm-started from the shipped `fashion_mnist` preset (`base_model` "auto")
    for one epoch, where from random weights it needs 2 plain epochs and then 2 such. Its
    classifier is the pipeline's: the user's `classifier_path`, else the one the Trainer trains
    first (one epoch).
    """
    guided = preset("fashion_mnist_guided")
    return PipelineConfig(
        purifier_preset="fashion_mnist_guided",
        adversarial=guided.adversarial,
        guidance=guided.guidance,
        classifier_epochs=1,
        attack_suite=DEFAULT_ATTACK_SUITE,
        min_clean_accuracy=80.0,
    )


def small_test_config(output_root: str, **changes: Any) -> PipelineConfig:
    """The end-to-end tests: 256 train / 128 eval images, one epoch of a 1/8-width model, a 64-image gate.

    Thresholds are 0 (always met); tests raise them to make the gate refuse.
    """
    settings = dict(
        output_root=output_root,
        train_limit=256,
        eval_limit=128,
        purifier_overrides={"width": 0.125, "latent_dim": 16, "batch_size": 32, "epochs": 1, "learning_rate": 1e-3},
        classifier_epochs=1,
        classifier_batch_size=32,
        gate_examples=64,
        gate_batch_size=64,
        min_clean_accuracy=0.0,
        attack_suite=(
            AttackCheck("fgsm", min_accuracy=0.0, params={"eps": 0.1}),
            AttackCheck("bpda-pgd", min_accuracy=0.0, params={"eps": 0.1, "eps_iter": 0.05, "nb_iter": 2}),
        ),
    )
    settings.update(changes)
    return PipelineConfig(**settings)


def with_user_data(config: PipelineConfig, data_path: str, image_size: tuple[int, int] | None = None) -> PipelineConfig:
    """`config` on your own dataset: every file of `data_path` is read and checked here, before
    anything runs, and its image shape and classes recorded (`lqvae_tf.data.inspect_user_data`).

    Raises:
        ValueError, FileNotFoundError: bad data, the message naming the file.

    Example:
        >>> config = with_user_data(default_config(), "my_images/")  # one subfolder per class
    """
    from lqvae_tf.data import inspect_user_data

    info = inspect_user_data(data_path, image_size)
    return config.replace(
        data_path=os.path.abspath(data_path),
        image_size=tuple(image_size) if image_size is not None else None,
        image_shape=info.image_shape,
        num_classes=info.num_classes,
        train_limit=None,
        eval_limit=None,
    )


def direct_runner_args(workers: int) -> tuple[str, ...]:
    """Beam options running the data components on `workers` local processes (DirectRunner's
    multi_processing mode), or in this process for one."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    mode = "multi_processing" if workers > 1 else "in_memory"
    return (f"--direct_running_mode={mode}", f"--direct_num_workers={workers}")
