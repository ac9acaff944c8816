"""LQ-VAE: a VAE with a Lipschitz-constrained encoder and a quantized latent space.

`LQVAE.train_step` is Algorithm 1 of Kyatham et al. line by line (optionally on adversarially
perturbed inputs, `config.adversarial`); `LQVAE.purify` is the filter `g_phi(H(mu(x)))` that sits
in front of a classifier.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from lqvae_tf.config import LQVAEConfig, preset
from lqvae_tf.distribute import replica_share
from lqvae_tf.models.adversarial import (
    INTERNAL_RANGE,
    INTERNAL_WIDTH,
    check_classifier_shape,
    pgd_linf,
    straight_through,
)
from lqvae_tf.models.architectures import build_decoder, build_encoder
from lqvae_tf.models.inputs import check_images, rescale
from lqvae_tf.models.lipschitz import encode_with_input_gradient_norm, lipschitz_penalty
from lqvae_tf.models.logits import logits_of
from lqvae_tf.models.quantizers import PACKAGE, HardQuantizer, SoftQuantizer
from lqvae_tf.models.sampling import Sampling, load_seed_state, save_seed_state
from lqvae_tf.presets import check_filter_fields, load_filter_weights, trained_config

METRIC_NAMES = ("loss_f", "loss_g", "loss_h", "kl", "penalty", "grad_norm", "active_bits")
# With `config.adversarial`: `loss_g` on the perturbed images, the encoder's code-keeping loss,
# and the fraction of code symbols the perturbation flipped.
ADVERSARIAL_METRIC_NAMES = ("loss_adv", "loss_code", "code_flip")
# With `config.guidance`: the guiding classifier's KL divergence on the filter's (hard path's) and
# the soft path's reconstructions.
GUIDANCE_METRIC_NAMES = ("guide_hard", "guide_soft")
ADVERSARY_SEED_KEY = "adversary_seed_state"


def kl_divergence(mean: tf.Tensor, log_var: tf.Tensor) -> tf.Tensor:
    """Mean over batch and units of KL(N(mu, sigma^2) || N(0, 1))."""
    return -0.5 * ops.mean(1.0 + log_var - ops.square(mean) - ops.exp(log_var))


def guidance_divergence(clean_logits: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Mean over the batch of KL(softmax(clean_logits) || softmax(logits)); the clean side is a constant."""
    target = ops.stop_gradient(ops.softmax(clean_logits, axis=-1))
    log_target = ops.log(ops.maximum(target, 1e-12))
    return ops.mean(ops.sum(target * (log_target - ops.log_softmax(logits, axis=-1)), axis=-1))


def _images_of(data):
    """The images of a `fit`/`evaluate` batch: `x`, `(x,)`, `(x, y)` or `(x, y, w)`."""
    return data[0] if isinstance(data, (tuple, list)) else data


def _labels_of(data):
    """The labels of a `(x, y)` or `(x, y, w)` batch, else None."""
    return data[1] if isinstance(data, (tuple, list)) and len(data) > 1 else None


@keras.saving.register_keras_serializable(package=PACKAGE)
class LQVAE(keras.Model):
    """The LQ-VAE adversarial purifier.

    Parts, named as in the paper: `encoder` (`f_theta`, images -> mu, log sigma^2),
    `decoder_hard` (Decoder1 `g_phi`, fed `H(z)`; the one used at inference), `decoder_soft`
    (Decoder2 `h_psi`, a copy of `g_phi` when built, fed `H~(z)`), `quantize_hard` (`H`) and
    `quantize_soft` (`H~`).

    With `config.adversarial` set, each training (and validation) step first replaces part of
    the batch by PGD perturbations of it (see `AdversarialConfig`), feeds those to the encoder,
    and still measures every reconstruction against the clean images; `fit` then also reports
    `loss_adv`, `loss_code` and `code_flip`. Mode "classifier" needs `attach_classifier` first.
    With `config.guidance`, the reconstructions are also trained to keep a classifier's answers
    (`guide_hard`, `guide_soft`); that needs `attach_guide` first.

    Args:
        config: an `LQVAEConfig` (or its dict form) holding every setting.

    Example:
        >>> model = LQVAE.from_preset("fashion_mnist", load_weights=False)  # untrained
        >>> model.compile()
        >>> model.fit(train_ds, epochs=1)
        >>> clean = model.purify(images)
    """

    def __init__(self, config: LQVAEConfig | dict | None = None, **kwargs):
        super().__init__(**kwargs)
        if config is None:
            config = preset("fashion_mnist")
        elif isinstance(config, dict):
            config = LQVAEConfig.from_dict(config)
        self.config = config
        quantizer_args = dict(
            quantizer=config.quantizer,
            band_threshold=config.band_threshold,
            bits_per_unit=config.bits_per_unit,
            level_range=config.level_range,
        )
        self.encoder = build_encoder(config, name="encoder")
        self.decoder_hard = build_decoder(config, name="decoder_hard")
        # Algorithm 1, line 1: Decoder2 starts as a copy of Decoder1.
        self.decoder_soft = build_decoder(config, name="decoder_soft")
        self.decoder_soft.set_weights(self.decoder_hard.get_weights())
        self.quantize_hard = HardQuantizer(**quantizer_args, name="quantize_hard")
        self.quantize_soft = SoftQuantizer(
            **quantizer_args, form=config.soft_form, sharpness=config.soft_sharpness, name="quantize_soft"
        )
        self.sampling = Sampling(noise_scale=config.sample_noise_scale, seed=config.seed, name="sampling")
        self.projection_seed = keras.random.SeedGenerator(config.seed + 1)
        self.quantize_soft.build((None, config.latent_dim))
        names = METRIC_NAMES + (ADVERSARIAL_METRIC_NAMES if config.adversarial else ())
        names += GUIDANCE_METRIC_NAMES if config.guidance else ()
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        # Only adversarially trained models draw PGD starts, so other models keep their state.
        self.adversary_seed = keras.random.SeedGenerator(config.seed + 2) if config.adversarial else None
        # With clean epochs first, whether this epoch perturbs (1) or not (0): set by
        # `training.callbacks.AdversarialSchedule`, read inside the compiled step.
        self.adversarial_active = None
        if config.adversarial and config.adversarial.clean_epochs:
            self.adversarial_active = keras.Variable(0.0, trainable=False, name="adversarial_active")
        self._classifier_logits = None  # a function, so Keras neither tracks nor saves the classifier
        self._guide_logits = None  # the same, for `config.guidance`
        self.decoder_hard_optimizer = None
        self.decoder_soft_optimizer = None
        self.built = True

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_preset(cls, name: str, load_weights: bool = True, **overrides) -> LQVAE:
        """The named preset: a trained filter, ready to `purify`, as keras-hub's `from_preset`.

        The weights ship inside the package (`lqvae_tf.presets`; read offline) for the presets
        `lqvae_tf.presets.trained_presets()` lists ("fashion_mnist", "mnist"); their measured
        metrics are `lqvae_tf.presets.preset_metrics(name)`. The config is `preset(name)`'s.

        Args:
            name: a preset of `lqvae_tf.config.PRESETS`.
            load_weights: False builds the same configuration untrained (random weights), for
                presets without shipped weights ("paper", "celeb_a") too.
            **overrides: config fields to change; with weights, only training settings (epochs,
                learning rate...), not the fields that shape the filter (`presets.FILTER_FIELDS`).

        Raises:
            ValueError: an unknown preset (the message lists the known ones), one without shipped
                weights while `load_weights` is True, or overrides that change the filter.

        Example:
            >>> purifier = LQVAE.from_preset("mnist")  # trained
            >>> untrained = LQVAE.from_preset("mnist", load_weights=False)
        """
        config = preset(name).replace(**overrides)
        if not load_weights:
            return cls(config)
        check_filter_fields(name, trained_config(name), config)
        model = cls(config)
        load_filter_weights(model, name)
        return model

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def _default_optimizer(self, name: str) -> keras.optimizers.Optimizer:
        schedule = keras.optimizers.schedules.ExponentialDecay(
            self.config.learning_rate, self.config.lr_decay_steps, self.config.lr_decay_rate
        )
        return keras.optimizers.RMSprop(learning_rate=schedule, name=name)

    def compile(self, encoder_optimizer=None, decoder_hard_optimizer=None, decoder_soft_optimizer=None, **kwargs):
        """Sets the three optimizers (RMSProp with the config's schedule where not given).

        The encoder's optimizer is also the model's `optimizer`, so Keras callbacks that read
        `model.optimizer` (learning rate, iterations) see the encoder's.
        """
        encoder_optimizer = encoder_optimizer or self._default_optimizer("encoder_optimizer")
        super().compile(optimizer=encoder_optimizer, **kwargs)
        self.decoder_hard_optimizer = decoder_hard_optimizer or self._default_optimizer("decoder_hard_optimizer")
        self.decoder_soft_optimizer = decoder_soft_optimizer or self._default_optimizer("decoder_soft_optimizer")
        # Built now, so that saved optimizer state (BackupAndRestore, .keras files) loads into
        # them instead of being skipped.
        self.optimizer.build(self.encoder.trainable_variables)
        self.decoder_hard_optimizer.build(self.decoder_hard.trainable_variables)
        self.decoder_soft_optimizer.build(self.decoder_soft.trainable_variables)

    def get_compile_config(self):
        if self.decoder_hard_optimizer is None:
            return None
        return {
            name: keras.optimizers.serialize(getattr(self, name))
            for name in ("encoder_optimizer", "decoder_hard_optimizer", "decoder_soft_optimizer")
        }

    def compile_from_config(self, config):
        # Called by keras.models.load_model; the optimizer state is loaded afterwards.
        self.compile(**{name: keras.optimizers.deserialize(value) for name, value in config.items()})

    @property
    def encoder_optimizer(self) -> keras.optimizers.Optimizer | None:
        return getattr(self, "optimizer", None)

    def save_own_variables(self, store):
        save_seed_state(store, self.projection_seed)  # the model's only state of its own
        if self.adversary_seed is not None:
            store[ADVERSARY_SEED_KEY] = ops.convert_to_numpy(self.adversary_seed.state)

    def load_own_variables(self, store):
        load_seed_state(store, self.projection_seed)
        if self.adversary_seed is not None and ADVERSARY_SEED_KEY in store.keys():
            self.adversary_seed.state.assign(store[ADVERSARY_SEED_KEY])

    def attach_classifier(self, classifier: keras.Model | Sequence[keras.Model]) -> None:
        """Sets the Keras classifier(s) that the adversarial modes "classifier" and "end_to_end" attack.

        Several classifiers are attacked together: PGD maximises the mean of their
        cross-entropies, so the purifier learns to resist perturbations that fool any of them
        (how the shipped presets are trained to work in front of classifiers they never saw).
        The classifiers are not part of the model (not saved with it); attach them again after
        loading to continue training. They may end in a softmax (their logits are attacked).

        Raises:
            ValueError: no classifier, or one whose input shape is not the purifier's `image_shape`.
        """
        self._classifier_logits = self._logit_functions(classifier)

    def attach_guide(self, classifier: keras.Model | Sequence[keras.Model]) -> None:
        """Sets the Keras classifier(s) whose answers `config.guidance` trains the reconstructions to keep.

        With several, the guidance loss is the mean of their divergences. Like
        `attach_classifier`'s, they are not saved with the model: attach them again after loading
        to continue training. They may end in a softmax.

        Raises:
            ValueError: the config has no guidance, no classifier is given, or one's input shape
                is not the purifier's `image_shape`.
        """
        if self.config.guidance is None:
            raise ValueError("attach_guide needs config.guidance (GuidanceConfig); this purifier trains without one")
        self._guide_logits = self._logit_functions(classifier)

    def _logit_functions(self, classifiers) -> list:
        """The logits callables of one classifier or a sequence of them, each checked against the image shape."""
        models = list(classifiers) if isinstance(classifiers, (list, tuple)) else [classifiers]
        if not models:
            raise ValueError("no classifier given: pass a Keras classifier or a non-empty list of them")
        for model in models:
            check_classifier_shape(model, self.config.image_shape)
        return [logits_of(model) for model in models]

    @property
    def metrics(self):
        return list(self.trackers.values())

    # ----------------------------------------------------------------- value ranges
    def to_internal(self, images):
        """Maps images from `config.value_range` to [-1, 1], where the networks work."""
        return rescale(images, self.config.value_range, INTERNAL_RANGE)

    def from_internal(self, images):
        """Maps [-1, 1] back to `config.value_range`."""
        return rescale(images, INTERNAL_RANGE, self.config.value_range)

    # ----------------------------------------------------------------- Algorithm 1
    def encode_with_gradient_norm(self, x, training: bool):
        """`f_theta(x)` and, per image, `||grad_x f(x)||` measured on the way (a tape inside the
        caller's tape, so the penalty is differentiable in the encoder's weights)."""
        config = self.config
        return encode_with_input_gradient_norm(
            self.encoder,
            x,
            config.penalty_estimator,
            config.penalty_projections,
            self.projection_seed,
            training=training,
        )

    def _algorithm_losses(self, images, training: bool, perturbed=None):
        """Lines 4-10 of Algorithm 1 on one batch; returns the named losses and quantities.

        `perturbed` is `(inputs, count)` from `perturb` under adversarial retraining: the encoder
        then sees `inputs` (the first `count` images perturbed), the losses compare with `images`.
        """
        config = self.config
        x = self.to_internal(ops.cast(images, "float32"))
        encoder_inputs = x if perturbed is None else perturbed[0]
        mean, log_var, grad_norm = self.encode_with_gradient_norm(encoder_inputs, training)  # line 4
        z = self.sampling([mean, log_var])  # line 5
        x_soft = self.decoder_soft(self.quantize_soft(z), training=training)  # line 6: x1 = h(H~(z))
        x_hard = self.decoder_hard(self.quantize_hard(z), training=training)  # line 7: x2 = g(H(z))
        loss_h = config.reconstruction_weight * ops.mean(ops.square(x - x_soft))  # line 8
        loss_g = config.reconstruction_weight * ops.mean(ops.square(x - x_hard))  # line 9
        guided = self._guidance_terms(x, x_soft, x_hard) if config.guidance else {}
        if guided:  # the soft path's term reaches the encoder through loss_f, as loss_h does
            loss_h = loss_h + config.guidance.weight * guided["guide_soft"]
            loss_g = loss_g + config.guidance.weight * guided["guide_hard"]
        kl = kl_divergence(mean, log_var)
        penalty = lipschitz_penalty(grad_norm, config.lipschitz_k)
        loss_f = loss_h + config.kl_weight * kl + config.penalty_weight * penalty  # line 10
        active_bits = ops.mean(0.5 * (self.quantize_hard(mean) + 1.0))
        values = {
            "loss_f": loss_f,
            "loss_g": loss_g,
            "loss_h": loss_h,
            "kl": kl,
            "penalty": penalty,
            "grad_norm": ops.mean(grad_norm),
            "active_bits": active_bits,
            **guided,
        }
        if perturbed is not None:
            count = perturbed[1]
            values.update(self._adversarial_terms(x[:count], mean[:count], x_hard[:count], training))
            if config.adversarial.mode != "classifier":  # the filter is attacked: keep the clean code too
                values["loss_f"] = loss_f + config.adversarial.code_weight * values["loss_code"]
        return values

    def _guidance_terms(self, x, x_soft, x_hard):
        """`guide_soft` / `guide_hard`: the guiding classifier's KL divergence from the clean
        image's class probabilities to each reconstruction's (internal-range images)."""
        if self._guide_logits is None:
            raise ValueError("config.guidance needs its classifier: call attach_guide first")
        low_high = self.config.guidance.classifier_range
        terms = {"guide_soft": [], "guide_hard": []}
        for classifier_logits in self._guide_logits:  # several guides: the mean of their divergences
            logits = lambda images, f=classifier_logits: f(rescale(images, INTERNAL_RANGE, low_high))  # noqa: E731
            clean = logits(x)
            terms["guide_soft"].append(guidance_divergence(clean, logits(x_soft)))
            terms["guide_hard"].append(guidance_divergence(clean, logits(x_hard)))
        return {name: ops.mean(ops.stack(values)) for name, values in terms.items()}

    # ----------------------------------------------------------------- adversarial retraining
    def _filter_bpda(self, x):
        """`g(H(mu(x)))` on internal-range images, with `H~`'s gradient standing in for `H`'s."""
        mean, _ = self.encoder(x, training=False)
        codes = straight_through(self.quantize_hard(mean), self.quantize_soft(mean))
        return self.decoder_hard(codes, training=False)

    def _to_classifier(self, x):
        return rescale(x, INTERNAL_RANGE, self.config.adversarial.classifier_range)

    def _objective(self, clean, labels):
        """The function of perturbed internal-range images that the mode's PGD maximises."""
        mode = self.config.adversarial.mode
        if self.config.adversarial.attacks_classifier:
            if self._classifier_logits is None:
                raise ValueError(f"adversarial mode {mode!r} needs a classifier: call attach_classifier first")
            cross_entropy = keras.losses.sparse_categorical_crossentropy
            seen = self._filter_bpda if mode == "end_to_end" else (lambda x: x)  # the classifier's input
            terms = []
            for logits in self._classifier_logits:  # several classifiers: the mean of their losses
                # Unlabelled batches: each classifier's own answers on the clean images.
                targets = labels if labels is not None else ops.argmax(logits(self._to_classifier(clean)), axis=-1)
                terms.append((logits, targets))

            def objective(x):
                classifier_input = self._to_classifier(seen(x))
                losses = [ops.mean(cross_entropy(y, f(classifier_input), from_logits=True)) for f, y in terms]
                return ops.mean(ops.stack(losses))

            return objective
        if mode == "reconstruction":
            return lambda x: ops.mean(ops.square(clean - self._filter_bpda(x)))
        clean_mean, _ = self.encoder(clean, training=False)
        clean_code = ops.stop_gradient(self.quantize_hard(clean_mean))
        return lambda x: ops.mean(ops.square(self.quantize_soft(self.encoder(x, training=False)[0]) - clean_code))

    def perturb(self, images, labels=None):
        """The internal-range batch with its first `count` images replaced by PGD perturbations.

        Returns:
            `(inputs, count)`: `count` is `config.adversarial.fraction` of the batch, at least 1.
        """
        settings = self.config.adversarial
        x = self.to_internal(ops.cast(images, "float32"))
        count = self._perturbed_count(x)
        clean, rest = x[:count], x[count:]
        labels = None if labels is None else labels[:count]
        perturbed = pgd_linf(
            self._objective(clean, labels),
            clean,
            eps=settings.eps * INTERNAL_WIDTH,
            step_size=settings.pgd_step_size * INTERNAL_WIDTH,
            steps=settings.steps,
            seed=self.adversary_seed,
        )
        return ops.concatenate([perturbed, rest], axis=0), count

    def _adversarial_terms(self, clean, perturbed_mean, perturbed_hard, training: bool):
        """`loss_adv` (`loss_g` of the perturbed images), `loss_code` (distance of their soft code
        to the clean code) and `code_flip` (fraction of code symbols changed)."""
        clean_mean, _ = self.encoder(clean, training=training)
        clean_code = ops.stop_gradient(self.quantize_hard(clean_mean))
        flipped = ops.not_equal(self.quantize_hard(perturbed_mean), clean_code)
        return {
            "loss_adv": self.config.reconstruction_weight * ops.mean(ops.square(clean - perturbed_hard)),
            "loss_code": ops.mean(ops.square(self.quantize_soft(perturbed_mean) - clean_code)),
            "code_flip": ops.mean(ops.cast(flipped, "float32")),
        }

    def _perturbed(self, data):
        if not self.config.adversarial:
            return None
        images, labels = _images_of(data), _labels_of(data)
        if self.adversarial_active is None:
            return self.perturb(images, labels)
        # A clean epoch skips the PGD loop (the graph's other branch), not only its result.
        inputs = tf.cond(
            self.adversarial_active > 0.5,
            lambda: self.perturb(images, labels)[0],
            lambda: self.to_internal(ops.cast(images, "float32")),
        )
        return inputs, self._perturbed_count(inputs)

    def _perturbed_count(self, batch):
        """How many images of `batch` adversarial retraining perturbs: `fraction` of it, at least 1."""
        size = ops.cast(ops.shape(batch)[0], "float32")
        return ops.maximum(1, ops.cast(ops.round(self.config.adversarial.fraction * size), "int32"))

    def _update_trackers(self, values):
        for name, tracker in self.trackers.items():
            tracker.update_state(values[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        perturbed = self._perturbed(data)  # adversarial retraining only; crafted off the tape
        with tf.GradientTape(persistent=True) as tape:
            values = self._algorithm_losses(_images_of(data), training=True, perturbed=perturbed)
            # Under a tf.distribute strategy each replica differentiates its share of the loss.
            shares = {name: replica_share(values[name]) for name in ("loss_f", "loss_g", "loss_h")}
        # Lines 11-13: each parameter group descends its own loss, and only that loss.
        groups = (
            (shares["loss_f"], self.encoder, self.encoder_optimizer),  # theta by L_f
            (shares["loss_g"], self.decoder_hard, self.decoder_hard_optimizer),  # phi by L_g
            (shares["loss_h"], self.decoder_soft, self.decoder_soft_optimizer),  # psi by L_h
        )
        for loss, network, optimizer in groups:
            variables = network.trainable_variables
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        del tape
        return self._update_trackers(values)

    def test_step(self, data):
        values = self._algorithm_losses(_images_of(data), training=False, perturbed=self._perturbed(data))
        return self._update_trackers(values)

    # ----------------------------------------------------------------- inference
    def call(self, images, training=False):
        """The filter on a batch in `value_range`: `g_phi(H(mu(x)))`, deterministic."""
        mean, _ = self.encoder(self.to_internal(images), training=training)
        return self.from_internal(self.decoder_hard(self.quantize_hard(mean), training=training))

    def _checked(self, images) -> np.ndarray:
        return check_images(images, self.config.image_shape, self.config.value_range)

    def purify(self, images, batch_size: int = 256) -> np.ndarray:
        """Purified images `g_phi(H(mu(x)))`, in the input's value range.

        Args:
            images: (batch, height, width, channels) floats in `config.value_range`.
            batch_size: images per forward pass.

        Returns:
            numpy float32 array of the input's shape.

        Raises:
            ValueError: if the images have the wrong rank, shape, channels, dtype or range,
                or contain NaN/inf.
        """
        x = self._checked(images)
        return np.concatenate(
            [ops.convert_to_numpy(self._purify_batch(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
        )

    @tf.function(reduce_retracing=True)
    def _purify_batch(self, images):
        return self(images, training=False)

    def encode(self, images) -> tuple[np.ndarray, np.ndarray]:
        """(mu, log_var) of the encoder for a checked batch in `value_range`."""
        mean, log_var = self.encoder(self.to_internal(self._checked(images)), training=False)
        return ops.convert_to_numpy(mean), ops.convert_to_numpy(log_var)

    def codes(self, images) -> np.ndarray:
        """The latent code `H(mu(x))` (code symbols in [-1, 1]) of a checked batch."""
        mean, _ = self.encode(images)
        return ops.convert_to_numpy(self.quantize_hard(mean))
